"""Generator EMA: an exponential moving average of the generator's weights.

Samples of the averaged generator are smoother and better than those of the raw one at the
same step (Karras et al. 2018, Yazici et al. 2019); StyleGAN2 states the decay as a
*half-life in images*: after every step of ``batch`` images,

.. math::

    \\theta_{ema} \\leftarrow \\beta\\,\\theta_{ema} + (1 - \\beta)\\,\\theta_G,
    \\qquad \\beta = 0.5^{\\,batch / h},

so the weight of a step halves every ``h`` images whatever the batch size. With a ramp-up
ratio ``r`` (StyleGAN2-ADA: 0.05) the half-life is ``min(h, r * images_seen)``: early in
training, when the generator changes fast, the average forgets quickly.

:class:`GeneratorEMA` is a :class:`~gankit.train.Callback` (updated after every step of
:meth:`~gankit.Trainer.fit`, its state in its own checkpoint slot). A trainer with one --
passed in ``callbacks`` or brought by the recipe (``recipe.ema``) -- uses the averaged
generator for the sample grids, evaluation, :meth:`~gankit.Trainer.sample` and
:meth:`~gankit.Trainer.export_generator`; ``ema=False`` gives the raw generator.

Distributed training: every rank holds the same generator parameters after each step (DDP
averages gradients), so every rank computes the same average; BatchNorm buffers, which
each rank keeps for itself, are broadcast from rank 0 after each update, so the averaged
generators are identical on every rank. CUDA graphs: the update runs after the captured
step, outside it, on the parameters the graph updates in place, so it is correct as is.
"""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from ..errors import ConfigError
from .callbacks import Callback

if TYPE_CHECKING:  # pragma: no cover
    from .trainer import Trainer

__all__ = ["GeneratorEMA", "recompute_batchnorm", "ema_weights"]

KIND = "generator_ema"  # marks the EMA's checkpoint slot (read by ``gankit sample`` / ``export``)


