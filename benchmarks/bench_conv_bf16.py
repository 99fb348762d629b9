"""How much can bf16 speed up the convolutions of task one on this CPU?

Times the three large 5x5 stride-2 convolutions of the task-one discriminator (the
generator's transposed convolutions have the same shapes and FLOPs) at batch 64, forward
and forward+backward, in float32 (NCHW, the faithful path) and in bfloat16
(channels-last, fast mode), and prints GFLOP/s and the bf16/fp32 ratio. Those ratios
bound what fast mode can gain over the faithful path on the same work.

Usage::

    python benchmarks/bench_conv_bf16.py
"""

from __future__ import annotations

import time

import torch

SHAPES = [(64, 128, 32), (128, 256, 16), (256, 512, 8)]  # (in, out, input side)


def _seconds(fn, repeats: int = 10) -> float:
    for _ in range(2):
        fn()
    t0 = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t0) / repeats


def main() -> None:
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'conv':<16} {'fwd fp32':>9} {'fwd bf16':>9} {'ratio':>6} {'f+b fp32':>9} {'f+b bf16':>9} {'ratio':>6}  (GFLOP/s)")
    for cin, cout, side in SHAPES:
        flops = 64 * (side // 2) ** 2 * cin * cout * 25 * 2  # one forward
        rates = {}
        for name, dtype, fmt in (("fp32", torch.float32, torch.contiguous_format),
                                 ("bf16", torch.bfloat16, torch.channels_last)):
            conv = torch.nn.Conv2d(cin, cout, 5, 2, 2).to(dtype, memory_format=fmt)
            x = torch.randn(64, cin, side, side).to(dtype).contiguous(memory_format=fmt).requires_grad_()
            grad = torch.randn_like(conv(x))
            fwd = _seconds(lambda c=conv, x=x: c(x.detach()))
            both = _seconds(lambda c=conv, x=x, g=grad: torch.autograd.grad(c(x), (x, c.weight), g))
            rates[name] = (flops / fwd / 1e9, 3 * flops / both / 1e9)  # backward: data + weights
        (f32, b32), (f16, b16) = rates["fp32"], rates["bf16"]
        print(f"{cin}->{cout} @{side:<4}  {f32:9.0f} {f16:9.0f} {f16 / f32:5.2f}x {b32:9.0f} {b16:9.0f} {b16 / b32:5.2f}x")


if __name__ == "__main__":
    main()
