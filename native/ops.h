// The argument conversion of the native ops, table-driven: one row per op, its JS method name and the
// converter that fills the op's params from its argument object (gkn::Args, args.h: strict, key by
// key). A converter reads only keys; the device class (device_wrap.h) creates the Args, reads the keys
// every op of the device shares, calls Done() (unknown keys are errors) and queues the op. One converter
// per TypeScript interface: src/backends/cuda/native.ts (ops_cuda.cc: device pointers, test hooks) and
// src/backends/cpu/native.ts (ops_cpu.cc: host typed arrays, their lengths checked against the shape).
#pragma once

#include <napi.h>

#include <vector>

namespace gk {
namespace rt {
struct CudaOp;  // runtime/cuda_device.h
struct CpuOp;   // runtime/cpu_device.h
}  // namespace rt
}  // namespace gk

namespace gkn {

class Args;

template <class Op>
struct OpSpec {
  const char* name;
  Op (*convert)(Args&);
};

// CudaDevice's ops (ops_cuda.cc), and lmheadPlan({ rows, vocab, dim, dtype }) → { slices, forwardBytes,
// chunkRows, chunkVocab, backwardBytes }: what the LM-head launchers allocate from Scratch (the memory
// bound's tests compute it at sizes no test runs; a run's stats().lastScratchBytes is checked against it).
const std::vector<OpSpec<gk::rt::CudaOp>>& CudaOps();
Napi::Value LmheadPlan(const Napi::CallbackInfo& info);
// CpuDevice's ops (ops_cpu.cc), and cpuLmheadPlan({ rows, vocab, dim, dtype, threads, isa }) →
// { forwardBytes, backwardBytes }: the scratch the cpu LM head's kernels allocate with that build
// (a device's info().lmheadIsa) on `threads` threads, computed (native/cpu/lmhead.cc's plan).
const std::vector<OpSpec<gk::rt::CpuOp>>& CpuOps();
Napi::Value CpuLmheadPlan(const Napi::CallbackInfo& info);

}  // namespace gkn
