// The native cpu backend's Node-API glue (addon_cpu.cc): what native/addon.cc's Init adds to the exports.
#pragma once

#include <napi.h>

namespace gk {
namespace cpu {

// exports.cpuInfo() → { avx2Compiled, avx2Supported, cores }, cpuAdviseHugePages(array),
// cpuFirstDecrease(offsets) and the class exports.CpuDevice.
void AddCpuExports(Napi::Env env, Napi::Object exports);

}  // namespace cpu
}  // namespace gk
