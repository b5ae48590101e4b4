"""PyTorch timings of the ops grpo-kernels implements, for the GPU session's comparisons.

    python bench/cuda/torch_reference.py [--rows 16384] [--vocab 151936]

The sizes are the GPU-verification goals (bench/RESULTS.md); scripts/gpu/goals.mjs times ours.

Prints one JSON line per op: {"op", "shape", "ms_median", "gbps"?}, plus the device-to-device copy
bandwidth measured in the same run (the yardstick of the logprobs goal: >= 85% of it).
Needs torch with CUDA; uses only torch (no flash-attn/liger).
"""
import argparse
import json

import torch


def timeit(fn, warmup=3, iters=10):
    if not torch.cuda.is_available():  # a dry run on the CPU: wall time
        import time
        fn()
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
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
    ap.add_argument("--groups", type=int, default=65536)
    ap.add_argument("--thr-tokens", type=int, default=2048, help="tokens per response (8 responses)")
    ap.add_argument("--thr-vocab", type=int, default=4096)
    ap.add_argument("--thr-d", type=int, default=3584)
    ap.add_argument("--lm-rows", type=int, default=8192)
    ap.add_argument("--lm-dim", type=int, default=4096)
    ap.add_argument("--lm-vocab", type=int, default=151936)
    args = ap.parse_args()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    torch.manual_seed(0)
    if dev == "cuda":
        print(json.dumps({"op": "device", "name": torch.cuda.get_device_name(), "torch": torch.__version__,
                          "cuda": torch.version.cuda}))

    # Copy bandwidth (read + write).
    nbytes = args.rows * args.vocab * 2
    src = torch.empty(nbytes, dtype=torch.uint8, device=dev)
    dst = torch.empty_like(src)
    ms = timeit(lambda: dst.copy_(src))
    print(json.dumps({"op": "copy", "bytes": nbytes, "ms_median": ms, "gbps": 2 * nbytes / ms / 1e6}))
    del src, dst

    # logprobs forward, bf16 logits, f32 math: the common eager forms; the fastest is the yardstick.
    N, V = args.rows, args.vocab
    logits = (torch.randn(N, V, device=dev, dtype=torch.float32) * 3).to(torch.bfloat16)
    targets = torch.randint(0, V, (N,), device=dev)
    lbytes = N * V * 2

    def lp_lse():  # logsumexp over an f32 copy, then gather
        lse = torch.logsumexp(logits.float(), dim=-1)
        return logits.gather(1, targets[:, None]).squeeze(1).float() - lse

    def lp_log_softmax():  # log_softmax + gather (TRL's selective_log_softmax for f32)
        return torch.log_softmax(logits.float(), dim=-1).gather(1, targets[:, None]).squeeze(1)

    def lp_rowloop():  # TRL's selective_log_softmax for bf16: row chunks, log_softmax in bf16
        out = []
        for i in range(0, N, 1024):
            ls = torch.log_softmax(logits[i:i + 1024], dim=-1)
            out.append(ls.gather(1, targets[i:i + 1024, None]).squeeze(1))
        return torch.cat(out)

    def lp_entropy():  # + entropy and sum p^2 (verl's entropy_from_logits form, f32)
        x = logits.float()
        lse = torch.logsumexp(x, dim=-1, keepdim=True)
        p = torch.exp(x - lse)
        ent = lse.squeeze(1) - (p * x).sum(-1)
        return x.gather(1, targets[:, None]).squeeze(1) - lse.squeeze(1), ent, (p * p).sum(-1)

    for name, fn in [("lse_gather", lp_lse), ("log_softmax_gather", lp_log_softmax), ("bf16_row_chunks", lp_rowloop),
                     ("entropy_sumsq", lp_entropy)]:
        ms = timeit(fn)
        print(json.dumps({"op": "logprobs", "form": name, "shape": [N, V], "ms_median": ms, "gbps": lbytes / ms / 1e6}))
        torch.cuda.empty_cache()

    # backward: d logp_t / d x = onehot(t) - softmax(x), times the upstream gradient, written as bf16.
    g = torch.randn(N, device=dev) * 0.1
    lse = torch.logsumexp(logits.float(), dim=-1, keepdim=True)

    def bwd():
        gr = -torch.exp(logits.float() - lse) * g[:, None]
        gr.scatter_add_(1, targets[:, None], g[:, None])
        return gr.to(torch.bfloat16)

    ms = timeit(bwd)
    print(json.dumps({"op": "logprobsBackward", "form": "eager", "shape": [N, V], "ms_median": ms,
                      "gbps": 2 * lbytes / ms / 1e6}))
    dst = torch.empty_like(logits)
    ms = timeit(lambda: dst.copy_(logits))
    print(json.dumps({"op": "copy_logits", "bytes": lbytes, "ms_median": ms, "gbps": 2 * lbytes / ms / 1e6}))
    del logits, dst, lse
    torch.cuda.empty_cache()

    # advantages: GRPO over 2^20 responses in 65536 ragged groups (sizes 1..31), segment sums.
    G = args.groups
    sizes = torch.randint(1, 32, (G,), device=dev)
    gid = torch.repeat_interleave(torch.arange(G, device=dev), sizes)
    R = gid.numel()
    r = (torch.rand(R, device=dev) < 0.4).float() + 0.1 * torch.randn(R, device=dev)
    cnt = sizes.float()

    def grpo():
        m = torch.zeros(G, device=dev).index_add_(0, gid, r) / cnt
        dv = r - m[gid]
        var = torch.zeros(G, device=dev).index_add_(0, gid, dv * dv) / (cnt - 1).clamp(min=1)
        return dv / (var.sqrt()[gid] + 1e-6)

    print(json.dumps({"op": "advantages_grpo_ragged", "shape": {"R": R, "G": G}, "ms_median": timeit(grpo, iters=50)}))

    # THR, matrix form (docs/THR.md): M = G+^T (w * H+); s = ((G M) * H).sum(-1); one group of
    # 8 responses x 2048 tokens, |V*| = 4096, d = 3584, half the responses correct.
    T, K, d = 8 * args.thr_tokens, args.thr_vocab, args.thr_d
    tp = T // 2
    H = torch.randn(T, d, device=dev)
    Q = torch.rand(T, K, device=dev) / K
    col = torch.randint(0, K, (T,), device=dev)
    Gm = -Q
    Gm[torch.arange(T, device=dev), col] += 1
    w = torch.full((tp, 1), 1.0 / args.thr_tokens, device=dev)

    def thr():
        M = Gm[:tp].T @ (w * H[:tp])
        return ((Gm @ M) * H).sum(-1)

    flops = 2 * K * d * (tp + T)
    shape = {"T": T, "K": K, "d": d, "Tplus": tp}
    ref = None
    for mode in ("f32", "tf32"):
        torch.backends.cuda.matmul.allow_tf32 = mode == "tf32"
        ms = timeit(thr)
        out = thr()
        if ref is None:
            ref = ((Gm.double() @ (Gm[:tp].double().T @ (w.double() * H[:tp].double()))) * H.double()).sum(-1)
        err = ((out.double() - ref).abs().max() / ref.abs().max()).item()
        print(json.dumps({"op": f"thr_matrix_form_{mode}", "shape": shape, "ms_median": ms,
                          "tflops": flops / ms / 1e9, "max_err_rel_to_max": err}))
    torch.backends.cuda.matmul.allow_tf32 = False
    del H, Q, Gm
    torch.cuda.empty_cache()

    # The LM head, materialised (what linearLogprobs avoids): logits = h @ W^T in bf16, log_softmax in
    # f32, gather; the backward through autograd. Time and peak memory (harness case linearLogprobs*).
    N, d, V = args.lm_rows, args.lm_dim, args.lm_vocab
    h = torch.randn(N, d, device=dev, dtype=torch.bfloat16, requires_grad=True)
    W = (torch.randn(V, d, device=dev) * (3 / d ** 0.5)).to(torch.bfloat16).requires_grad_()
    y = torch.randint(0, V, (N,), device=dev)
    g = 0.1 * torch.randn(N, device=dev)
    useful = 2 * N * V * d

    def lm_fwd():
        logits = h @ W.T
        return torch.log_softmax(logits.float(), -1).gather(-1, y[:, None])[:, 0]

    def lm_fwd_bwd():
        lp = lm_fwd()
        gh, gw = torch.autograd.grad(lp, (h, W), g)
        return gh, gw

    for name, fn, work in (("linearLogprobs_materialised", lm_fwd, useful),
                           ("linearLogprobs_materialised_fwd_bwd", lm_fwd_bwd, 3 * useful)):
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        with torch.no_grad() if fn is lm_fwd else torch.enable_grad():
            ms = timeit(fn)
        peak = torch.cuda.max_memory_allocated() - base
        print(json.dumps({"op": name, "shape": {"N": N, "d": d, "V": V}, "ms_median": ms,
                          "tflops": work / ms / 1e9, "peak_extra_bytes": peak}))


if __name__ == "__main__":
    main()
