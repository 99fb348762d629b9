"""How many toy-faces images per second one CPU core generates.

Usage:
    OMP_NUM_THREADS=1 python benchmarks/bench_toyfaces.py [--n 4096] [--size 64] [--threads 1]

Prints one line per repeat and the best rate, e.g. ``toy-faces 64x64: 5100 images/s``.
"""

from __future__ import annotations

import argparse
import time

import torch

from gankit.data import generate_toy_faces


def main(argv: list[str] | None = None) -> float:
    """Runs the benchmark.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The best images-per-second rate over the repeats.

    Example:
        >>> main(["--n", "256", "--repeats", "1"])  # doctest: +SKIP
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096, help="images per repeat")
    parser.add_argument("--size", type=int, default=64, help="image side length")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (best is kept)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    generate_toy_faces(64, args.size)  # warm-up: first-call allocations and dispatch
    best = 0.0
    for repeat in range(args.repeats):
        start = time.perf_counter()
        generate_toy_faces(args.n, args.size, seed=repeat)
        rate = args.n / (time.perf_counter() - start)
        best = max(best, rate)
        print(f"repeat {repeat}: {rate:,.0f} images/s")
    print(f"toy-faces {args.size}x{args.size}, {args.threads} thread(s): {best:,.0f} images/s")
    return best


if __name__ == "__main__":
    main()
