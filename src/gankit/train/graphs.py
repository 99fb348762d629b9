"""Whole-step CUDA graphs for the Trainer (fast mode, CUDA only).

A training step of these networks launches a few hundred small kernels; at batch 64 a
GPU finishes them faster than Python can issue them. :class:`StepGraphs` records the
whole step -- discriminator step, clipping, generator step, optimizer updates, the
logged statistics -- once into a ``torch.cuda.CUDAGraph`` and then replays it, so a
step costs one launch.

How it is used (by :class:`gankit.Trainer` with ``cuda_graph=True``):

* Each variant of the step (discriminator only; discriminator + generator) first runs
  eagerly ``warmup`` times on a side stream (cuDNN picks its algorithms, optimizer state
  is created), then is captured, then replayed. Captured graphs keep the addresses of
  the parameters, gradients and optimizer state they were recorded with.
* Inputs are copied into static buffers before each replay: the real batch, and the
  latents when they are drawn on the CPU (``latents="cpu"``); with ``latents="device"``
  the graph draws them itself from the CUDA generator.
* A batch of another shape (the last, smaller batch of an epoch) runs eagerly.
* Optimizers run with ``capturable=True`` (their step counters live on the GPU); Adam
  and AdamW use their fused kernel (measured on an H200: task one 20,372 -> 22,994
  images/s), whose rounding differs slightly from the default foreach kernels.

Numerics are otherwise those of the eager fast-mode step: the captured kernels are the
ones the eager step ran.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch

from ..errors import ConfigError, TrainingError

__all__ = ["StepGraphs", "make_graph_safe", "optimizer_flags", "restore_optimizer_flags"]

#: optimizer classes that keep no host-side state a graph would freeze (no step counter)
_STATELESS_STEP = (torch.optim.SGD,)
#: optimizers whose single fused CUDA kernel replaces a dozen foreach launches per update
_FUSABLE = (torch.optim.Adam, torch.optim.AdamW)
_FLAGS = ("capturable", "fused", "foreach")


def make_graph_safe(optimizer: torch.optim.Optimizer) -> None:
    """Prepare an optimizer for capture: ``capturable=True`` (step counters on the device)
    and, for Adam and AdamW, the fused kernel (one launch per update instead of a dozen;
    its rounding differs slightly from the default foreach kernels).

    Raises:
        ConfigError: for an optimizer that cannot run inside a CUDA graph.
    """
    if not isinstance(optimizer, _STATELESS_STEP) and "capturable" not in optimizer.defaults:
        raise ConfigError(
            f"{type(optimizer).__name__} cannot run inside a CUDA graph (no capturable option); "
            "use Adam, AdamW, RMSprop or SGD, or train without cuda_graph."
        )
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = True
        if isinstance(optimizer, _FUSABLE):
            group["fused"], group["foreach"] = True, False
    _place_step_counters(optimizer)


def optimizer_flags(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The execution flags of every parameter group (capturable, fused, foreach)."""
    return [{k: group[k] for k in _FLAGS if k in group} for group in optimizer.param_groups]


def restore_optimizer_flags(optimizer: torch.optim.Optimizer, flags: list[dict[str, Any]]) -> None:
    """Put back flags from :func:`optimizer_flags` (``load_state_dict`` brings the
    writer's) and move the step counters where they now belong."""
    for group, saved in zip(optimizer.param_groups, flags):
        group.update(saved)
    _place_step_counters(optimizer)


def _place_step_counters(optimizer: torch.optim.Optimizer) -> None:
    # torch's own placement rule (Optimizer.load_state_dict): capturable or fused keep
    # float32 counters on the parameters' device; plain ones keep theirs, on the CPU.
    for group in optimizer.param_groups:
        on_device = bool(group.get("capturable") or group.get("fused"))
        for p in group["params"]:
            state = optimizer.state.get(p, {})
            step = state.get("step")
            if not isinstance(step, torch.Tensor):
                continue
            if on_device:
                state["step"] = step.to(device=p.device, dtype=torch.float32)
            elif step.device.type != "cpu":
                state["step"] = step.cpu()


