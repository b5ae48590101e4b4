/**
 * ONNX Runtime (onnxruntime-node, a dev dependency; its CPU binaries ship in the npm package) as a peer
 * of the native cpu backend: logprobs as the two-node graph a framework exports,
 *   ls = LogSoftmax(logits, axis = −1);  out = GatherElements(ls, targets[N, 1], axis = 1),
 * with the model's protobuf written here by a minimal encoder (no protobufjs, no committed binary).
 * Loaded with createRequire, so a checkout without the package (or with it under
 * ONNXRUNTIME_NODE_PATH, e.g. installed elsewhere with ONNXRUNTIME_NODE_INSTALL=skip) skips the peer
 * with the reason.
 */
import { createRequire } from 'node:module';

// ------------------------------------------------------------------ protobuf, the little we need
function varint(n: number | bigint): number[] {
  let v = BigInt(n);
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v > 0n) b |= 0x80;
    out.push(b);
  } while (v > 0n);
  return out;
}
const key = (field: number, wire: number) => varint((field << 3) | wire);
const int = (field: number, v: number | bigint) => [...key(field, 0), ...varint(v)];
const bytes = (field: number, b: number[]) => [...key(field, 2), ...varint(b.length), ...b];
const str = (field: number, s: string) => bytes(field, [...new TextEncoder().encode(s)]);

const FLOAT = 1;
const INT64 = 7;
const ATTR_INT = 2;

/** ValueInfoProto of a tensor with symbolic (string) or fixed (number) dims. */
function valueInfo(name: string, elemType: number, dims: (string | number)[]): number[] {
  const shape = dims.flatMap((d) => bytes(1, typeof d === 'string' ? str(2, d) : int(1, d)));
  const tensorType = [...int(1, elemType), ...bytes(2, shape)];
  return [...str(1, name), ...bytes(2, bytes(1, tensorType))];
}
/** NodeProto; `axis` is its one int attribute (none when undefined). */
function node(op: string, inputs: string[], outputs: string[], axis?: number): number[] {
  // A negative int64 is its two's complement as a 64-bit varint.
  const attr =
    axis === undefined
      ? []
      : bytes(5, [
          ...str(1, 'axis'),
          ...int(3, axis < 0 ? (1n << 64n) + BigInt(axis) : axis),
          ...int(20, ATTR_INT),
        ]);
  return [
    ...inputs.flatMap((i) => str(1, i)),
    ...outputs.flatMap((o) => str(2, o)),
    ...str(3, op),
    ...str(4, op),
    ...attr,
  ];
}

/** The logprobs model: logits float [N, V], targets int64 [N, 1] → logprobs float [N, 1]. */
export function logprobsModel(): Uint8Array {
  const graph = [
    ...bytes(1, node('LogSoftmax', ['logits'], ['ls'], -1)),
    ...bytes(1, node('GatherElements', ['ls', 'targets'], ['logprobs'], 1)),
    ...str(2, 'logprobs'),
    ...bytes(11, valueInfo('logits', FLOAT, ['N', 'V'])),
    ...bytes(11, valueInfo('targets', INT64, ['N', 1])),
    ...bytes(12, valueInfo('logprobs', FLOAT, ['N', 1])),
  ];
  return modelOf(graph);
}

/** ModelProto (IR version 8, opset 13) around a GraphProto's bytes. */
function modelOf(graph: number[]): Uint8Array {
  const opset = [...str(1, ''), ...int(2, 13)];
  return Uint8Array.from([
    ...int(1, 8),
    ...str(2, 'grpo-kernels bench'),
    ...bytes(7, graph),
    ...bytes(8, opset),
  ]);
}

/**
 * The LM-head model: hidden float [N, d], weightT float [d, V] (the head's weight transposed, as an
 * exported nn.Linear feeds MatMul), targets int64 [N, 1] → logprobs float [N, 1], through the
 * materialised logits: MatMul → LogSoftmax → GatherElements.
 */