def _batchnorms(net: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recompute_batchnorm(
    generator: nn.Module, *, z_dim: int, num_images: int = 1024, batch_size: int = 64,
    seed: int = 0, device: str | torch.device = "cpu",
) -> nn.Module:
    """Recompute the BatchNorm running statistics of ``generator`` on its own samples.

    The running statistics are reset and re-estimated as a plain (cumulative) average over
    ``num_images`` generated images; only the BatchNorm layers are put in train mode (dropout
    stays off) and the latents come from a private seeded generator, so torch's global RNG is
    untouched and the result is a deterministic function of the weights.

    Args:
        generator: the network (changed in place; left in eval mode).
        z_dim: latent size.
        num_images: images to estimate the statistics on.
        batch_size: latents per forward pass.
        seed: seed of the latents.
        device: where the generator runs.

    Returns:
        The generator.
    """
    bns = _batchnorms(generator)
    generator.eval()
    if not bns:
        return generator
    momenta = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average: the mean over every batch seen
        bn.train()
    gen = torch.Generator().manual_seed(seed)
    try:
        for start in range(0, num_images, batch_size):
            n = min(batch_size, num_images - start)
            generator(torch.randn(n, z_dim, generator=gen).to(device))
    finally:
        for bn, m in zip(bns, momenta):
            bn.momentum = m
        generator.eval()
    return generator


class GeneratorEMA(Callback):
    """An exponential moving average of the generator, updated after every training step.

    Give the decay directly (``decay``: ``beta`` per step) or as a half-life in images
    (``half_life_images``: ``beta = 0.5 ** (batch / half_life_images)``); with neither, the
    half-life is 10,000 images (StyleGAN2's ``ema_kimg=10``).

    Args:
        decay: ``beta`` of every step, in ``[0, 1]`` (0: the average is the generator).
        half_life_images: images after which a step's weight in the average has halved.
        rampup: ramp-up ratio ``r``: the half-life is at most ``r * images_seen``
            (StyleGAN2-ADA: 0.05); with ``decay``, the decay is first turned into its
            half-life at the batch size. None: no ramp-up.
        start_step: until the trainer has done this many steps the average is a copy of
            the generator (no averaging yet).
        buffers: ``"copy"`` (BatchNorm statistics and other buffers copied from the
            generator, as StyleGAN2 does) or ``"average"`` (floating buffers averaged too).
        recompute_bn: before sampling, recompute the averaged generator's BatchNorm
            statistics on this many of its own images (0: never). The statistics of the raw
            generator do not belong to the averaged weights; recomputing them does.
        name: the checkpoint slot and the prefix of schedule targets (``"ema.half_life_images"``).

    Example:
        >>> ema = GeneratorEMA(half_life_images=10_000, rampup=0.05)
        >>> round(ema.beta(batch_images=64, images_seen=10**6), 6)
        0.995574
    """

    def __init__(
        self,
        decay: float | None = None,
        *,
        half_life_images: float | None = None,
        rampup: float | None = None,
        start_step: int = 0,
        buffers: str = "copy",
        recompute_bn: int = 0,
        name: str = "ema",
    ) -> None:
        if decay is not None and half_life_images is not None:
            raise ConfigError("give GeneratorEMA either decay or half_life_images, not both.")
        if decay is not None and not 0.0 <= decay <= 1.0:
            raise ConfigError(f"GeneratorEMA decay must be in [0, 1], got {decay!r}.")
        if half_life_images is None and decay is None:
            half_life_images = 10_000.0
        if half_life_images is not None and not half_life_images >= 0:
            raise ConfigError(f"GeneratorEMA half_life_images must be >= 0, got {half_life_images!r}.")
        if rampup is not None and not rampup > 0:
            raise ConfigError(f"GeneratorEMA rampup must be > 0 or None, got {rampup!r}.")
        if buffers not in ("copy", "average"):
            raise ConfigError(f"GeneratorEMA buffers must be 'copy' or 'average', got {buffers!r}.")
        for key, value in (("start_step", start_step), ("recompute_bn", recompute_bn)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ConfigError(f"GeneratorEMA {key} must be a non-negative integer, got {value!r}.")
        self.decay = None if decay is None else float(decay)
        self.half_life_images = None if half_life_images is None else float(half_life_images)
        self.rampup, self.start_step, self.buffers = rampup, start_step, buffers
        self.recompute_bn, self.name = recompute_bn, name
        self.module: nn.Module | None = None  # the averaged generator (after attach)
        self.images_seen = 0
        self.updates = 0
        self._trainer: Trainer | None = None
        self._pending: dict[str, Any] | None = None  # a state loaded before attach
        self._sampling: nn.Module | None = None  # the average with recomputed BatchNorm statistics

    # ------------------------------------------------------------------ the rule

    def beta(self, *, batch_images: int, images_seen: int) -> float:
        """The decay of one step of ``batch_images`` images after ``images_seen`` images.

        Args:
            batch_images: images in this step (the global batch under DDP).
            images_seen: images seen so far, this step's included (for the ramp-up).

        Returns:
            ``beta`` in ``[0, 1]``.
        """
        if self.decay is not None and self.rampup is None:
            return self.decay
        if self.decay is not None:
            if self.decay in (0.0, 1.0):
                return self.decay
            half_life = batch_images * math.log(0.5) / math.log(self.decay)
        else:
            half_life = self.half_life_images
        if self.rampup is not None:
            half_life = min(half_life, images_seen * self.rampup)
        return 0.5 ** (batch_images / max(half_life, 1e-8))

    # ------------------------------------------------------------------ engine binding

    def attach(self, trainer: Trainer) -> None:
        """Make the averaged copy of the trainer's generator (called by the trainer)."""
        self._trainer = trainer
        self.module = copy.deepcopy(trainer.generator).eval().requires_grad_(False)
        self._sampling = None
        if self._pending is not None:
            state, self._pending = self._pending, None
            self.load_state_dict(state)

    def _module(self) -> nn.Module:
        if self.module is None:
            raise ConfigError("this GeneratorEMA is not attached to a trainer; pass it as "
                              "Trainer(..., callbacks=[ema]) or set recipe.ema.")
        return self.module

    @torch.no_grad()
    def update(self, generator: nn.Module, *, batch_images: int, step: int | None = None) -> float:
        """Fold the generator's current weights into the average; returns the ``beta`` used.

        Called by :meth:`on_step_end`; call it yourself in a hand-written loop.

        Args:
            generator: the (plain) generator that was just updated.
            batch_images: images of the step (global batch).
            step: the trainer's step count after this step (None: no ``start_step`` check).
        """
        ema = self._module()
        self.images_seen += int(batch_images)
        self.updates += 1
        beta = 0.0 if step is not None and step <= self.start_step else self.beta(
            batch_images=batch_images, images_seen=self.images_seen)
        for avg, cur in zip(ema.parameters(), generator.parameters()):
            if beta == 0.0:
                avg.copy_(cur.detach())
            else:
                avg.lerp_(cur.detach().to(avg.dtype), 1.0 - beta)
        for avg, cur in zip(ema.buffers(), generator.buffers()):
            if self.buffers == "average" and avg.is_floating_point() and beta != 0.0:
                avg.lerp_(cur.to(avg.dtype), 1.0 - beta)
            else:
                avg.copy_(cur)
        self._sampling = None
        return beta

    def on_step_end(self, trainer: Trainer, batch: Any, logs: dict[str, Any]) -> None:
        world = 1 if trainer.dist is None else trainer.dist.world_size
        self.update(trainer.generator, batch_images=len(batch) * world, step=trainer.step)
        if trainer.dist is not None:  # per-rank BatchNorm statistics: take rank 0's everywhere
            import torch.distributed as tdist

            for buf in self._module().buffers():
                tdist.broadcast(buf, src=0)

    # ------------------------------------------------------------------ sampling

    def sampling_module(self) -> nn.Module:
        """The averaged generator to sample from (BatchNorm statistics recomputed if asked)."""
        ema = self._module()
        if not self.recompute_bn or not _batchnorms(ema):
            return ema
        if self._sampling is None:
            t = self._trainer
            self._sampling = recompute_batchnorm(
                copy.deepcopy(ema), z_dim=t.settings.z_dim, num_images=self.recompute_bn,
                batch_size=min(self.recompute_bn, t.settings.batch_size), device=t.device)
        return self._sampling

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """The averaged weights and counters (and the sampling weights when BatchNorm is recomputed)."""
        state: dict[str, Any] = {"kind": KIND, "generator": self._module().state_dict(),
                                 "images_seen": self.images_seen, "updates": self.updates}
        if self.recompute_bn and _batchnorms(self._module()):
            state["sampling"] = self.sampling_module().state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.module is None:
            self._pending = dict(state)
            return
        self.module.load_state_dict(state["generator"])
        self.images_seen, self.updates = int(state["images_seen"]), int(state["updates"])
        self._sampling = None


def ema_weights(ckpt: dict[str, Any]) -> dict[str, torch.Tensor] | None:
    """The averaged generator's weights stored in a training checkpoint, or None.

    Args:
        ckpt: a checkpoint dictionary.

    Returns:
        The state dict to sample from (with recomputed BatchNorm statistics when the EMA
        recomputes them), or None when the run had no :class:`GeneratorEMA`.
    """
    for slot in (ckpt.get("callbacks") or {}).values():
        if isinstance(slot, dict) and slot.get("kind") == KIND:
            return slot.get("sampling") or slot["generator"]
    return None
