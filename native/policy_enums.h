// policyLoss's enums (their name tables: enums.h). A header of plain enums, nothing with code of its
// own: the per-ISA cpu kernels (native/cpu/policy.cc, kernels.h) include it, as the CUDA kernels do.
#pragma once

namespace gk {

enum class PolicyLossKind : int { Ppo = 0, Gspo, Cispo, Sapo, Reinforce };
enum class KlEstimator : int { K1 = 0, Abs, K2, K3 };
enum class RolloutLevel : int { Token = 0, Sequence, Geometric };
enum class RolloutMode : int { Truncate = 0, Mask };
enum class Aggregation : int { TokenMean = 0, TokenSum, SeqMeanTokenSum, SeqMeanTokenMean, SeqMeanTokenSumNorm };

}  // namespace gk
