/**
 * The browser path, end to end: the COMPILED package (dist/, built here when missing or older
 * than src/) loaded as native ES modules in headless Chromium from a 127.0.0.1 static server
 * serving the repository root, so dist/*.js and shaders/*.wgsl resolve by URL exactly as in an
 * installed copy (no bundler). test/browser/page.html runs the ops on 'js' (checked against an
 * independent float64 log-softmax in the page), tries 'auto', and runs them on 'webgpu'
 * (navigator.gpu) against 'js' with the Node tests' tolerances; it reports to this test through
 * page evaluation (window.__grpoResult).
 *
 * Browser: Debian's chromium (/usr/bin/chromium, `bash scripts/setup-chromium.sh`; env
 * CHROMIUM_PATH overrides) driven by playwright-core (no Playwright browser download). Headless
 * Chromium without a GPU exposes SwiftShader's Vulkan as a WebGPU fallback adapter with
 * --enable-unsafe-webgpu (docs/webgpu.md, "In a browser").
 *
 * Policy (as test/webgpu/setup.ts): without Chromium, playwright-core or a WebGPU adapter the
 * tests skip with the reason printed, except when env CI is set: then they fail.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, type TestContext } from 'vitest';
import { type StaticServer, startStaticServer } from './server.js';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const REQUIRED = !!process.env.CI;

/** Chromium's switches. The first six keep it off the network (only loopback traffic). */
const CHROMIUM_ARGS = [
  '--no-sandbox',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
  // WebGPU without a GPU: headless Chromium offers SwiftShader (Vulkan on the CPU) as a fallback
  // adapter once WebGPU is force-enabled; nothing else is needed (docs/webgpu.md).
  '--enable-unsafe-webgpu',
];

interface Check {
  backend: string;
  name: string;
  ok: boolean;
  err: number | null;
  rtol: number;
  note: string;
}
interface Report {
  ok: boolean;
  fatal?: string;
  userAgent: string;
  secureContext: boolean;
  navigatorGpu: boolean;
  exports: number;
  ms: number;
  checks: Check[];
  cpu?: { backend: string; device: string; ms: number };
  auto?: { backend?: string; skipped?: { backend: string; reason: string }[]; error?: string };
  webgpu?: {
    skipped?: string;
    error?: string;
    backend?: string;
    device?: string;
    software?: boolean;
    features?: string;
    maxStorageBuffersPerShaderStage?: number;
    ms?: number;
  };
}

/** Newest modification time (ms) of the files under `dir`. */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
  }
  return t;
}

/** Builds dist/ (npm run build's tsc) when it is missing or older than src/. */
function ensureDist(): string {
  const entry = join(root, 'dist/index.js');
  if (existsSync(entry) && statSync(entry).mtimeMs >= newest(join(root, 'src'))) return 'up to date';
  const t = performance.now();
  execFileSync(
    process.execPath,
    [join(root, 'node_modules/typescript/bin/tsc'), '-p', 'tsconfig.build.json'],
    {
      cwd: root,
      stdio: 'inherit',
    },
  );
  return `built in ${Math.round(performance.now() - t)} ms`;
}

let skipAll: string | undefined;
let report: Report | undefined;
let server: StaticServer | undefined;
const pageErrors: string[] = [];
const timings: Record<string, number> = {};

beforeAll(async () => {
  if (!existsSync(CHROMIUM)) {
    skipAll = `no Chromium at ${CHROMIUM} (run scripts/setup-chromium.sh, or set CHROMIUM_PATH)`;
    return;
  }
  let chromium: typeof import('playwright-core').chromium;
  try {
    ({ chromium } = await import('playwright-core'));
  } catch (e) {
    skipAll = `playwright-core is not installed (${(e as Error).message})`;
    return;
  }
  let t = performance.now();
  const dist = ensureDist();
  timings.build = performance.now() - t;
  server = await startStaticServer(root);
  const userDataDir = mkdtempSync(join(tmpdir(), 'grpo-chromium-'));
  t = performance.now();
  const browser = await chromium.launchPersistentContext(userDataDir, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    timeout: 30_000,
  });
  timings.launch = performance.now() - t;
  try {
    const page = browser.pages()[0] ?? (await browser.newPage());
    page.on('pageerror', (e) => pageErrors.push(e.message));
    // Block anything that is not our server (nothing else should be asked for).
    await page.route(
      (url) => !url.href.startsWith(server?.url ?? '\0'),
      (route) => {
        pageErrors.push(`blocked request to ${route.request().url()}`);
        return route.abort();
      },
    );
    t = performance.now();
    await page.goto(`${server.url}test/browser/page.html`);
    report = (await page.evaluate('window.__grpoResult')) as Report;
    timings.page = performance.now() - t;
  } finally {
    await browser.close();
    rmSync(userDataDir, { recursive: true, force: true });
  }
  const gpu = report.webgpu;
  console.log(
    `browser test: ${report.userAgent}; dist ${dist}; launch ${Math.round(timings.launch)} ms, page ${Math.round(timings.page)} ms; ` +
      `cpu ${report.cpu?.ms} ms; webgpu: ${gpu?.device ? `${gpu.device} (software: ${gpu.software}, maxStorageBuffersPerShaderStage ${gpu.maxStorageBuffersPerShaderStage}; ${gpu.ms} ms)` : (gpu?.skipped ?? gpu?.error)}`,
  );
}, 90_000);

