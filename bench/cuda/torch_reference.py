"""PyTorch timings of the ops grpo-kernels implements, for the GPU session's comparisons.

    python bench/cuda/torch_reference.py [--rows 16384] [--vocab 151936]

Prints one JSON line per op: {"op", "shape", "ms_median", "gbps"?}, plus the device-to-device copy
bandwidth measured in the same run (the yardstick of the logprobs goal: >= 85% of it).
Needs torch with CUDA; uses only torch (no flash-attn/liger).
"""
import argparse
import json

import torch


def timeit(fn, warmup=3, iters=10):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    times.sort()
    return times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=16384)
    ap.add_argument("--vocab", type=int, default=151936)
    args = ap.parse_args()
    dev = "cuda"
    torch.manual_seed(0)

    # Copy bandwidth (read + write).
    nbytes = 1 << 30
    src = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    ms = timeit(lambda: dst.copy_(src))
    print(json.dumps({"op": "copy", "bytes": nbytes, "ms_median": ms, "gbps": 2 * nbytes / ms / 1e6}))
    del src, dst

    # logprobs: log_softmax + gather (the common PyTorch form), bf16 logits, f32 math.
    N, V = args.rows, args.vocab
    logits = torch.randn(N, V, device=dev, dtype=torch.bfloat16) * 3
    targets = torch.randint(0, V, (N,), device=dev)

    def lp():
        lse = torch.logsumexp(logits.float(), dim=-1)
        return logits.gather(1, targets[:, None]).squeeze(1).float() - lse

    ms = timeit(lp)
    print(json.dumps({"op": "logprobs", "shape": [N, V], "ms_median": ms, "gbps": N * V * 2 / ms / 1e6}))
    del logits

    # advantages: grpo over 1M responses in 64k groups of 16.
    G, n = 65536, 16
    r = torch.randn(G, n, device=dev)

    def grpo():
        m = r.mean(-1, keepdim=True)
        s = r.std(-1, keepdim=True)
        return (r - m) / (s + 1e-6)

    print(json.dumps({"op": "advantages_grpo", "shape": [G, n], "ms_median": timeit(grpo)}))

    # THR, matrix form (THR.md): M = G+^T (w * H+); s = ((G M) * H).sum(-1), per group.
    for T, K, d, tp in [(4096, 1500, 3584, 2048), (8192, 3000, 4096, 4096)]:
        H = torch.randn(T, d, device=dev)
        Q = torch.rand(T, K, device=dev) / K
        col = torch.randint(0, K, (T,), device=dev)
        Gm = -Q
        Gm[torch.arange(T, device=dev), col] += 1
        w = torch.full((tp, 1), 1.0 / 512, device=dev)

        def thr():
            M = Gm[:tp].T @ (w * H[:tp])
            return ((Gm @ M) * H).sum(-1)

        print(json.dumps({"op": "thr_matrix_form_f32", "shape": {"T": T, "K": K, "d": d, "Tplus": tp}, "ms_median": timeit(thr)}))
        torch.backends.cuda.matmul.allow_tf32 = True
        print(json.dumps({"op": "thr_matrix_form_tf32", "shape": {"T": T, "K": K, "d": d, "Tplus": tp}, "ms_median": timeit(thr)}))
        torch.backends.cuda.matmul.allow_tf32 = False


if __name__ == "__main__":
    main()
