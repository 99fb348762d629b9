"""Many runs at once: K seeds or K settings of a recipe trained together, each as if alone.

A :class:`MultiTrainer` holds K ordinary :class:`~gankit.Trainer` objects, the *members*.
Member ``k`` is built exactly as a solo run of its seed is built (``torch.manual_seed(seed)``,
then the recipe, then the Trainer), writes its own run folder (metrics, grids, loss curve,
evaluations, checkpoints) and keeps its own optimizers, latents, data order and random
stream. Every member runs its own :meth:`~gankit.Trainer.fit` -- in a greenlet of its own
on the sweep's thread (loop engine) or in a thread of its own (vmap engine) -- and the
members take turns: one runs at a time, and whenever the turn passes, torch's global random
state (CPU, and CUDA when used) is saved for the member that stops and restored for the one
that goes on. Every random draw of a member -- initial weights, ``z_sample``, the data
order, latents, dropout masks, augmentations -- therefore comes from its own stream, in the
order of a solo run.

Two engines run the members' networks:

``"loop"`` (the default on CPU)
    the turn passes after every training step; each member's networks run as in a solo
    run, all members on one thread (greenlets), so they share one OpenMP thread team.
    Member ``k`` is **bitwise** a solo run of its seed (every engine feature included). On
    a CPU, which is compute-bound, this is also the fastest engine.
``"vmap"`` (the default on CUDA)
    the turn passes at every network call and backward pass; when every member has made
    the same call, the K generators (or discriminators) run as **one batched computation**
    (:func:`torch.func.functional_call` under :func:`torch.func.vmap` over the members'
    stacked parameters: convolutions become grouped ones, so one launch serves K members)
    and one backward pass serves the K losses; gradients reach each member's own
    parameters, and each member's own optimizer steps. The losses, regularisers, schedules
    and constraints are the members' own code. Numbers equal a solo run's within float32
    rounding (batched kernels sum in another order); dropout masks are drawn from each
    member's stream as the solo run draws them. Members must make the same calls in the
    same order (same step structure: sweep learning rates or loss weights, not
    ``n_critic``).

Under ``torchrun`` the members are split over the processes (member ``k`` on rank
``k % WORLD_SIZE``, each trained on its rank's device); rank 0 writes the sweep checkpoint
and the summary. ``compile`` and ``cuda_graph`` are refused (one graph per member would
defeat the batching; train such runs alone).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import itertools
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import signals as _signals
from ..errors import CheckpointError, ConfigError, GankitError
from .callbacks import Callback
from .checkpoint import atomic_save, atomic_write_bytes, validate_checkpoint
from .hostmem import share_main_arena
from .trainer import Trainer, resolve_device

__all__ = ["MultiTrainer", "SweepMember", "TrainingStopped", "parse_seeds", "expand_grid", "load_sweep",
           "extract_member", "sweep_summary", "write_sweep_outputs", "plot_spread"]

SWEEP_FORMAT = "gankit-sweep"
SWEEP_VERSION = 1
ENGINES = ("auto", "loop", "vmap")
_REFUSED = {"compile": "torch.compile", "cuda_graph": "CUDA graphs", "distributed": "distributed"}


# ---------------------------------------------------------------------- helpers for the CLI

def parse_seeds(text: str) -> list[int]:
    """``"0-3"`` -> ``[0, 1, 2, 3]``; ``"0,5,7"``; ``"0-1,10"``.

    Raises:
        ConfigError: for anything else, or a repeated seed.
    """
    seeds: list[int] = []
    for part in str(text).split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1) if not part.startswith("-") else (part, "")
                a, b = int(lo), int(hi)
                if b < a:
                    raise ValueError
                seeds.extend(range(a, b + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"--seeds {text!r}: {part!r} is not a seed or a range; write e.g. 0-7 or 0,3,5.") from None
    if any(s < 0 for s in seeds):
        raise ConfigError(f"--seeds {text!r}: seeds must be >= 0.")
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds {text!r} names a seed twice; give each seed once.")
    return seeds


def expand_grid(grid: Mapping[str, Sequence[Any]] | None) -> list[dict[str, Any]]:
    """Every combination of ``{key: [v1, v2, ...]}`` (the first key varies slowest).

    Example:
        >>> expand_grid({"g_lr": [1e-4, 2e-4], "batch_size": [64]})
        [{'g_lr': 0.0001, 'batch_size': 64}, {'g_lr': 0.0002, 'batch_size': 64}]
    """
    if not grid:
        return [{}]
    keys = list(grid)
    for k in keys:
        if isinstance(grid[k], (str, bytes)) or not isinstance(grid[k], Sequence) or not grid[k]:
            raise ConfigError(f"sweep setting {k!r} needs a non-empty list of values, got {grid[k]!r}.")
    return [dict(zip(keys, values)) for values in itertools.product(*(grid[k] for k in keys))]


def _member_name(seed: int, overrides: Mapping[str, Any]) -> str:
    parts = [f"seed{seed}"] + [f"{k}={v}" for k, v in overrides.items()]
    return "-".join(parts).replace("/", "_").replace(" ", "")


# ---------------------------------------------------------------------- the turns

class _Turns:
    """Members that take turns, each with its own torch random state while it runs.

    Each member runs in a thread of its own, or -- the loop engine -- in a greenlet of its
    own on the sweep's thread (:attr:`hub` is then the greenlet that hands out the turns).
    """

    def __init__(self, count: int, cuda: bool) -> None:
        self.cond = threading.Condition()
        self.live = list(range(count))
        self.current = 0
        self.cuda = cuda
        self.states: list[Any] = [None] * count
        self.hub: Any = None  # the scheduling greenlet while members run as greenlets

    def capture(self, m: int) -> None:
        """Keep the global random state as member ``m``'s."""
        cuda = torch.cuda.get_rng_state_all() if self.cuda and torch.cuda.is_initialized() else None
        self.states[m] = (torch.get_rng_state(), cuda)

    def install(self, m: int) -> None:
        """Make member ``m``'s random state the global one."""
        cpu, cuda = self.states[m]
        torch.set_rng_state(cpu)
        if cuda is not None:
            torch.cuda.set_rng_state_all(cuda)

    def wait(self, m: int) -> None:
        if self.hub is None:  # threads: a greenlet only runs when the hub gave it the turn
            with self.cond:
                self.cond.wait_for(lambda: self.current == m)
        self.install(m)

    def _next(self, m: int, live: list[int]) -> int:
        later = [i for i in live if i > m]
        return later[0] if later else live[0]

    def release(self, m: int) -> None:
        """Pass the turn to the next live member."""
        self.capture(m)
        with self.cond:
            self.current = self._next(m, self.live)
            self.cond.notify_all()
        if self.hub is not None:
            self.hub.switch()  # back when the hub gives member m its next turn

    def leave(self, m: int) -> None:
        """Member ``m`` is done: it takes no more turns."""
        self.capture(m)
        with self.cond:
            rest = [i for i in self.live if i != m]
            self.live = rest
            if rest:
                self.current = self._next(m, rest)
            self.cond.notify_all()


