// The values of every enum that crosses the native boundary (their name tables: enums.h, which includes
// this header). Plain enums with no std:: objects, so the per-ISA cpu kernels may include them
// (native/cpu/kernels.h, "per-file flags carry a trap": enums.h's name tables are inline
// std::vector<std::string> objects, whose constructors every including file would compile with its own
// flags), as the CUDA kernels do.
#pragma once

namespace gk {

// The advantages family.
enum class Estimator : int { Grpo = 0, DrGrpo, Rloo, Opo, GrpoPassk, Gpg, ReinforcePpBaseline };
enum class StdKind : int { Sample = 0, Population = 1 };
enum class ScaleKind : int { Group = 0, Batch = 1, None = 2 };
enum class Singleton : int { Zero = 0, Mean0 = 1, Nan = 2 };
enum class NanRewards : int { Propagate = 0, Unscorable = 1 };

// The THR family. Arithmetic of THR's two matrix products on cuda (thr.cu, "Numerics"); the cpu kernels
// ignore it.
enum class ThrPrecision : int { F32 = 0, Tf32 = 1 };
enum class ReweightMode : int { Thr = 0, ThrOnly = 1, Nthr = 2 };
// tokenHiddenReward whole, or one of its two halves (thrAggregate, thrScore: data-parallel shards sum the
// aggregate between them; docs/DESIGN.md). Not a string across the boundary: each half is an op.
enum class ThrStep : int { Full = 0, Aggregate = 1, Score = 2 };

// policyLoss.
enum class PolicyLossKind : int { Ppo = 0, Gspo, Cispo, Sapo, Reinforce, Gmpo, Vespo };
enum class KlEstimator : int { K1 = 0, Abs, K2, K3 };
enum class RolloutLevel : int { Token = 0, Sequence, Geometric };
enum class RolloutMode : int { Truncate = 0, Mask, SequenceMask };
enum class Aggregation : int { TokenMean = 0, TokenSum, SeqMeanTokenSum, SeqMeanTokenMean, SeqMeanTokenSumNorm };

// rolloutRejection (verl's rollout_rs): the statistic and the level of one criterion.
enum class RejectionStatistic : int { K1 = 0, K2, K3 };
enum class RejectionLevel : int { Token = 0, SeqSum, SeqMean, SeqMax };

}  // namespace gk
