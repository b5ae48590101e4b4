#!/usr/bin/env node
// The GPU machine's first check (scripts/gpu/run.sh), in about a second: does the addon have CUDA
// compiled in, does the cuda backend open a device, and does a kernel run there and give the right
// answer? Runs from the built package (dist/); honours GRPO_KERNELS_NATIVE_PATH like the package.
//
//   node scripts/gpu/preflight.mjs
//
// Prints what it found, then one JSON line {ok, stage, reason?, build?, device?}. Exit status:
//   0  the addon has CUDA, a device opened, and logprobs of a [2, 4] tensor gave -log 4 on it;
//   2  stage "addon": the addon is missing, does not load, or was built without CUDA (a build on
//      that machine may fix it);
//   3  stage "device": the cuda backend did not start (no device, a driver older than the addon's
//      CUDA runtime: the reason says which);
//   4  stage "kernel": the smoke kernel failed or gave a wrong answer (e.g. no code for this
//      architecture in the addon).
import { loadNativeAddon, nativeAddonPath } from '../../dist/backends/cuda/native.js';
import { createContext } from '../../dist/index.js';

const message = (e) => (e instanceof Error ? e.message : String(e));

function done(code, result) {
  console.log(JSON.stringify({ ok: code === 0, ...result }));
  process.exit(code);
}

let build;
try {
  build = loadNativeAddon().buildInfo();
} catch (e) {
  done(2, { stage: 'addon', reason: message(e), path: nativeAddonPath() });
}
console.error(`[preflight] addon ${nativeAddonPath()}: ${JSON.stringify(build)}`);
if (!build.cuda) done(2, { stage: 'addon', reason: `addon without CUDA: ${build.reason}`, build });

let ctx;
try {
  ctx = await createContext({ backend: 'cuda' });
} catch (e) {
  done(3, { stage: 'device', reason: message(e), build });
}
const device = ctx.device;
console.error(`[preflight] device: ${JSON.stringify(device)}`);
// A warning, not a failure: the smoke kernel below says whether the addon has code that runs here.
const cc = String(device.details?.computeCapability ?? '').replace('.', '');
if (cc && build.archs && build.archs !== 'emulated' && !new RegExp(`\\b${cc}`).test(build.archs))
  console.error(
    `[preflight] warning: compute capability ${cc} is not among the addon's archs ${build.archs}`,
  );

try {
  const x = ctx.tensor(new Float32Array(8), [2, 4], 'f32');
  const r = await ctx.logprobs(x, new Int32Array([0, 3]));
  const lp = Array.from(await r.logprobs.read());
  const want = Math.fround(-Math.log(4));
  if (lp.length !== 2 || lp.some((v) => Math.abs(v - want) > 1e-6))
    done(4, {
      stage: 'kernel',
      reason: `logprobs of zeros gave ${JSON.stringify(lp)}, want ${want}`,
      build,
      device,
    });
  await ctx.synchronize();
} catch (e) {
  done(4, { stage: 'kernel', reason: message(e), build, device });
}
ctx.dispose();
done(0, { stage: 'ready', build, device });