class _YieldEachStep(Callback):
    """The loop engine's turn: after every step the next member goes on."""

    name = "sweep_turn"

    def __init__(self, sweep: MultiTrainer, index: int) -> None:
        self.sweep, self.index = sweep, index

    def on_step_end(self, trainer: Trainer, batch: Any, logs: dict[str, Any]) -> None:
        self.sweep._pass_turn(self.index)


# ---------------------------------------------------------------------- the vmap engine

@dataclass
class _Call:
    kind: str  # "g", "d" or "backward"
    module: nn.Module | None = None
    args: tuple = ()
    kwargs: dict[str, Any] = field(default_factory=dict)


class _GivenNoise(nn.Module):
    """Dropout inside a batched call: multiplies by a mask drawn beforehand from the member's
    stream exactly as ``F.dropout`` / ``F.dropout2d`` draw it on the CPU."""

    def __init__(self, p: float, feature: bool, plan: _NoisePlan) -> None:
        super().__init__()
        self.p, self.feature, self.plan = p, feature, plan

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        if self.plan.noise is None:  # the shape probe
            self.plan.shapes.append((self, tuple(x.shape)))
            return x
        return x * self.plan.noise.pop(0).to(x.dtype)  # ATen draws the mask in the input's dtype


class _NoisePlan:
    def __init__(self) -> None:
        self.noise: list[torch.Tensor] | None = None
        self.shapes: list[tuple[_GivenNoise, tuple[int, ...]]] = []


class _Template:
    """A parameter-free copy of one member's network that runs on stacked parameters."""

    def __init__(self, module: nn.Module) -> None:
        self.module = copy.deepcopy(module).to("meta")
        self.plan = _NoisePlan()
        self.dropouts = 0
        for name, sub in list(self.module.named_modules()):
            if isinstance(sub, (nn.Dropout, nn.Dropout2d, nn.Dropout1d, nn.Dropout3d)):
                feature = not isinstance(sub, nn.Dropout)
                self._replace(name, _GivenNoise(sub.p, feature, self.plan))
                self.dropouts += 1
            elif isinstance(sub, (nn.AlphaDropout, nn.FeatureAlphaDropout)):
                raise ConfigError(f"engine='vmap' cannot batch {type(sub).__name__}; use engine='loop'.")
            elif isinstance(sub, nn.modules.batchnorm._BatchNorm):
                # vmap's batch rule wants one dtype; eager BatchNorm takes a bf16/fp16 input
                # with float32 statistics and computes in float32 anyway: do so explicitly
                sub.register_forward_pre_hook(_bn_input_to_float)
                sub.register_forward_hook(_bn_output_back)
        self.names = [n for n, _ in module.named_parameters()]
        norm = {name for name, sub in module.named_modules() if isinstance(sub, nn.modules.batchnorm._BatchNorm)}
        #: parameters kept in float32 under mixed precision (BatchNorm's, as autocast keeps them)
        self.float_params = {n for n in self.names if n.rpartition(".")[0] in norm}
        self.buffer_names = [n for n, _ in module.named_buffers()]
        self._probed: dict[Any, list[tuple[float, bool, tuple[int, ...]]]] = {}

    def _replace(self, name: str, new: nn.Module) -> None:
        parent_name, _, child = name.rpartition(".")
        parent = self.module.get_submodule(parent_name) if parent_name else self.module
        setattr(parent, child, new)

    def noise_shapes(self, params: dict, buffers: dict, args: tuple, kwargs: dict) -> list:
        """The dropout masks one member's call draws, in order (a run on meta tensors)."""
        key = (self.module.training, tuple(a.shape if torch.is_tensor(a) else a for a in args),
               tuple(sorted((k, v.shape if torch.is_tensor(v) else v) for k, v in kwargs.items())))
        if key not in self._probed:
            meta = lambda t: t.to("meta") if torch.is_tensor(t) else t  # noqa: E731
            self.plan.noise, self.plan.shapes = None, []
            with torch.no_grad():
                torch.func.functional_call(self.module, ({n: meta(v[0]) for n, v in params.items()},
                                                         {n: meta(v[0]) for n, v in buffers.items()}),
                                           tuple(meta(a) for a in args), {k: meta(v) for k, v in kwargs.items()})
            self._probed[key] = [(mod.p, mod.feature, shape) for mod, shape in self.plan.shapes]
        return self._probed[key]