class StepGraphs:
    """Capture-and-replay of a training step, one graph per variant of the step.

    Args:
        step_fn: ``step_fn(real, g_step, latent)`` runs one step eagerly and returns its
            logged values (0-d tensors, None for what the variant does not compute);
            ``latent(n)`` gives the latents it uses, in order (counted in the warm-up).
        draw_latent: draws one latent batch for the eager path (``latent(n)`` above).
        z_dim: the latent size.
        latents_on_device: the latents are drawn on the GPU inside the graph; otherwise
            they are drawn on the host before each replay and copied in.
        device: the CUDA device.
        warmup: eager runs of each variant before it is captured.
    """

    def __init__(
        self,
        step_fn: Callable[..., dict[str, torch.Tensor | None]],
        draw_latent: Callable[[int], torch.Tensor],
        *,
        z_dim: int,
        latents_on_device: bool,
        device: torch.device,
        warmup: int = 3,
    ) -> None:
        self.step_fn = step_fn
        self.draw_latent = draw_latent
        self.z_dim = z_dim
        self.latents_on_device = latents_on_device
        self.device = device
        self.warmup = warmup
        self._side = torch.cuda.Stream(device=device)
        self.reset()

    def reset(self) -> None:
        """Forget every captured graph (after optimizer state was replaced, e.g. on resume)."""
        self._graphs: dict[bool, dict[str, Any]] = {}
        self._eager_runs: dict[bool, int] = {False: 0, True: 0}
        self._latent_draws: dict[bool, int] = {False: 1, True: 2}  # counted in the warm-up
        self._shape: tuple[int, ...] | None = None

    @property
    def captured(self) -> int:
        """How many variants are captured so far."""
        return len(self._graphs)

    def __call__(self, real: torch.Tensor, g_step: bool) -> dict[str, torch.Tensor | None]:
        """Run one step: eager warm-up, capture, or replay."""
        if self._shape is None:
            self._shape = tuple(real.shape)
        if tuple(real.shape) != self._shape:  # e.g. the smaller last batch of an epoch
            return self.step_fn(real, g_step, self.draw_latent)
        graph = self._graphs.get(g_step)
        if graph is None:
            if self._eager_runs[g_step] < self.warmup:
                self._eager_runs[g_step] += 1
                return self._eager_on_side_stream(real, g_step)
            graph = self._graphs[g_step] = self._capture(real, g_step)
        return self._replay(graph, real, g_step)

    # ------------------------------------------------------------------ internals

    def _eager_on_side_stream(self, real: torch.Tensor, g_step: bool) -> dict[str, torch.Tensor | None]:
        current = torch.cuda.current_stream(self.device)
        self._side.wait_stream(current)
        draws = 0

        def counted(n: int) -> torch.Tensor:  # the capture needs one buffer per latent draw
            nonlocal draws
            draws += 1
            return self.draw_latent(n)

        with torch.cuda.stream(self._side), warnings.catch_warnings():
            # torch warns that capturable optimizers run uncaptured: that is what warm-up is
            warnings.filterwarnings("ignore", message=".*capturable=True.*", category=UserWarning)
            out = self.step_fn(real, g_step, counted)
        self._latent_draws[g_step] = draws
        current.wait_stream(self._side)
        return out

    def _capture(self, real: torch.Tensor, g_step: bool) -> dict[str, Any]:
        n = real.shape[0]
        static_real = torch.empty_like(real)  # same strides (channels-last stays so)
        # With host-drawn latents the step asks for one latent batch per network step, in
        # order; the graph reads them from these buffers, filled before each replay.
        count = 0 if self.latents_on_device else self._latent_draws[g_step]
        latents = [torch.empty(n, self.z_dim, device=self.device) for _ in range(count)]
        cursor = iter(latents)

        def graph_latent(m: int) -> torch.Tensor:
            return self.draw_latent(m) if self.latents_on_device else next(cursor)

        graph = torch.cuda.CUDAGraph()
        torch.cuda.synchronize(self.device)
        try:
            with torch.cuda.graph(graph):
                out = self.step_fn(static_real, g_step, graph_latent)
                # every logged value of the step, packed in one tensor (one copy per replay)
                keys = [k for k, v in out.items() if v is not None]
                packed = torch.stack([out[k].float() for k in keys])
        except RuntimeError as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise TrainingError(
                f"could not capture the training step in a CUDA graph ({first[:160]}); "
                "train without cuda_graph (drop --cuda-graph)."
            ) from None
        return {"graph": graph, "real": static_real, "latents": latents, "packed": packed,
                "keys": keys, "none": [k for k, v in out.items() if v is None]}

    def _replay(self, graph: dict[str, Any], real: torch.Tensor, g_step: bool) -> dict[str, torch.Tensor | None]:
        graph["real"].copy_(real, non_blocking=True)
        for buf in graph["latents"]:  # drawn in the eager order: D-step latents, then G-step
            buf.copy_(self.draw_latent(buf.shape[0]), non_blocking=True)
        graph["graph"].replay()
        row = graph["packed"].clone()  # the next replay overwrites the static outputs
        out: dict[str, torch.Tensor | None] = dict(zip(graph["keys"], row.unbind(0)))
        out.update(dict.fromkeys(graph["none"]))
        return out
