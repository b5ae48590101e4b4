"""PyTorch CPU as a peer of the native cpu backend (bench/cpu.bench.ts): logprobs the way trainers write
it, log_softmax(logits / T, -1).gather(-1, targets), on [N, V] f32 logits (normal, std 3) with
torch.set_num_threads(threads). Prints one JSON line: median and min ms over `reps` timed runs after two
warm-ups, and torch's version. Usage: python3 torch_logprobs.py N V threads reps"""
import json
import sys
import time

import torch


def main() -> None:
    n, v, threads, reps = (int(a) for a in sys.argv[1:5])
    torch.set_num_threads(threads)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, v, generator=g) * 3
    t = torch.randint(0, v, (n, 1), generator=g)

    def run() -> torch.Tensor:
        return torch.log_softmax(x, dim=-1).gather(-1, t)

    for _ in range(2):
        run()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    print(json.dumps({"ms": times[len(times) // 2], "minMs": times[0], "torch": torch.__version__,
                      "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