def _bn_input_to_float(module: nn.Module, args: tuple) -> tuple:
    x = args[0]
    module._gankit_dtype = x.dtype
    return (x.float(), *args[1:]) if x.dtype in (torch.bfloat16, torch.float16) else None


def _bn_output_back(module: nn.Module, args: tuple, out: torch.Tensor) -> torch.Tensor | None:
    dtype = getattr(module, "_gankit_dtype", out.dtype)
    return out.to(dtype) if dtype != out.dtype else None


def _draw_noise(p: float, feature: bool, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """ATen's ``_dropout_impl`` on the CPU: ``empty(...).bernoulli_(1 - p).div_(1 - p)``."""
    size = (*shape[:2], *([1] * (len(shape) - 2))) if feature else shape
    noise = torch.empty(size, device=device)
    if p == 1:
        return noise.zero_()
    return noise.bernoulli_(1 - p).div_(1 - p)


class _Joined:
    """What a member's trainer calls as its network under the vmap engine (``g_run``/``d_run``)."""

    def __init__(self, sweep: MultiTrainer, index: int, kind: str, module: nn.Module) -> None:
        self.sweep, self.index, self.kind, self.module = sweep, index, kind, module

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.sweep._join(self.index, _Call(self.kind, self.module, args, kwargs))


class _MemberTrainer(Trainer):
    """A member: an ordinary Trainer whose backward passes join the others' (vmap engine)."""

    sweep: MultiTrainer | None = None
    index: int = 0

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()  # an ordinary checkpoint: without the sweep's own turn-taking slot
        state["callbacks"] = {k: v for k, v in state["callbacks"].items() if k != _YieldEachStep.name}
        return state

    def _install_sigint(self):
        if self.sweep is not None and self.sweep._turns.hub is not None:
            return None  # a greenlet on the sweep's thread: the sweep's own handlers stop every member
        return super()._install_sigint()

    def backward(self, loss: torch.Tensor) -> None:
        if self.sweep is None or self.sweep.engine != "vmap":
            super().backward(loss)
            return
        self.sweep._join(self.index, _Call("backward", args=(loss,)))


# ---------------------------------------------------------------------- the MultiTrainer

class MultiTrainer:
    """Train K members of one recipe together: K seeds and/or K settings, each as if alone.

    Args:
        recipe: a preset name (``"dcgan_task1"``) or a builder (``dcgan_task1``, or any
            ``(**overrides) -> Recipe`` callable).
        seeds: the members' seeds; member ``(seed, overrides)`` is built after
            ``torch.manual_seed(seed)``, as ``gankit train --seed`` builds a run.
        overrides: settings every member gets (``{"image_size": 32}``).
        grid: settings that vary: ``{"g_lr": [1e-4, 2e-4]}``; the members are every seed
            times every combination (seeds vary slowest).
        engine: ``"auto"`` (``"vmap"`` on CUDA, ``"loop"`` elsewhere), ``"loop"`` or ``"vmap"``
            (see :mod:`gankit.train.multi`).
        out_dir: the sweep folder; member ``name`` writes ``out_dir/name/`` (as a solo run
            writes its folder), the sweep its checkpoint ``sweep.pt``, ``summary.json``,
            ``summary.txt`` and ``spread.png``. None writes nothing.
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        **options: any other :class:`~gankit.Trainer` option, given to every member
            (``precision``, ``eval_every``, ``grid_every_steps``, ``progress``...);
            ``data_seed`` is each member's seed unless given.

    Example:
        >>> from gankit.train import MultiTrainer
        >>> sweep = MultiTrainer("dcgan_task1", seeds=[0, 1], overrides={"image_size": 32, "base_channels": 8},
        ...                      device="cpu", progress=False)
        >>> [m.name for m in sweep.members]
        ['seed0', 'seed1']
        >>> images = torch.rand(16, 3, 32, 32) * 2 - 1
        >>> sweep.fit(images, max_steps=2).trainers[1].step
        2
    """

    def __init__(self, recipe: str | Callable[..., Any], *, seeds: Sequence[int] = (0,),
                 overrides: Mapping[str, Any] | None = None, grid: Mapping[str, Sequence[Any]] | None = None,
                 engine: str = "auto", out_dir: str | os.PathLike | None = None,
                 device: str | torch.device = "auto", **options: Any) -> None:
        from ..presets import recipe_from_name

        if engine not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}.")
        for key, what in _REFUSED.items():
            if options.get(key):
                raise ConfigError(f"a sweep cannot use {what} ({key}=...): it runs its members' networks "
                                  "itself; train such a run alone with Trainer / gankit train.")
        options.pop("distributed", None)
        if "z_sample" in options:
            raise ConfigError("z_sample is drawn per member from its own seed; do not pass one to a sweep.")
        if options.get("tune_malloc", True):
            share_main_arena()  # members' threads reuse the main heap (see gankit.train.hostmem)
        seeds = [int(s) for s in seeds]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"seeds must be distinct and at least one, got {seeds}.")
        self.rank, self.world_size = _launch_rank()
        base = dict(overrides or {})
        combos = expand_grid(grid)
        members = [(s, {**base, **c}, c) for s in seeds for c in combos]
        self.device = resolve_device(device if self.world_size == 1 else _rank_device(device))
        self.engine = ("vmap" if self.device.type == "cuda" else "loop") if engine == "auto" else engine
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.preset = recipe if isinstance(recipe, str) else getattr(recipe, "__name__", "recipe")
        build = (lambda **kw: recipe_from_name(recipe, **kw)) if isinstance(recipe, str) else recipe
        self.members: list[SweepMember] = []
        self.trainers: list[_MemberTrainer] = []
        all_names = [_member_name(s, c) for s, _, c in members]
        keep = [i for i in range(len(members)) if i % self.world_size == self.rank]
        self.all_members = [SweepMember(n, s, dict(c), {**base, **c}) for n, (s, _, c) in zip(all_names, members)]
        saved = torch.get_rng_state()
        self._turns = _Turns(len(keep), self.device.type == "cuda")
        try:
            for local, i in enumerate(keep):
                seed, settings, _ = members[i]
                torch.manual_seed(seed)
                rec = build(**settings)
                opts = dict(options)
                opts.setdefault("data_seed", seed)  # as gankit train --seed seeds the seeded order
                opts["callbacks"] = [*opts.get("callbacks", ())]
                if self.engine == "loop":
                    opts["callbacks"].append(_YieldEachStep(self, local))
                member_dir = None if self.out_dir is None else self.out_dir / all_names[i]
                t = _MemberTrainer(rec, device=self.device, out_dir=member_dir, distributed=False, **opts)
                t.sweep, t.index = self, local
                if self.engine == "vmap":
                    t.g_run = _Joined(self, local, "g", t.generator)
                    t.d_run = t.d_gen = _Joined(self, local, "d", t.discriminator)
                self.trainers.append(t)
                self.members.append(self.all_members[i])
                self._turns.capture(local)
        finally:
            torch.set_rng_state(saved)
        self._check_same_architecture()
        self._templates: dict[str, _Template] = {}
        self._pending: dict[int, _Call] = {}
        self._results: dict[int, Any] = {}
        self._errors: dict[int, BaseException] = {}

    # ------------------------------------------------------------------ building blocks

    def _check_same_architecture(self) -> None:
        if self.engine != "vmap" or len(self.trainers) < 2:
            return
        first = self.trainers[0]
        for t in self.trainers[1:]:
            for a, b, what in ((first.generator, t.generator, "generator"),
                               (first.discriminator, t.discriminator, "discriminator")):
                sa = [(n, tuple(p.shape)) for n, p in a.named_parameters()]
                sb = [(n, tuple(p.shape)) for n, p in b.named_parameters()]
                if sa != sb:
                    raise ConfigError(f"engine='vmap' batches members of one architecture; the {what}s of "
                                      f"{self.members[0].name} and {self.members[t.index].name} differ "
                                      "(a swept setting changes the network); use engine='loop'.")

    def _pass_turn(self, local: int) -> None:
        self._turns.release(local)
        self._turns.wait(local)

    # ------------------------------------------------------------------ the vmap rounds

    def _join(self, local: int, call: _Call) -> Any:
        """Member ``local`` makes ``call``; the last member of a round runs it for all."""
        turns = self._turns
        self._pending[local] = call
        if set(self._pending) >= set(turns.live):
            self._run_round(local)
        self._pass_turn(local)
        result = self._results.pop(local)
        if isinstance(result, BaseException):
            raise result
        return result

    def _run_round(self, runner: int) -> None:
        calls, self._pending = self._pending, {}
        order = sorted(calls)
        kinds = {calls[m].kind for m in order}
        try:
            if len(kinds) != 1:
                names = ", ".join(f"{self.members[m].name}: {calls[m].kind}" for m in order)
                raise ConfigError(f"engine='vmap' needs every member to make the same call in the same order; "
                                  f"this round they differ ({names}): a swept setting changes the step "
                                  "(n_critic, a regulariser's interval?); use engine='loop'.")
            kind = kinds.pop()
            if kind == "backward":
                torch.autograd.backward([calls[m].args[0] for m in order])
                out = dict.fromkeys(order)
            else:
                self._turns.capture(runner)  # the runner's stream, before the masks are drawn
                out = self._batched_forward(kind, [calls[m] for m in order], order)
                self._turns.install(runner)
        except BaseException as err:  # noqa: BLE001 -- every member of the round gets the error
            out = dict.fromkeys(order, err)
        self._results.update(out)

    def _batched_forward(self, kind: str, calls: list[_Call], order: list[int]) -> dict[int, torch.Tensor]:
        from torch.func import functional_call, vmap

        mods = [c.module for c in calls]
        if kind not in self._templates:
            self._templates[kind] = _Template(mods[0])
        tmpl = self._templates[kind]
        tmpl.module.train(mods[0].training)
        params = {n: torch.stack(ps) for n, ps in zip(tmpl.names, zip(*(list(m.parameters()) for m in mods)))}
        bufs = list(zip(*(list(m.buffers()) for m in mods)))
        buffers = {n: torch.stack(bs) for n, bs in zip(tmpl.buffer_names, bufs)}
        first = calls[0]
        shapes = [tuple(a.shape) for a in first.args if torch.is_tensor(a)]
        for c in calls[1:]:
            if [tuple(a.shape) for a in c.args if torch.is_tensor(a)] != shapes:
                raise ConfigError("engine='vmap': the members called their networks on inputs of other shapes; "
                                  "give every member the same batch size, or use engine='loop'.")
        t_args = [i for i, a in enumerate(first.args) if torch.is_tensor(a)]
        t_kw = [k for k, v in first.kwargs.items() if torch.is_tensor(v)]
        args = tuple(torch.stack([c.args[i] for c in calls]) for i in t_args)
        kw = {k: torch.stack([c.kwargs[k] for c in calls]) for k in t_kw}
        noise: list[torch.Tensor] = []
        if tmpl.dropouts and tmpl.module.training:
            plan = tmpl.noise_shapes(params, buffers, tuple(first.args), dict(first.kwargs))
            per_member = []
            for m in order:  # each member's masks from its own stream, in its call order
                self._turns.install(m)
                per_member.append([_draw_noise(p, feat, shape, self.device) for p, feat, shape in plan])
                self._turns.capture(m)
            noise = [torch.stack(layer) for layer in zip(*per_member)] if plan else []

        def call(p, b, a, k, nz):
            full = list(first.args)
            for i, v in zip(t_args, a):
                full[i] = v
            kwargs = {**first.kwargs, **k}
            tmpl.plan.noise = list(nz)
            return functional_call(tmpl.module, (p, b), tuple(full), kwargs)

        # Autocast does not reach into vmap's batched weights: under mixed precision cast as it
        # would (convolutions and linear layers in its dtype, BatchNorm in float32) and run
        # the batched call without it.
        dtype = torch.get_autocast_dtype(self.device.type) if torch.is_autocast_enabled(self.device.type) else None
        if dtype is not None:
            params = {n: v if n in tmpl.float_params or not v.is_floating_point() else v.to(dtype)
                      for n, v in params.items()}
            args = tuple(a.to(dtype) if a.is_floating_point() else a for a in args)
        try:
            with torch.autocast(self.device.type, enabled=False) if dtype is not None else contextlib.nullcontext():
                result = vmap(call, randomness="error")(params, buffers, args, kw, noise)
        except RuntimeError as err:
            first_line = str(err).strip().splitlines()[0][:160] if str(err).strip() else type(err).__name__
            raise ConfigError(f"engine='vmap' cannot batch this recipe's {'generator' if kind == 'g' else 'discriminator'}"
                              f" ({first_line}); use engine='loop'.") from None
        finally:
            tmpl.plan.noise = None
        with torch.no_grad():
            for name, stacked in buffers.items():
                for k, m in enumerate(mods):
                    m.get_buffer(name).copy_(stacked[k])
        return {m: result[k] for k, m in enumerate(order)}

    # ------------------------------------------------------------------ training

    def fit(self, data: Any, *, epochs: int | None = None, max_steps: int | None = None,
            num_images: int | None = None) -> MultiTrainer:
        """Train every member on ``data`` (each with its own order) as :meth:`Trainer.fit` does.

        Args:
            data: a folder path or dataset name (loaded once, shared), an image tensor, a
                gankit dataset or a ``Dataset`` (each member draws its own order).
            epochs, max_steps, num_images: as :meth:`Trainer.fit`.

        Returns:
            The MultiTrainer. A member that fails (e.g. a non-finite loss) stops alone: the
            others go on, and the error is raised once all are done (see :attr:`errors`).
        """
        if isinstance(data, (str, os.PathLike)):
            from ..data import load_images

            t0 = self.trainers[0] if self.trainers else None
            if t0 is not None:
                data = load_images(data, image_size=t0.settings.image_size, channels=t0.settings.channels,
                                   num_images=num_images, **({"labels": True} if t0.num_classes else {}))
            num_images = None
        elif isinstance(data, Iterator):
            raise ConfigError("a sweep needs data every member can iterate (a tensor, dataset or folder), not a "
                              "one-shot iterator.")
        self._errors = {}
        self._results, self._pending = {}, {}
        if self.trainers:
            self._run_threads(lambda t: t.fit(data, epochs=epochs, max_steps=max_steps, num_images=num_images))
        self._after_fit()
        failed = {self.members[i].name: e for i, e in self._errors.items()}
        if failed:
            interrupted = [e for e in failed.values() if isinstance(e, KeyboardInterrupt)]
            if interrupted:
                raise interrupted[0]
            if len(failed) == len(self.trainers):
                raise next(iter(failed.values()))
            names = ", ".join(failed)
            raise TrainingStopped(f"{len(failed)} of {len(self.trainers)} sweep members stopped ({names}): "
                                  f"{next(iter(failed.values()))}", failed)
        return self

    def _run_threads(self, work: Callable[[Trainer], Any]) -> None:
        turns = self._turns
        turns.live, turns.current = list(range(len(self.trainers))), 0
        saved = torch.get_rng_state()

        def run(i: int) -> None:
            turns.wait(i)
            try:
                work(self.trainers[i])
            except BaseException as err:  # noqa: BLE001 -- kept, raised by fit once all are done
                self._errors[i] = err
            finally:
                if self.engine == "vmap" and self._pending and set(self._pending) >= set(turns.live) - {i}:
                    self._run_round(i)
                turns.leave(i)

        # As Trainer.fit: the first SIGINT / SIGTERM / SIGHUP lets every member finish its
        # step and save, a second one stops at once (main thread only).
        previous = _signals.install_stop_handlers(self._request_stop)
        try:
            if self.engine == "loop":
                self._run_greenlets(run)
            else:
                self._run_in_threads(run)
        finally:
            _signals.restore_handlers(previous)
            torch.set_rng_state(saved)

    def _run_greenlets(self, run: Callable[[int], None]) -> None:
        """The loop engine: every member a greenlet on this thread, resumed in turn by this one.

        One thread, hence one OpenMP thread team: with a thread per member, K teams of
        workers outnumber the cores, and a member cost about 8% more per image than a solo
        run for task two on 2 cores (measured; gone with one thread per team, so most likely
        OpenMP's workers sleeping between parallel regions). The members' steps change nowhere.
        """
        try:
            from greenlet import getcurrent, greenlet
        except ImportError:
            raise ConfigError("the loop engine runs its members as greenlets, and the greenlet package "
                              "is not installed; pip install greenlet (a dependency of gankit).") from None
        turns = self._turns
        members = [greenlet(functools.partial(run, i)) for i in range(len(self.trainers))]
        turns.hub = getcurrent()

        def drive() -> None:
            while turns.live:
                members[turns.current].switch()

        try:
            try:
                drive()
            except BaseException:  # stopped at once: let the members end their step, then go
                self._request_stop(signal.SIGINT)
                drive()
                raise
        finally:
            turns.hub = None

    def _run_in_threads(self, run: Callable[[int], None]) -> None:
        """The vmap engine: every member a thread (its network calls are joined mid-step)."""
        threads = [threading.Thread(target=run, args=(i,), name=f"gankit-sweep-{i}")
                   for i in range(len(self.trainers))]
        try:
            for th in threads:
                th.start()
            while any(th.is_alive() for th in threads):
                for th in threads:
                    th.join(timeout=0.2)
        except BaseException:  # stopped at once: let the members end their step, then go
            self._request_stop(signal.SIGINT)
            for th in threads:
                th.join()
            raise

    def _request_stop(self, signum: int) -> None:
        for t in self.trainers:
            t._request_stop(signum)

    def _after_fit(self) -> None:
        if self.out_dir is None:
            return
        self.save(self.out_dir / "sweep.pt")
        if self.rank == 0:
            self.write_summary()

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """All members' checkpoints (each an ordinary :meth:`Trainer.state_dict`), with their names."""
        saved = torch.get_rng_state()
        members = []
        try:
            for i, t in enumerate(self.trainers):
                self._turns.install(i)  # the checkpoint records the member's own stream
                members.append({"name": self.members[i].name, "seed": self.members[i].seed,
                                "grid": dict(self.members[i].grid), "checkpoint": t.state_dict()})
        finally:
            torch.set_rng_state(saved)
        return {"format": SWEEP_FORMAT, "format_version": SWEEP_VERSION, "preset": self.preset,
                "engine": self.engine, "members": members}

    def save(self, path: str | os.PathLike) -> Path:
        """Write the sweep checkpoint (all members) atomically; under torchrun rank 0 gathers them."""
        state = self.state_dict()
        if self.world_size > 1:
            import torch.distributed as tdist

            gathered: list[Any] = [None] * self.world_size if self.rank == 0 else None
            tdist.gather_object(state["members"], gathered, dst=0)
            if self.rank != 0:
                return Path(path)
            by_name = {m["name"]: m for part in gathered for m in part}
            state["members"] = [by_name[m.name] for m in self.all_members if m.name in by_name]
        return atomic_save(state, path)

    def load_state_dict(self, state: Mapping[str, Any], *, source: str = "sweep checkpoint") -> None:
        """Restore :meth:`state_dict` (every member by name)."""
        saved = {m["name"]: m for m in state.get("members", [])}
        missing = [m.name for m in self.members if m.name not in saved]
        if missing:
            raise CheckpointError(f"{source} holds no member {missing[0]!r} (it has {', '.join(saved) or 'none'}); "
                                  "resume with the seeds and settings it was trained with.")
        rng = torch.get_rng_state()
        try:
            for i, (m, t) in enumerate(zip(self.members, self.trainers)):
                t.load_state_dict(saved[m.name]["checkpoint"], source=f"{source} member {m.name}")
                self._turns.capture(i)
        finally:
            torch.set_rng_state(rng)

    def resume(self, path: str | os.PathLike) -> MultiTrainer:
        """Restore a sweep checkpoint written by :meth:`save` (``sweep.pt``)."""
        self.load_state_dict(load_sweep(path), source=str(path))
        return self

    # ------------------------------------------------------------------ summary

    @property
    def errors(self) -> dict[str, BaseException]:
        """The members that stopped with an error in the last :meth:`fit`, by name."""
        return {self.members[i].name: e for i, e in self._errors.items()}

    def summary(self) -> list[dict[str, Any]]:
        """One row per member: its name, seed, swept settings, steps, final losses, evaluations."""
        return sweep_summary(self._rows())

    def _rows(self) -> list[tuple[SweepMember, list, list, int]]:
        return [(m, t.history, t.eval_history, t.step) for m, t in zip(self.members, self.trainers)]

    def write_summary(self) -> dict[str, Path]:
        """Write ``summary.json``, ``summary.txt`` and ``spread.png`` into the sweep folder.

        Under torchrun rank 0 reads every member's metrics log from its folder.
        """
        if self.out_dir is None:
            raise ConfigError("this sweep has no out_dir; give MultiTrainer(out_dir=...).")
        if self.world_size > 1:
            rows = [(m, *_read_member_folder(self.out_dir / m.name)) for m in self.all_members]
        else:
            rows = self._rows()
        return write_sweep_outputs(self.out_dir, rows, preset=self.preset, engine=self.engine)


