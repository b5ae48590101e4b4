// The copy probe: the device's copy bandwidth, against which the benchmarks (bench/, ctx.copyProbe)
// state each op's GB/s as a fraction. One cudaMemcpyAsync device to device, timed with events.
// Bytes: `bytes` read + `bytes` written per copy. No FLOPs, no kernel of its own (the copy engine's
// copy is what PyTorch's "copy bandwidth" measures too). The native benchmark (bench/cuda/harness.cu)
// times its copies its own way, rotated past the L2 like its cases.
#include <algorithm>
#include <vector>

#include "probe.cuh"

namespace gk {

Status launch_copy_probe(uint64_t bytes, const LaunchEnv& env, Scratch& scratch, double* seconds) {
  GK_REQUIRE(bytes >= 16, "copyProbe: bytes: expected at least 16");
  uint8_t *a = nullptr, *b = nullptr;
  GK_TRY(scratch.alloc(&a, bytes));
  GK_TRY(scratch.alloc(&b, bytes));
  GK_CHECK(cudaMemsetAsync(a, 1, bytes, env.stream));
  cudaEvent_t e0, e1;
  GK_CHECK(cudaEventCreate(&e0));
  if (cudaError_t e = cudaEventCreate(&e1); e != cudaSuccess) {
    cudaEventDestroy(e0);  // not leaked on this error path
    return Status::FromCuda(e, "cudaEventCreate(&e1)", __FILE__, __LINE__);
  }
  std::vector<float> ms;
  Status st = Status::Ok();
  for (int i = 0; i < 9 && st.ok(); ++i) {
    // The failing call by name (a message names the call, as GK_CHECK's do).
    const char* call = "cudaEventRecord(e0)";
    cudaError_t e = cudaEventRecord(e0, env.stream);
    if (e == cudaSuccess) {
      call = "cudaMemcpyAsync(device to device)";
      e = cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, env.stream);
    }
    if (e == cudaSuccess) {
      call = "cudaEventRecord(e1)";
      e = cudaEventRecord(e1, env.stream);
    }
    if (e == cudaSuccess) {
      call = "cudaEventSynchronize(e1)";
      e = cudaEventSynchronize(e1);
    }
    float t = 0;
    if (e == cudaSuccess) {
      call = "cudaEventElapsedTime";
      e = cudaEventElapsedTime(&t, e0, e1);
    }
    if (e != cudaSuccess) st = Status::FromCuda(e, call, __FILE__, __LINE__);
    if (i >= 2) ms.push_back(t);
  }
  cudaEventDestroy(e0);
  cudaEventDestroy(e1);
  GK_TRY(st);
  std::sort(ms.begin(), ms.end());
  *seconds = ms[ms.size() / 2] / 1e3;
  return Status::Ok();
}

}  // namespace gk
