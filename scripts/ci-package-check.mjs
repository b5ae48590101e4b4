#!/usr/bin/env node
// Run by scripts/ci-package.sh inside a scratch project that installed the packed tarball with install
// scripts disabled and no compiler, nvcc or cmake on PATH: the package as a user on a linux-x64 GPU
// server without the CUDA toolkit gets it. Checks (issue 14, docs/install.md):
//   - the addon loaded is the prebuilt one, with CUDA and the cpu kernels in it;
//   - the cuda backend reports a missing driver (this machine has none), not a missing build;
//   - `cpu` is the native backend, not the js fallback;
//   - `auto` orders the backends as documented (AUTO_ORDER), and picks the first that starts with a
//     real device: here cpu (with the `webgpu` package installed, lavapipe is software, so skipped).
// Usage: node ci-package-check.mjs plain|webgpu
import { AUTO_ORDER, createContext, GrpoKernelsError } from 'grpo-kernels';

const mode = process.argv[2];
const failures = [];
const check = (ok, what) => {
  console.log(`   ${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
};

const cpu = await createContext({ backend: 'cpu' });
const details = cpu.device.details;
check(cpu.backend === 'cpu' && cpu.skipped.length === 0, `cpu is the native backend (${cpu.device.name})`);
check(details.addon === 'prebuilt linux-x64', `the addon is the prebuilt one (${details.addon})`);
const x = cpu.tensor(new Float32Array([0, 1, 2, 3, 4, 5]), [2, 3]);
const { logprobs } = await cpu.logprobs(x, new Int32Array([2, 0]));
const lp = await logprobs.read();
const want = [2 - Math.log(1 + Math.E + Math.E ** 2), 3 - (3 + Math.log(1 + Math.E + Math.E ** 2))];
check(
  lp.every((v, i) => Math.abs(v - want[i]) <= 1e-6),
  `a logprobs call on it gives the float64 values (${[...lp].map((v) => v.toFixed(6)).join(', ')})`,
);
cpu.dispose();

try {
  const ctx = await createContext({ backend: 'cuda' });
  check(false, `cuda started on a machine without a driver (${ctx.device.name})`);
  ctx.dispose();
} catch (e) {
  const msg = e instanceof Error ? e.message : String(e);
  check(
    e instanceof GrpoKernelsError && e.code === 'BACKEND_UNAVAILABLE',
    `cuda: BACKEND_UNAVAILABLE (${msg})`,
  );
  check(
    /driver/i.test(msg) && !/not built|no native addon|without CUDA/i.test(msg),
    'cuda names the missing driver, not a missing build',
  );
}

check(
  JSON.stringify(AUTO_ORDER) === JSON.stringify(['cuda', 'webgpu', 'cpu', 'js']),
  `AUTO_ORDER is cuda, webgpu, cpu, js (${AUTO_ORDER.join(', ')})`,
);
const auto = await createContext({ backend: 'auto' });
const tried = auto.skipped.map((s) => s.backend);
check(auto.backend === 'cpu', `auto picks cpu (${auto.backend})`);
check(
  JSON.stringify(tried) === JSON.stringify(['cuda', 'webgpu']),
  `auto skipped cuda, then webgpu (${tried.join(', ')})`,
);
const webgpuWhy = auto.skipped.find((s) => s.backend === 'webgpu')?.reason ?? '';
if (mode === 'webgpu') {
  // The webgpu package is there: webgpu starts (on lavapipe in CI) and auto passes over it as software.
  check(/software adapter/.test(webgpuWhy), `webgpu was tried and passed over as software (${webgpuWhy})`);
} else {
  check(/webgpu/i.test(webgpuWhy), `webgpu says why it is absent (${webgpuWhy})`);
}
auto.dispose();

if (failures.length > 0) {
  console.error(`ci-package-check (${mode}): ${failures.length} failed`);
  process.exit(1);
}