class TrainingStopped(GankitError):
    """Some members of a sweep stopped with an error; the others finished (see ``failed``)."""

    def __init__(self, message: str, failed: dict[str, BaseException]) -> None:
        super().__init__(message)
        self.failed = failed


@dataclass
class SweepMember:
    """One member of a sweep: its folder name, seed, swept settings and all its settings."""

    name: str
    seed: int
    grid: dict[str, Any]
    overrides: dict[str, Any]


def _launch_rank() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return 0, 1
    import torch.distributed as tdist

    if not tdist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        tdist.init_process_group(backend)
    return tdist.get_rank(), tdist.get_world_size()


def _rank_device(device: str | torch.device) -> str | torch.device:
    if str(device) in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


# ---------------------------------------------------------------------- files

def load_sweep(path: str | os.PathLike) -> dict[str, Any]:
    """Read a sweep checkpoint (``sweep.pt``) safely and check every member's checkpoint.

    Raises:
        CheckpointError: one line, for a missing or damaged file or one that is not a sweep.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"sweep checkpoint {p} does not exist or is not a file; give the sweep's sweep.pt.")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 -- a damaged file can fail anywhere in the unpickler
        raise CheckpointError(f"cannot read sweep checkpoint {p}: truncated or not a torch file "
                              f"({str(err).splitlines()[0][:100] if str(err) else type(err).__name__}).") from None
    if not isinstance(state, dict) or state.get("format") != SWEEP_FORMAT:
        hint = " (an ordinary checkpoint: use it as it is)" if isinstance(state, dict) and state.get("format") else ""
        raise CheckpointError(f"{p} is not a gankit sweep checkpoint{hint}; give the sweep.pt a sweep wrote.")
    if int(state.get("format_version", 0)) > SWEEP_VERSION:
        raise CheckpointError(f"{p} is a sweep checkpoint of a newer format; upgrade gankit.")
    members = state.get("members")
    if not isinstance(members, list) or not members:
        raise CheckpointError(f"{p} holds no members; it is damaged.")
    for m in members:
        if not isinstance(m, dict) or not isinstance(m.get("name"), str) or "checkpoint" not in m:
            raise CheckpointError(f"{p} has a damaged member entry; use another checkpoint.")
        validate_checkpoint(m["checkpoint"], f"{p} member {m['name']}")
    return state


def extract_member(sweep_path: str | os.PathLike, member: str | int, out: str | os.PathLike, *,
                   overwrite: bool = False) -> Path:
    """Write one member of a sweep checkpoint as an ordinary checkpoint.

    The file resumes (``gankit train PRESET --resume``), samples and exports as a solo
    run's does.

    Args:
        sweep_path: the sweep's ``sweep.pt``.
        member: the member's name (``"seed3"``) or its index in the sweep.
        out: the ``.pt`` file to write (atomically).
        overwrite: replace an existing file (by default an existing file is an error).

    Returns:
        The path written.
    """
    state = load_sweep(sweep_path)
    names = [m["name"] for m in state["members"]]
    if isinstance(member, int) or (isinstance(member, str) and member.isdigit()):
        index = int(member)
        if not 0 <= index < len(names):
            raise ConfigError(f"member {index} is out of range: the sweep has {len(names)} members ({', '.join(names)}).")
        chosen = state["members"][index]
    else:
        if member not in names:
            raise ConfigError(f"no member {member!r} in {sweep_path}; its members are {', '.join(names)}.")
        chosen = state["members"][names.index(member)]
    target = Path(out)
    if target.exists() and not overwrite:
        raise ConfigError(f"{target} exists; choose another file or pass overwrite=True (--overwrite).")
    if target.resolve() == Path(sweep_path).resolve():
        raise ConfigError("the extracted member would overwrite the sweep checkpoint; choose another file.")
    return atomic_save(chosen["checkpoint"], target)


def _read_member_folder(folder: Path) -> tuple[list[dict[str, float]], list[dict[str, Any]], int]:
    history, evals = [], []
    log = folder / "metrics.jsonl"
    if log.is_file():
        for line in log.read_text().splitlines():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("kind") == "eval":
                evals.append(rec)
            elif "step" in rec:
                history.append(rec)
    return history, evals, (history[-1]["step"] if history else 0)


def _final(history: list[dict[str, float]], name: str, tail: float = 0.1) -> float | None:
    values = [r[name] for r in history if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]
    if not values:
        return None
    n = max(1, int(len(values) * tail))
    return sum(values[-n:]) / n


_EVAL_FIELDS = {"kind", "step", "epoch", "extractor", "comparable_to_published", "num_fake", "num_real",
                "reference", "generator"}


def _eval_values(evals: list[dict[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    curves: dict[str, list[tuple[int, float]]] = {}
    for rec in evals:
        for k, v in rec.items():
            if k in _EVAL_FIELDS or isinstance(v, bool) or not isinstance(v, (int, float)):
                continue
            curves.setdefault(k, []).append((int(rec.get("step", 0)), float(v)))
    return curves


def sweep_summary(rows: Sequence[tuple[SweepMember, list, list, int]]) -> list[dict[str, Any]]:
    """The per-member table: final losses (mean of the last 10% of steps), best/last evaluation."""
    table = []
    for member, history, evals, steps in rows:
        row: dict[str, Any] = {"member": member.name, "seed": member.seed, **{k: v for k, v in member.grid.items()},
                               "steps": steps}
        for name in ("loss_d", "loss_g"):
            row[name] = _final(history, name)
        for metric, pts in _eval_values(evals).items():
            values = [v for _, v in pts]
            best = max(values) if metric in ("precision", "recall", "is_mean") else min(values)
            row[f"{metric}_best"], row[f"{metric}_last"] = best, values[-1]
        table.append(row)
    return table


def _format_table(table: list[dict[str, Any]]) -> str:
    keys = list(dict.fromkeys(k for row in table for k in row))
    cells = [[_cell(row.get(k)) for k in keys] for row in table]
    numeric = [k for k in keys if k.startswith("loss_") or k.endswith(("_best", "_last"))]
    if len(table) > 1:
        for label, fn in (("mean", _mean), ("std", _std)):
            cells.append([label if k == "member" else (_cell(fn([r[k] for r in table if r.get(k) is not None]))
                                                       if k in numeric else "") for k in keys])
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)) for row in cells]
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _std(xs: list[float]) -> float | None:
    if len(xs) < 2:
        return None
    m = sum(xs) / len(xs)
    return math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1))


def write_sweep_outputs(folder: Path, rows: Sequence[tuple[SweepMember, list, list, int]], *, preset: str,
                        engine: str) -> dict[str, Path]:
    """``summary.json``, ``summary.txt`` and ``spread.png`` of a sweep (atomically)."""
    table = sweep_summary(rows)
    folder.mkdir(parents=True, exist_ok=True)
    payload = {"preset": preset, "engine": engine, "members": table, "written": time.strftime("%Y-%m-%dT%H:%M:%S")}
    paths = {"summary_json": atomic_write_bytes(folder / "summary.json",
                                                lambda f: f.write(json.dumps(payload, indent=1).encode())),
             "summary_txt": atomic_write_bytes(folder / "summary.txt",
                                               lambda f: f.write(_format_table(table).encode()))}
    paths["spread"] = plot_spread(rows, folder / "spread.png", title=f"{preset}: {len(rows)} members")
    return paths


def _curve(history: list[dict[str, float]], name: str, points: int = 200) -> dict[int, float]:
    """A moving average of ``name`` at about ``points`` steps (for the spread figure)."""
    pts = [(int(r["step"]), float(r[name])) for r in history
           if isinstance(r.get(name), (int, float)) and math.isfinite(r[name])]
    if not pts:
        return {}
    width = max(1, len(pts) // points)
    out = {}
    for i in range(0, len(pts), width):
        chunk = pts[i:i + width]
        out[chunk[-1][0]] = sum(v for _, v in chunk) / len(chunk)
    return out


def plot_spread(rows: Sequence[tuple[SweepMember, list, list, int]], path: Path, title: str = "") -> Path:
    """One figure: per logged loss and evaluation metric, the mean over members and the
    band from the lowest to the highest member, against the step."""
    import io

    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    panels: list[tuple[str, list[dict[int, float]]]] = []
    for name in ("loss_d", "loss_g"):
        curves = [_curve(h, name) for _, h, _, _ in rows]
        if any(curves):
            panels.append((name, curves))
    evals = [_eval_values(e) for _, _, e, _ in rows]  # per member: {metric: [(step, value)]}
    for metric in dict.fromkeys(k for member in evals for k in member):
        panels.append((metric, [dict(member.get(metric, [])) for member in evals]))
    fig = Figure(figsize=(8, 2.8 * max(1, len(panels))), dpi=100)
    for i, (name, curves) in enumerate(panels or [("loss", [])]):
        ax = fig.add_subplot(max(1, len(panels)), 1, i + 1)
        steps = sorted(set().union(*[set(c) for c in curves])) if curves else []
        common = [s for s in steps if all(s in c for c in curves if c)]
        if common:
            vals = [[c[s] for c in curves if c] for s in common]
            mean = [sum(v) / len(v) for v in vals]
            ax.fill_between(common, [min(v) for v in vals], [max(v) for v in vals], alpha=0.25,
                            label=f"min-max of {sum(1 for c in curves if c)} members")
            ax.plot(common, mean, linewidth=1.0, label="mean")
            ax.legend(loc="best", fontsize=8)
        ax.set_ylabel(name)
        ax.grid(alpha=0.3)
        if i == 0:
            ax.set_title(title)
    fig.axes[-1].set_xlabel("step")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))
