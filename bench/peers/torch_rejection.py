"""PyTorch CPU as a peer of rolloutRejection (bench/rejection.bench.ts's sizes): verl's rollout rejection
sampling as verl computes it, on the padded [R, Lmax] batch a trainer holds (response_mask for the
padding): log_ratio = old − rollout clamped to ±20, the statistic (k1 −x, k2 x²/2, k3 e^x − 1 − x), a
token criterion's bounds or a sequence's masked sum / mean / max broadcast back, the product of the
keep masks, and the metrics verl logs for each option (masked means of the statistic and of the
rejections, max and min, the high/low fractions). Written from verl's compute_rollout_rejection_mask
(rollout_corr_helper.py @ b178a3cd) as a benchmark, not a copy. Lengths 1 to 2·mean − 1 (the same
generator as the case: lcg(31)), λ of spread 0.1.
Prints one JSON line: median and min ms over `reps` timed runs after two warm-ups, and torch's version.
Usage: python3 torch_rejection.py R meanLength variant(k3|all) threads reps"""
import json
import math
import sys
import time

import torch

OPTIONS = {
    "k3": [("seq_mean", "k3", None, 0.01)],
    "all": [
        ("token", "k1", 0.5, 2.0), ("token", "k2", None, 0.5), ("token", "k3", None, 0.5),
        ("seq_sum", "k1", 0.01, 100.0), ("seq_sum", "k2", None, 4.0), ("seq_sum", "k3", None, 4.0),
        ("seq_mean", "k1", 0.9, 1.1), ("seq_mean", "k2", None, 0.02), ("seq_mean", "k3", None, 0.02),
        ("seq_max", "k2", None, 0.5), ("seq_max", "k3", None, 0.5),
    ],
}


def lcg_lengths(responses: int, mean: int) -> list:
    # bench/case.ts lcg: s = (s·1664525 + 1013904223) mod 2^32, u = s / 2^32.
    s = 31
    out = []
    for _ in range(responses):
        s = (s * 1664525 + 1013904223) % 2**32
        out.append(1 + int(s / 2**32 * (2 * mean - 1)))
    return out


def rejection(log_ratio, mask, options):
    x = log_ratio.clamp(-20.0, 20.0)
    stats = {"k1": -x, "k2": 0.5 * x * x, "k3": torch.exp(x) - 1.0 - x}
    maskf = mask.to(x.dtype)
    n = maskf.sum(-1)
    valid_seq = n > 0
    combined = torch.ones_like(x)
    metrics = {}
    for level, k, lower, upper in options:
        s = stats[k]
        lo = math.log(lower) if k == "k1" else None
        hi = math.log(upper) if k == "k1" else upper
        if level == "token":
            keep = s <= hi
            if lo is not None:
                keep &= s >= lo
            per_token = s
        else:
            masked = torch.where(mask, s, torch.zeros_like(s))
            if level == "seq_sum":
                seq = masked.sum(-1)
            elif level == "seq_mean":
                seq = masked.sum(-1) / (n + 1e-8)
            else:
                seq = torch.where(mask, s, torch.full_like(s, -math.inf)).max(-1).values
                seq = torch.where(torch.isinf(seq) & (seq < 0), torch.zeros_like(seq), seq)
            keep_seq = seq <= hi
            if lo is not None:
                keep_seq &= seq >= lo
            keep = keep_seq.unsqueeze(-1).expand_as(mask)
            per_token = seq.unsqueeze(-1).expand_as(x)
        keepf = keep.to(x.dtype)
        combined = combined * keepf
        tot = maskf.sum()
        metrics[level + k + "mean"] = ((per_token * maskf).sum() / tot).item()
        metrics[level + k + "max"] = per_token.masked_fill(~mask, -math.inf).max().item()
        metrics[level + k + "min"] = per_token.masked_fill(~mask, math.inf).min().item()
        metrics[level + k + "high"] = (((per_token > hi).to(x.dtype) * maskf).sum() / tot).item()
        metrics[level + k + "masked"] = (((1 - keepf) * maskf).sum() / tot).item()
        metrics[level + k + "seqmasked"] = ((~keep & mask).any(-1) & valid_seq).to(x.dtype).sum().item()
    final = (mask.to(x.dtype) * combined).to(torch.uint8)
    return final, metrics


def main() -> None:
    responses, mean = int(sys.argv[1]), int(sys.argv[2])
    variant, threads, reps = sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    lengths = torch.tensor(lcg_lengths(responses, mean))
    width = int(lengths.max())
    mask = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
    g = torch.Generator().manual_seed(1)
    old = -(torch.randn(responses, width, generator=g) * 0.5).abs() - 0.05
    rollout = old + torch.randn(responses, width, generator=g) * 0.1
    log_ratio = old - rollout

    def run():
        return rejection(log_ratio, mask, OPTIONS[variant])

    for _ in range(2):
        run()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print(json.dumps({"ms": times[len(times) // 2], "minMs": times[0], "torch": torch.__version__,
                      "threads": torch.get_num_threads(), "tokens": int(lengths.sum()), "width": width}))


if __name__ == "__main__":
    main()
