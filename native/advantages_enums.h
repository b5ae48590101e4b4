// The advantages family's enums (values only): plain enums with no std:: objects, so the per-ISA cpu
// kernels may include them (native/cpu/kernels.h, "per-file flags carry a trap": enums.h's name tables
// are inline std::vector<std::string> objects, whose constructors every including file would compile
// with its own flags). The names and their order: native/enums.h, which includes this header.
#pragma once

namespace gk {

enum class Estimator : int { Grpo = 0, DrGrpo, Rloo, Opo, GrpoPassk, Gpg, ReinforcePpBaseline };
enum class StdKind : int { Sample = 0, Population = 1 };
enum class ScaleKind : int { Group = 0, Batch = 1, None = 2 };
enum class Singleton : int { Zero = 0, Mean0 = 1, Nan = 2 };
enum class NanRewards : int { Propagate = 0, Unscorable = 1 };

}  // namespace gk