export function lmheadModel(): Uint8Array {
  const graph = [
    ...bytes(1, node('MatMul', ['hidden', 'weightT'], ['logits'])),
    ...bytes(1, node('LogSoftmax', ['logits'], ['ls'], -1)),
    ...bytes(1, node('GatherElements', ['ls', 'targets'], ['logprobs'], 1)),
    ...str(2, 'lmhead'),
    ...bytes(11, valueInfo('hidden', FLOAT, ['N', 'd'])),
    ...bytes(11, valueInfo('weightT', FLOAT, ['d', 'V'])),
    ...bytes(11, valueInfo('targets', INT64, ['N', 1])),
    ...bytes(12, valueInfo('logprobs', FLOAT, ['N', 1])),
  ];
  return modelOf(graph);
}

interface OrtTensorCtor {
  new (type: string, data: Float32Array | BigInt64Array, dims: number[]): unknown;
}
interface OrtSession {
  run(feeds: Record<string, unknown>): Promise<Record<string, { data: Float32Array }>>;
  release?(): Promise<void>;
}
interface Ort {
  Tensor: OrtTensorCtor;
  InferenceSession: { create(model: Uint8Array, opts: Record<string, unknown>): Promise<OrtSession> };
  env?: { versions?: { node?: string; common?: string } };
}

/** onnxruntime-node, or why it cannot be loaded. */
export function loadOrt(): { ort?: Ort; version?: string; reason?: string } {
  const tries = [process.env.ONNXRUNTIME_NODE_PATH, 'onnxruntime-node'].filter((x): x is string => !!x);
  const req = createRequire(import.meta.url);
  let last = '';
  for (const name of tries) {
    try {
      const ort = req(name) as Ort;
      let version = 'unknown';
      try {
        version = (req(`${name}/package.json`) as { version: string }).version;
      } catch {
        version = ort.env?.versions?.node ?? 'unknown';
      }
      return { ort, version };
    } catch (e) {
      last = `${name}: ${(e as Error).message.split('\n')[0]}`;
    }
  }
  return {
    reason: `onnxruntime-node not loadable (${last}); install it (a dev dependency: ONNXRUNTIME_NODE_INSTALL=skip npm ci) or set ONNXRUNTIME_NODE_PATH`,
  };
}

/** A runner of `model` on `threads` intra-op threads over fixed feeds (output `logprobs`). */
async function ortRunner(
  ort: Ort,
  model: Uint8Array,
  threads: number,
  feeds: Record<string, unknown>,
): Promise<{ run: () => Promise<Float32Array>; close: () => Promise<void> }> {
  const session = await ort.InferenceSession.create(model, {
    executionProviders: ['cpu'],
    intraOpNumThreads: threads,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
  });
  return {
    run: async () => (await session.run(feeds)).logprobs.data,
    close: async () => {
      await session.release?.();
    },
  };
}

/** targets [N] as the int64 [N, 1] tensor GatherElements takes. */
function targetsTensor(ort: Ort, targets: Int32Array): unknown {
  return new ort.Tensor(
    'int64',
    BigInt64Array.from(targets, (v) => BigInt(v)),
    [targets.length, 1],
  );
}

/** A session of the logprobs model on `threads` intra-op threads, and a runner for fixed inputs. */
export function ortLogprobs(
  ort: Ort,
  threads: number,
  logits: Float32Array,
  targets: Int32Array,
  vocab: number,
): Promise<{ run: () => Promise<Float32Array>; close: () => Promise<void> }> {
  return ortRunner(ort, logprobsModel(), threads, {
    logits: new ort.Tensor('float32', logits, [targets.length, vocab]),
    targets: targetsTensor(ort, targets),
  });
}

/**
 * A session of the LM-head model on `threads` intra-op threads, and a runner for fixed inputs (the
 * weight transposed once here, outside the timed runs).
 */
export function ortLmhead(
  ort: Ort,
  threads: number,
  hidden: Float32Array,
  weight: Float32Array,
  targets: Int32Array,
  dim: number,
  vocab: number,
): Promise<{ run: () => Promise<Float32Array>; close: () => Promise<void> }> {
  const wt = new Float32Array(dim * vocab);
  for (let v = 0; v < vocab; v++) for (let k = 0; k < dim; k++) wt[k * vocab + v] = weight[v * dim + k];
  return ortRunner(ort, lmheadModel(), threads, {
    hidden: new ort.Tensor('float32', hidden, [targets.length, dim]),
    weightT: new ort.Tensor('float32', wt, [dim, vocab]),
    targets: targetsTensor(ort, targets),
  });
}
