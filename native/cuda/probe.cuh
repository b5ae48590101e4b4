// Launcher of the copy probe (probe.cu): the bandwidth yardstick of the benchmarks.
#pragma once

#include "common.cuh"

namespace gk {

// Times device-to-device copies of `bytes` bytes (≥ 16) between two Scratch buffers on env.stream with
// CUDA events: 2 warm-ups, then the median of 7, in *seconds. Waits for the stream (a measurement).
Status launch_copy_probe(uint64_t bytes, const LaunchEnv& env, Scratch& scratch, double* seconds);

}  // namespace gk