afterAll(async () => {
  await server?.close();
});

const warned = new Set<string>();
function warnOnce(message: string): void {
  if (!warned.has(message)) console.warn(message);
  warned.add(message);
}

/** Skips (or fails under CI) when the browser could not run; returns the report otherwise. */
function need(ctx: TestContext): Report {
  if (skipAll) {
    if (REQUIRED) expect.fail(`CI is set but the browser test cannot run: ${skipAll}`);
    warnOnce(`browser test skipped: ${skipAll}`);
    ctx.skip(skipAll);
  }
  expect(report, 'no report from the page').toBeDefined();
  const r = report as Report;
  expect(r.fatal, `the page failed: ${r.fatal}`).toBeUndefined();
  return r;
}

/** The report's webgpu part, skipping (or failing under CI) when the page found no adapter. */
function needWebGpu(ctx: TestContext): NonNullable<Report['webgpu']> {
  const r = need(ctx);
  const w = r.webgpu;
  expect(w, 'no webgpu part in the report').toBeDefined();
  if (w?.skipped) {
    if (REQUIRED) expect.fail(`CI is set but Chromium exposes no WebGPU adapter: ${w.skipped}`);
    warnOnce(`browser webgpu tests skipped: ${w.skipped}`);
    ctx.skip(w.skipped);
  }
  expect(w?.error, `webgpu: ${w?.error}`).toBeUndefined();
  return w as NonNullable<Report['webgpu']>;
}

function failures(r: Report, backend: string, prefix: string): string[] {
  return r.checks
    .filter((c) => c.backend === backend && c.name.startsWith(prefix) && !c.ok)
    .map((c) => `${c.name}: err ${c.err} > ${c.rtol} ${c.note}`);
}

function count(r: Report, backend: string, prefix: string): number {
  return r.checks.filter((c) => c.backend === backend && c.name.startsWith(prefix)).length;
}

describe('browser (headless Chromium, dist/ as native ES modules)', () => {
  it('loads the compiled package with no bundler and no Node module', (ctx) => {
    const r = need(ctx);
    expect(r.secureContext).toBe(true);
    expect(r.exports).toBeGreaterThan(10);
    expect(pageErrors).toEqual([]);
    const missing = (server?.log ?? []).filter((l) => !l.startsWith('200') && !l.includes('/favicon'));
    expect(missing, 'requests the server could not answer').toEqual([]);
  });

  it("runs the js backend in the page (createContext({ backend: 'js' }), the CPU path in browsers): every op, logprobs against float64", (ctx) => {
    const r = need(ctx);
    expect(r.cpu?.backend).toBe('js');
    expect(count(r, 'cpu', '')).toBeGreaterThan(20);
    expect(failures(r, 'cpu', '')).toEqual([]);
  });

  it("starts 'auto' and says why it passed over cuda", (ctx) => {
    const r = need(ctx);
    expect(r.auto?.error).toBeUndefined();
    expect(['webgpu', 'js']).toContain(r.auto?.backend);
    const cuda = r.auto?.skipped?.find((s) => s.backend === 'cuda');
    expect(cuda?.reason).toMatch(/needs Node\.js/);
  });

  it('webgpu (navigator.gpu): logprobs, entropy, Σp², logprobsBackward match cpu (V = 50000 and 1000)', (ctx) => {
    needWebGpu(ctx);
    const r = report as Report;
    expect(count(r, 'webgpu', 'logprobs')).toBe(10);
    expect(failures(r, 'webgpu', 'logprobs')).toEqual([]);
    // The shaders came from the server by URL (new URL('../../../shaders/', import.meta.url)).
    expect(server?.log).toContain('200 GET /shaders/logprobs.wgsl');
  });

  it('webgpu: advantages (grpo/verl, rloo; groups of 4 and of 80) and expandToTokens match cpu', (ctx) => {
    needWebGpu(ctx);
    const r = report as Report;
    expect(failures(r, 'webgpu', 'advantages')).toEqual([]);
    expect(count(r, 'webgpu', 'advantages')).toBe(20);
  });

  it('webgpu: the THR chain (restrictedVocab, gatherProbs, tokenHiddenReward, thrReweight) matches cpu', (ctx) => {
    needWebGpu(ctx);
    const r = report as Report;
    expect(failures(r, 'webgpu', 'thr chain')).toEqual([]);
    expect(count(r, 'webgpu', 'thr chain')).toBe(9);
  });
});
