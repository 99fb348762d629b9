"""The Trainer: owns the training loop of a recipe, and nothing else does.

The default ("faithful") mode reproduces SPEC.md's procedure step for step: latents are
``torch.randn(batch, z_dim)`` on torch's default CPU generator, drawn in the original
order and moved to the device; the discriminator is called on real, then fake images;
losses, optimizers and clipping are those of the recipe. Speed-ups in this mode change
no number: the generator forward of the discriminator step runs without a graph, and
the discriminator's weight gradients are not computed during the generator step (the
original code computes them and throws them away at the next ``zero_grad``).

The step itself -- objective, regularisers, constraints, schedule, gradient accumulation --
is a :class:`~gankit.train.GANStep` (``gankit.train.step``); the Trainer is its *engine*: it
owns the numerics (precision, autocast, gradient scalers, channels-last, compile, DDP, CUDA
graphs), the counters, the data, the outputs and the checkpoints, and gives every step --
a user's too -- the same primitives (:meth:`Trainer.latents`, :meth:`Trainer.generate`,
:meth:`Trainer.score`, :meth:`Trainer.optimize`).

Faster numerics are opt-in: ``precision="bf16"``/``"fp16"`` (autocast; a loss on
probabilities is replaced by its declared autocast-safe twin, e.g. BCE by BCE on logits),
``channels_last=True``, ``compile=True``, ``cuda_graph=True`` (CUDA: the whole step
captured and replayed, :mod:`gankit.train.graphs`) and ``latents="device"``.

Under ``torchrun`` (``WORLD_SIZE`` > 1) the Trainer trains data-parallel: see
:mod:`gankit.train.distributed`.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import signals as _signals
from .._version import __version__
from ..errors import CheckpointError, ConfigError, TrainingError
from ..presets import Recipe
from . import distributed as _dist
from .batch import Batch, as_batch
from .callbacks import Callback
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    atomic_save,
    check_resumable,
    load_checkpoint,
)
from .ema import GeneratorEMA
from .graphs import StepGraphs, make_graph_safe, optimizer_flags, restore_optimizer_flags
from .guards import check_batchnorm_batches
from .hostmem import tune_host_allocator
from .outputs import MetricsLog, plot_loss_curve, save_grid
from .rundir import rewind_run
from .step import GANStep

__all__ = ["Trainer", "resolve_device"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
#: The values every step of the default GANStep logs (user terms add their own names).
CORE_LOGS = ("loss_d", "loss_g", "d_real", "d_fake")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Pick the device: ``"auto"`` is CUDA when available, else MPS, else CPU.

    Args:
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"`` or a device.

    Returns:
        The :class:`torch.device`.

    Raises:
        ConfigError: when the device is unknown or not available here.
    """
    if isinstance(device, torch.device):
        dev = device
    elif device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    else:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            raise ConfigError(f"unknown device {device!r}; use auto, cpu, cuda or mps.") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is available; use --device cpu.")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device mps was asked for but is not available; use --device cpu.")
    return dev


def _unwrap(module: nn.Module) -> nn.Module:
    """The plain module under DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if hasattr(module, "_orig_mod"):
            module = module._orig_mod
        elif isinstance(module, nn.parallel.DistributedDataParallel):
            module = module.module
        else:
            return module


def _has_batchnorm(*modules: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for net in modules for m in net.modules())


class _Optimize:
    """What :meth:`Trainer.optimize` yields: ``backward(loss)`` through the side's scaler."""

    def __init__(self, trainer: Trainer, side: str) -> None:
        self._trainer, self.side = trainer, side
        self.optimizer = trainer.opt_d if side == "d" else trainer.opt_g
        self.scaler = trainer.scaler_d if side == "d" else trainer.scaler_g

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate ``loss`` (scaled under fp16); gradients add up until the step."""
        self._trainer.backward(self.scaler.scale(loss))


class Trainer:
    """Train a :class:`~gankit.presets.Recipe` exactly as its procedure says.

    Args:
        recipe: the built preset (networks and settings).
        device: ``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``, ``"cuda"``, ...
        out_dir: where metrics, sample grids, the loss curve and checkpoints go; None
            writes nothing.
        step: the training step (:class:`~gankit.train.GANStep` or a subclass); by default
            the recipe's own (``recipe.step``), else one built from its settings (loss,
            ``gp_weight``, ``r1_gamma``, ``clip_value``, ``n_critic``, ``n_critic_count``).
        callbacks: :class:`~gankit.train.Callback` objects told of every step and epoch;
            each keeps its state in the checkpoints under its ``name``.
        loggers: :class:`~gankit.train.Logger` objects that receive every logged
            value, evaluation, sample grid and the hyper-parameters (e.g.
            :class:`~gankit.train.TensorBoardLogger`); main process only.
        schedules: ``{target: schedule}`` applied before every step (see
            :mod:`gankit.schedules`: ``"g.lr"``, ``"d.beta2"``, a regulariser's name, ...),
            added to the recipe's own (``recipe.schedules``; these win for a target both name).
        grid_every_steps: also render the sample grid every this many steps.
        checkpoint_every_steps: also save ``checkpoints/step_NNNNNNN.pt`` every this many steps
            (besides ``last.pt`` and the recipe's ``checkpoint_every`` epochs).
        keep_last: keep only the newest this many periodic checkpoints (None: all).
        precision: ``"fp32"`` (faithful, default), ``"bf16"`` or ``"fp16"`` autocast.
        channels_last: use channels-last memory format (fast mode).
        compile: ``torch.compile`` the generator and the discriminator separately; a dict
            is passed to ``torch.compile`` as its options (e.g. ``{"backend": "aot_eager"}``).
        cuda_graph: capture the whole training step in CUDA graphs and replay them
            (CUDA only; fp32 or bf16; optimizers run with ``capturable=True``, Adam with
            its fused kernel; see :mod:`gankit.train.graphs`). A step then costs one launch.
        latents: ``"cpu"`` (faithful: ``torch.randn`` on the default CPU generator, then
            moved) or ``"device"`` (drawn on the device; faster on GPUs, other numbers).
        latent_sampler: a callable ``(n, z_dim) -> Tensor`` that replaces the default
            draw of every training latent batch (e.g. to feed recorded latents).
        data_seed: seed of the ``"seeded"`` shuffling of data that gankit batches itself.
        progress: show a tqdm progress bar in :meth:`fit`.
        log_every: read logged values back from the device every this many steps (fewer
            host syncs); every step still gets its own line in the metrics log.
        deterministic: ask torch for deterministic algorithms (and no cuDNN autotuning).
        tune_malloc: keep freed host memory in the process instead of returning it to the
            OS every step (glibc's ``mallopt``, process-wide; no number changes; see
            :mod:`gankit.train.hostmem`). About 10-15% faster CPU steps.
        z_sample: the fixed latents of the sample grid; by default
            ``torch.randn(sample_grid**2, z_dim)`` drawn here, before any training step,
            as the original code draws its ``z_sample`` before the loop.
        distributed: train data-parallel with DistributedDataParallel; None (default)
            does so when launched by torchrun with ``WORLD_SIZE`` > 1 (see
            :mod:`gankit.train.distributed`). The recipe's ``batch_size`` is then the
            global batch, split evenly over the processes.
        sync_batchnorm: under distributed training, synchronise BatchNorm statistics over
            ranks (SyncBatchNorm, CUDA only); by default each rank normalises with its own.
        eval_every: in :meth:`fit`, measure sample quality every this many steps (and once
            before the first step); None: never.
        eval_every_epochs: likewise every this many epochs.
        eval_samples: generated images per evaluation (latents from a private seeded
            generator: evaluating leaves the training RNG untouched).
        eval_metrics: metrics of :func:`gankit.metrics.evaluate` (``fid``, ``kid``, ``pr``, ``is``).
        eval_extractor: ``"tiny"`` (offline; not comparable to published numbers),
            ``"inception-v3"`` or an ``nn.Module``.
        eval_reference: reference images; by default the training images.

    Example:
        >>> import torch
        >>> from gankit import Trainer
        >>> from gankit.presets import dcgan_task1
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> trainer = Trainer(dcgan_task1(image_size=32, base_channels=8), device="cpu", progress=False)
        >>> out = trainer.train_step(torch.rand(4, 3, 32, 32) * 2 - 1)
        >>> sorted(out)
        ['d_fake', 'd_real', 'loss_d', 'loss_g']
    """

    def __init__(
        self,
        recipe: Recipe,
        *,
        device: str | torch.device = "auto",
        out_dir: str | os.PathLike | None = None,
        step: GANStep | None = None,
        callbacks: Sequence[Callback] = (),
        loggers: Sequence[Any] = (),
        schedules: dict[str, Any] | None = None,
        grid_every_steps: int | None = None,
        checkpoint_every_steps: int | None = None,
        keep_last: int | None = None,
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool | dict[str, Any] = False,
        cuda_graph: bool = False,
        latents: str = "cpu",
        latent_sampler: Any = None,
        data_seed: int = 0,
        progress: bool = True,
        log_every: int = 10,
        deterministic: bool = False,
        tune_malloc: bool = True,
        z_sample: torch.Tensor | None = None,
        distributed: bool | None = None,
        sync_batchnorm: bool = False,
        eval_every: int | None = None,
        eval_every_epochs: int | None = None,
        eval_samples: int = 1000,
        eval_metrics: Sequence[str] = ("fid",),
        eval_extractor: str | nn.Module = "tiny",
        eval_reference: Any = None,
    ) -> None:
        if precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}.")
        if latents not in ("cpu", "device"):
            raise ConfigError(f"latents must be 'cpu' or 'device', got {latents!r}.")
        if log_every < 1:
            raise ConfigError(f"log_every must be >= 1, got {log_every}.")
        for name, value in (("eval_every", eval_every), ("eval_every_epochs", eval_every_epochs),
                            ("grid_every_steps", grid_every_steps),
                            ("checkpoint_every_steps", checkpoint_every_steps), ("keep_last", keep_last)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a positive integer or None, got {value!r}.")
        if eval_samples < 2:
            raise ConfigError(f"eval_samples must be >= 2, got {eval_samples}.")
        self.eval_every, self.eval_every_epochs = eval_every, eval_every_epochs
        self.eval_samples, self.eval_metrics = eval_samples, tuple(eval_metrics)
        self.eval_extractor, self.eval_reference = eval_extractor, eval_reference
        self.eval_history: list[dict[str, Any]] = []
        self.grid_every_steps, self.checkpoint_every_steps = grid_every_steps, checkpoint_every_steps
        self.keep_last = keep_last
        self._train_images: torch.Tensor | None = None
        self._loader: Any = None  # the BatchLoader of the current fit (its state is checkpointed)
        self._data_state: dict[str, Any] | None = None  # a checkpoint's loader state, until fit
        self.recipe = recipe
        self.settings = recipe.settings
        self.device = resolve_device(device)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.precision = precision
        self.channels_last = channels_last
        self.compiled = bool(compile)
        self.latents_on = latents
        self.latent_sampler = latent_sampler
        self.data_seed = data_seed
        self.progress = progress
        self.log_every = log_every
        self.deterministic = deterministic
        self.is_main = True  # rank 0 writes files; set False on other ranks
        # Distributed data-parallel training (torchrun): None in a single process.
        self.dist: _dist.DistributedContext | None = None
        if distributed or (distributed is None and _dist.distributed_requested()):
            self.dist = _dist.init_distributed(device=device)
            self.device = self.dist.device
            self.is_main = self.dist.is_main
            _dist.local_batch_size(recipe.settings.batch_size, self.dist.world_size)

        if tune_malloc:
            tune_host_allocator()
        if deterministic:
            torch.use_deterministic_algorithms(True, warn_only=True)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = not deterministic

        fmt = torch.channels_last if channels_last else torch.preserve_format
        self.generator = recipe.generator.to(self.device, memory_format=fmt).train()
        self.discriminator = recipe.discriminator.to(self.device, memory_format=fmt).train()
        if self.dist is not None and sync_batchnorm:  # keeps the parameter tensors
            self.generator = _dist.convert_sync_batchnorm(self.generator, self.dist)
            self.discriminator = _dist.convert_sync_batchnorm(self.discriminator, self.dist)
        self.opt_g, self.opt_d = recipe.build_optimizers()
        self._check_conditional()

        # -- the step, and the objective as the numerics need it
        self.step_fn: GANStep = step if step is not None else recipe.make_step()
        if not isinstance(self.step_fn, GANStep):
            raise ConfigError(f"step must be a gankit.train.GANStep (or a subclass), got "
                              f"{type(self.step_fn).__name__}.")
        self._autocast_dtype = PRECISIONS[precision]
        if self._autocast_dtype is not None and self.device.type == "mps":
            raise ConfigError("mixed precision is not supported on mps by gankit; use precision='fp32'.")
        self.objective = self.step_fn.objective
        if self._autocast_dtype is not None:  # a loss on probabilities is not autocast-safe
            self.objective = self.objective.for_mixed_precision()
        self._probability_head = bool(getattr(_unwrap(self.discriminator), "outputs_probability", False))
        self._use_logits = self.objective.from_logits
        scaling = precision == "fp16" and self.device.type == "cuda"
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=scaling)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=scaling)
        self.schedules = {**(getattr(recipe, "schedules", None) or {}), **(schedules or {})}
        self.callbacks = list(callbacks)
        self.loggers = list(loggers)
        from .loggers import Logger

        for logger in self.loggers:
            if not isinstance(logger, Logger):
                raise ConfigError(f"loggers must be gankit.train.loggers.Logger objects, got "
                                  f"{type(logger).__name__}; subclass Logger (see examples/csv_logger.py).")
        self.ema = self._find_ema(recipe)
        names = [c.name for c in self.callbacks]
        if len(set(names)) != len(names):
            raise ConfigError(f"callback names must be unique (they name checkpoint slots), got {names}.")

        # The networks the loop calls; wrappers (torch.compile, DDP) go here, the plain
        # modules stay in self.generator / self.discriminator.
        self.g_run: nn.Module = self.generator
        self.d_run: nn.Module = self.discriminator
        self.d_gen: nn.Module = self.discriminator  # D as called in the generator step
        if self.dist is not None:
            # Two separate DDP wrappers (one per network: each is called, then backward).
            # The generator step calls the plain D: its gradients there are not kept, so
            # they need no all-reduce (and D's DDP would wait for gradients that never come).
            self.g_run = _dist.wrap_ddp(self.generator, self.dist)
            self.d_run = _dist.wrap_ddp(self.discriminator, self.dist)
        if compile:
            opts = compile if isinstance(compile, dict) else {}
            self.g_run = torch.compile(self.g_run, **opts)
            self.d_gen = torch.compile(self.discriminator, **opts)
            self.d_run = self.d_gen if self.dist is None else torch.compile(self.d_run, **opts)
        self.step_fn.bind(self)
        self.cuda_graph = cuda_graph
        self._graphs: StepGraphs | None = None
        self._latent_override = None  # set while a CUDA graph captures or replays
        self._network_calls = 0
        if cuda_graph:
            self._check_cuda_graph()
            make_graph_safe(self.opt_g)
            make_graph_safe(self.opt_d)
            self._graphs = StepGraphs(self._graph_step, self._draw_latent, z_dim=self.settings.z_dim,
                                      latents_on_device=latents == "device", device=self.device)

        self.step = 0  # train_step calls so far
        self.epoch = 0  # completed epochs
        self.batch_index = 0  # batches consumed in the current epoch (n_critic phase)
        self.d_steps = 0  # discriminator phases so far (the global n_critic count)
        self.g_steps = 0  # generator phases so far
        self.step_latents: list[torch.Tensor] = []  # the latents the last step drew, in order
        self.history: list[dict[str, float]] = []
        self._pending: list[tuple[int, int, dict[str, torch.Tensor | None]]] = []
        self._last_checkpoint: Path | None = None
        self._last_saved_step = -1
        self.artifacts: dict[str, Path] = {}  # latest sample grid and loss curve
        self._stop_requested = 0  # the number of the stop signal received, 0 for none
        self._t0 = time.perf_counter()
        self._elapsed_before = 0.0

        grid = self.settings.sample_grid
        self.z_sample = (
            torch.randn(grid * grid, self.settings.z_dim) if z_sample is None else z_sample.detach().clone()
        )
        if self.dist is not None:  # same weights and z_sample everywhere; own latents per rank
            _dist.seed_rank_streams(self.dist, torch.initial_seed())

    def _check_conditional(self) -> None:
        """Read which networks take labels (:attr:`num_classes`, :attr:`discriminator_takes_labels`)."""
        g, d = _unwrap(self.generator), _unwrap(self.discriminator)
        #: classes of a class-conditional generator (0: unconditional).
        self.num_classes = int(getattr(g, "num_classes", 0) or 0)
        #: whether the discriminator scores images given their labels (a projection head).
        self.discriminator_takes_labels = bool(getattr(d, "takes_labels", False))
        d_classes = int(getattr(d, "num_classes", 0) or 0)
        if d_classes and not self.num_classes:
            raise ConfigError(f"the discriminator knows {d_classes} classes but the generator is unconditional; "
                              "build both networks with the same num_classes.")
        if self.num_classes and d_classes and d_classes != self.num_classes:
            raise ConfigError(f"the generator has {self.num_classes} classes and the discriminator {d_classes}; "
                              "build both networks with the same num_classes.")

    @property
    def class_names(self) -> list[str] | None:
        """Names of the classes of a conditional generator (from the data it trained on), or None."""
        return getattr(_unwrap(self.generator), "class_names", None)

    def _find_ema(self, recipe: Recipe) -> GeneratorEMA | None:
        """The generator EMA: one among the callbacks, else the recipe's (added to them)."""
        emas = [c for c in self.callbacks if isinstance(c, GeneratorEMA)]
        if not emas and getattr(recipe, "ema", None) is not None:
            emas = [recipe.ema]
            self.callbacks.append(recipe.ema)
        if len(emas) > 1:
            raise ConfigError(f"a trainer takes one GeneratorEMA, got {len(emas)}; pass only one.")
        if not emas:
            return None
        emas[0].attach(self)
        return emas[0]

    def sampling_generator(self, ema: bool | None = None) -> nn.Module:
        """The generator that samples, evaluates and exports: the EMA one when there is one.

        Args:
            ema: None: the averaged generator if the trainer has a
                :class:`~gankit.train.GeneratorEMA`, else the raw one; True: the averaged
                one (an error without an EMA); False: the raw generator.

        Returns:
            The plain module (not the DDP / compile wrapper).
        """
        if ema and self.ema is None:
            raise ConfigError("ema=True but this trainer has no GeneratorEMA; add one "
                              "(callbacks=[GeneratorEMA(...)] or recipe.ema) or pass ema=False.")
        use = self.ema is not None if ema is None else ema
        return self.ema.sampling_module() if use else self.generator

    @property
    def captured_graphs(self) -> int:
        """How many step variants are captured in CUDA graphs (0 without ``cuda_graph``)."""
        return 0 if self._graphs is None else self._graphs.captured

    # ------------------------------------------------------------------ engine primitives

    def _draw_latent(self, n: int) -> torch.Tensor:
        if self.latent_sampler is not None:
            return self.latent_sampler(n, self.settings.z_dim).to(self.device, non_blocking=True)
        if self.latents_on == "device":
            return torch.randn(n, self.settings.z_dim, device=self.device)
        return torch.randn(n, self.settings.z_dim).to(self.device, non_blocking=True)

    def latents(self, n: int) -> torch.Tensor:
        """Draw one batch of ``n`` training latents (the faithful order: ``torch.randn`` on the
        CPU generator, moved to the device), recorded in :attr:`step_latents`.

        Args:
            n: batch size.

        Returns:
            ``(n, z_dim)`` latents on the trainer's device.
        """
        draw = self._latent_override or self._draw_latent
        z = draw(n)
        self.step_latents.append(z)
        return z

    def autocast(self):
        """The precision context of network calls (a no-op in fp32)."""
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        # A captured step cannot keep autocast's cache of cast weights (torch.cuda.graph's
        # rule); without the cache the casts are recomputed: same values, a little slower.
        return torch.autocast(self.device.type, dtype=self._autocast_dtype, cache_enabled=not self.cuda_graph)

    def generate(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        """Run the generator (as wrapped by DDP / compile) under the trainer's precision.

        Args:
            z: latents.
            labels: class labels for a conditional generator (passed as ``labels=``).

        Returns:
            The generated images (float32 outside autocast's own dtype choices).
        """
        self._network_calls += 1
        with self.autocast():
            return self.g_run(z) if labels is None else self.g_run(z, labels=labels)

    def score(self, x: torch.Tensor, *, generator_step: bool = False, labels: torch.Tensor | None = None,
              augment: bool = True) -> torch.Tensor:
        """The discriminator's scores of ``x`` as float32 ``(N,)``, through the engine.

        The step's input augmentation (``GANStep(augment=...)``: DiffAugment, ADA) is applied
        to ``x`` first, to real and fake images in both steps alike; a regulariser that takes
        input gradients through this call (R1, R2, GP) takes them through the augmentation.
        A probability head returns logits when the objective wants logits (its autocast-safe
        form under mixed precision). In the generator step the plain discriminator is
        called (under DDP its gradients there are not needed).

        Args:
            x: images.
            generator_step: called from the generator's update.
            labels: class labels for a conditional discriminator (passed as ``labels=``).
            augment: apply the step's augmentation (False: score ``x`` as it is).
        """
        self._network_calls += 1
        augmentation = getattr(self.step_fn, "augment", None)
        if augment and augmentation is not None:
            x = augmentation(x)
        net = self.d_gen if generator_step else self.d_run
        kwargs = {} if labels is None else {"labels": labels}
        with self.autocast():
            out = net(x, return_logits=self._use_logits, **kwargs) if self._probability_head else net(x, **kwargs)
        return out.float()

    def logit_output(self, out: torch.Tensor) -> torch.Tensor:
        """The discriminator output as a logit, whose sign says real (+) or fake (-).

        A sigmoid head's probability ``p`` becomes ``log(p / (1 - p))``; logits stay as they
        are. ADA's overfitting heuristic ``E[sign D(x)]`` is measured on this.
        """
        out = out.detach()
        if self._probability_head and not self._use_logits:
            out = torch.logit(out.float())
        return out

    def mean_output(self, out: torch.Tensor) -> torch.Tensor:
        """Mean discriminator output as the original reports it (a probability for a sigmoid head)."""
        if self._use_logits and self._probability_head:
            out = torch.sigmoid(out)
        return out.detach().mean()

    @contextlib.contextmanager
    def optimize(self, side: str):
        """One optimizer update of ``side`` (``"d"`` or ``"g"``): gradients cleared on entry,
        the yielded object's ``backward(loss)`` accumulates them, the step runs on exit.

        Example:
            >>> with trainer.optimize("d") as opt:  # doctest: +SKIP
            ...     opt.backward(loss)
        """
        if side not in ("d", "g"):
            raise ConfigError(f"side must be 'd' or 'g', got {side!r}.")
        update = _Optimize(self, side)
        update.optimizer.zero_grad(set_to_none=True)
        yield update
        update.scaler.step(update.optimizer)
        update.scaler.update()

    def backward(self, loss: torch.Tensor) -> None:
        """Back-propagate an (already scaled) loss: ``loss.backward()``.

        Every optimizer update of a step reaches its gradients through here (the object
        :meth:`optimize` yields calls it); it is the seam where a
        :class:`~gankit.train.MultiTrainer` joins its members' backward passes into one.
        """
        loss.backward()

    @contextlib.contextmanager
    def frozen_discriminator(self):
        """Within it the discriminator's own gradients are not computed (gradients still flow
        through it to the generator): the generator step needs only G's."""
        d_params = [p for p in self.discriminator.parameters() if p.requires_grad]
        for p in d_params:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in d_params:
                p.requires_grad_(True)

    # ------------------------------------------------------------------ one step

    def _prepare(self, batch: Any) -> Batch:
        return as_batch(batch).to(self.device, channels_last=self.channels_last)

    def apply_schedules(self) -> None:
        """Set every scheduled hyper-parameter to its value at the current step."""
        for target, schedule in self.schedules.items():
            self._set_hparam(target, float(schedule(self.step)))

    def _set_hparam(self, target: str, value: float) -> None:
        owner, _, attr = target.partition(".")
        if owner in ("g", "d") and attr:
            opt = self.opt_g if owner == "g" else self.opt_d
            for group in opt.param_groups:
                if attr in ("beta1", "beta2"):
                    betas = list(group["betas"])
                    betas[0 if attr == "beta1" else 1] = value
                    group["betas"] = tuple(betas)
                elif attr in group:
                    group[attr] = value
                else:
                    raise ConfigError(f"schedule target {target!r}: the optimizer has no {attr!r}; "
                                      f"use one of {', '.join(k for k in group if k != 'params')}.")
            return
        for reg in self.step_fn.regularizers:
            if reg.name == owner:
                setattr(reg, attr or "weight", value)
                return
        for cb in self.callbacks:
            if cb.name == owner and attr:
                setattr(cb, attr, value)
                return
        augmentation = getattr(self.step_fn, "augment", None)
        if augmentation is not None and augmentation.name == owner and attr:
            setattr(augmentation, attr, value)
            return
        raise ConfigError(f"unknown schedule target {target!r}; use g.lr, d.lr, g.beta1/beta2, "
                          "a regulariser's name, '<callback name>.<attribute>' or "
                          "'<augmentation name>.<attribute>'.")

    def train_step(self, batch: Any) -> dict[str, torch.Tensor | None]:
        """Process one batch of real data with the trainer's step (:attr:`step_fn`).

        The discriminator update (real batch first, then a fresh fake batch), constraints
        such as clipping, then a generator update when the schedule says so (by default
        after batch ``i`` of the epoch when ``(i + 1) % n_critic == 0``). Scheduled
        hyper-parameters are set first; the counters advance after.

        Args:
            batch: ``(N, C, H, W)`` images in [-1, 1], an ``(images, labels)`` pair or a
                :class:`~gankit.train.Batch` (any device; moved to the trainer's).

        Returns:
            The logged values: ``loss_d``, ``loss_g`` (None when the generator did not
            step), ``d_real`` and ``d_fake`` (mean discriminator outputs) and every
            regulariser's or user term's value, as detached 0-d tensors on the device --
            reading them (``float(...)``) waits for the device.
        """
        batch = self._prepare(batch)
        self.apply_schedules()
        g_phase = self.step_fn.schedule.generator_phase(batch_index=self.batch_index, d_steps=self.d_steps)
        self.step_latents = []
        self._network_calls = 0
        if self._graphs is not None:
            out = self._graphs(batch.images, g_phase)
        else:
            out = self.step_fn(batch, generator_phase=g_phase)
            if self._autocast_dtype is not None and self._network_calls == 0:
                raise ConfigError(
                    f"the step {type(self.step_fn).__name__} called no network through the trainer "
                    f"(trainer.generate / trainer.score), so precision={self.precision!r} cannot apply; "
                    "call them in your step, or train with precision='fp32'.")
        if g_phase:
            self.g_steps += 1
        self.d_steps += 1
        self.batch_index += 1
        self.step += 1
        return out

    def _graph_step(self, real: torch.Tensor, g_phase: bool, latent) -> dict[str, torch.Tensor | None]:
        """The step as a CUDA graph records it: latents from ``latent(n)``."""
        self._latent_override = latent
        try:
            return self.step_fn(Batch(real), generator_phase=g_phase)
        finally:
            self._latent_override = None

    def _check_cuda_graph(self) -> None:
        """Refuse the combinations a captured step cannot run (one line each)."""
        problem = None
        unsafe = [r.name for r in self.step_fn.regularizers if not r.graph_safe]
        unsafe += [c.name for c in self.step_fn.constraints if not c.graph_safe]
        if self.device.type != "cuda":
            problem = f"cuda_graph needs a CUDA device, this trainer is on {self.device.type}"
        elif self.dist is not None:
            problem = "cuda_graph is not supported with distributed training"
        elif self.compiled:
            problem = "cuda_graph and compile cannot be combined (torch.compile brings its own graphs)"
        elif self.precision == "fp16":
            problem = "cuda_graph does not support fp16 (its gradient scaler checks on the host)"
        elif unsafe:
            problem = (f"cuda_graph does not support the regularisers {', '.join(unsafe)} "
                       "(input gradients or lazy intervals)")
        elif self.schedules:
            problem = "cuda_graph does not support hyper-parameter schedules (values are captured)"
        elif getattr(self.step_fn, "augment", None) is not None:
            problem = ("cuda_graph does not support input augmentation (its probability and "
                       "adaptive updates would be captured)")
        elif self.num_classes:
            problem = "cuda_graph does not support class-conditional networks (labels are not captured)"
        if problem:
            raise ConfigError(f"{problem}; train without cuda_graph (drop --cuda-graph).")

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, *, batch_size: int = 256,
               ema: bool | None = None, labels: Any = None) -> torch.Tensor:
        """Generate ``n`` images in [0, 1] (generator in eval mode, then back as it was).

        Args:
            n: number of images.
            seed: seed of a private generator for the latents (torch's global RNG is not
                touched); None draws from the global CPU generator.
            batch_size: images generated per forward pass.
            ema: which generator (see :meth:`sampling_generator`): by default the averaged
                one when the trainer has a :class:`~gankit.train.GeneratorEMA`.
            labels: for a class-conditional generator, the classes: one class (an index or
                a class name) for all ``n`` images, or ``n`` of them (a sequence or tensor);
                None: the classes in turn (``i % num_classes``).

        Returns:
            ``(n, C, H, W)`` float tensor on the CPU, values in [0, 1].
        """
        from .export import sample_labels

        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}.")
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.settings.z_dim, generator=gen)
        y = sample_labels(self.sampling_generator(ema), n, labels)
        return self.render(z, batch_size=batch_size, ema=ema, labels=y)

    @torch.no_grad()
    def render(self, z: torch.Tensor, *, batch_size: int = 256, ema: bool | None = None,
               labels: torch.Tensor | None = None) -> torch.Tensor:
        """Images in [0, 1] for the given latents (eval mode, then the previous mode back).

        Args:
            z: the latents.
            batch_size: images generated per forward pass.
            ema: which generator (see :meth:`sampling_generator`).
            labels: ``(n,)`` classes of a class-conditional generator; None: ``i % num_classes``.
        """
        from .export import generate, sample_labels

        net = self.sampling_generator(ema)
        if labels is None and getattr(_unwrap(net), "num_classes", 0):
            labels = sample_labels(net, len(z), None)
        images = generate(net, z, device=self.device, batch_size=batch_size, labels=labels)
        return ((images + 1) / 2).clamp_(0, 1)

    def interpolate(self, rows: int = 4, steps: int = 8, seed: int = 0, *, method: str = "slerp",
                    ema: bool | None = None) -> torch.Tensor:
        """Images along latent paths between seeded latents, in [0, 1] (see :mod:`gankit.train.interpolate`).

        Row ``r`` goes from ``z[2r]`` to ``z[2r + 1]`` of ``torch.randn(2 * rows, z_dim)``
        drawn from a generator seeded with ``seed``: its ends are ``sample(2 * rows, seed)``'s
        images ``2r`` and ``2r + 1``.

        Args:
            rows: endpoint pairs.
            steps: images per row, endpoints included.
            seed: seed of the endpoints (torch's global RNG is not touched).
            method: ``slerp``, ``lerp`` or ``both`` (a lerp row under each slerp row).
            ema: which generator (see :meth:`sampling_generator`).

        Returns:
            ``(rows * steps, C, H, W)`` on the CPU (``2 * rows * steps`` with ``both``); a
            grid with ``nrow=steps`` shows one path per row.
        """
        from .interpolate import interpolation_latents

        z = interpolation_latents(self.settings.z_dim, rows=rows, steps=steps, seed=seed, method=method)
        return self.render(z, ema=ema)

    # ------------------------------------------------------------------ fitting

    # ------------------------------------------------------------------ fitting

    def _as_batches(self, data: Any, num_images: int | None = None) -> Any:
        """Turn what the user gave into something iterable over batches, once per epoch.

        Under torchrun each rank gets its share of every global batch; a plain iterable of
        batches is used as given (on every rank).
        """
        from ..data import BatchLoader, load_images
        from ..data.loader import dataloader_epoch_seed

        bs, ctx = self.settings.batch_size, self.dist
        if isinstance(data, (str, os.PathLike)):
            with _dist.main_process_first(ctx):  # rank 0 fills the cache, then the others read it
                data = load_images(data, image_size=self.settings.image_size, channels=self.settings.channels,
                                   num_images=num_images, **({"labels": True} if self.num_classes else {}))
        elif num_images is not None:
            raise ConfigError("fit(num_images=...) applies to a folder path or dataset name; slice a "
                              "tensor or dataset yourself (e.g. images[:n]).")
        labels = self._data_labels(data)
        if isinstance(data, torch.Tensor) or hasattr(data, "images"):
            images = data if isinstance(data, torch.Tensor) else data.images
            self._check_images(images.shape[1:])
            self._train_images = images  # the default reference of evaluations
            state = self._data_state
            if state is None and isinstance(self._loader, BatchLoader) and self.batch_index:
                state = self._loader.state_dict()  # fit again within an epoch: keep its order
            shuffle = self.settings.shuffle if state is None else state.get("shuffle", "seeded")
            if ctx is not None:
                if shuffle == "dataloader" and self.is_main:
                    warnings.warn("shuffle='dataloader' draws from each process's global RNG; under "
                                  "torchrun every rank uses the seeded order instead (set shuffle=seeded "
                                  "to silence this).", stacklevel=3)
                self._loader = _dist.ShardedBatchLoader(images, bs, rank=ctx.rank, world_size=ctx.world_size,
                                                        shuffle=shuffle != "none", seed=self.data_seed,
                                                        device=self.device, labels=labels)
                return self._loader
            loader = BatchLoader(images, bs, shuffle=shuffle, seed=self.data_seed, device=self.device, labels=labels)
            sampler = state.get("sampler_seed") if state is not None else None
            if sampler is not None and int(sampler[0]) == self.epoch and self.batch_index:
                if state.get("num_images") == loader.num_images:  # resuming mid-epoch: same order
                    loader.set_sampler_seed(self.epoch, int(sampler[1]))
                else:  # other data than the checkpoint's: this epoch's order cannot be the same
                    warnings.warn(f"the data has {loader.num_images} images, the checkpoint's run "
                                  f"{state.get('num_images')}: epoch {self.epoch + 1} continues in a "
                                  "new order (not bitwise resumable).", stacklevel=3)
                    loader.set_sampler_seed(self.epoch, dataloader_epoch_seed())
            self._data_state = None
            self._loader = loader
            return loader
        if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__getitem__") and hasattr(data, "__len__"):
            if ctx is not None:
                return _dist.SampledLoader(data, bs, rank=ctx.rank, world_size=ctx.world_size, seed=self.data_seed)
            return torch.utils.data.DataLoader(data, batch_size=bs, shuffle=True)
        if isinstance(data, Iterable):
            return data
        raise ConfigError(
            f"cannot train on a {type(data).__name__}; give a folder path, a dataset name, "
            "an image tensor, a Dataset or an iterable of batches."
        )

    def _grid_labels(self, grid: int) -> torch.Tensor | None:
        """Classes of the fixed-latent grid of a conditional generator: one class per row."""
        if not self.num_classes:
            return None
        return (torch.arange(len(self.z_sample)) // grid) % self.num_classes

    def _data_labels(self, data: Any) -> torch.Tensor | None:
        """The labels a conditional recipe trains with (checked against its classes), or None.

        The data's class names become the generator's (:attr:`class_names`) when it has none.
        """
        labels = getattr(data, "labels", None)
        if not self.num_classes or not isinstance(labels, torch.Tensor):
            if self.num_classes and (isinstance(data, torch.Tensor) or hasattr(data, "images")):
                raise ConfigError(f"the recipe is class-conditional ({self.num_classes} classes) but the data has "
                                  "no labels; use class sub-folders (imagefolder:PATH) or load it with labels=True.")
            return None
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= self.num_classes):
            raise ConfigError(f"the data's labels span [{int(labels.min())}, {int(labels.max())}] but the recipe "
                              f"has {self.num_classes} classes; set num_classes={int(labels.max()) + 1} "
                              "(--set num_classes=...).")
        names = getattr(data, "classes", None)
        for net in (self.generator, self.sampling_generator()):
            plain = _unwrap(net)
            if names and getattr(plain, "class_names", None) is None:
                plain.class_names = list(names)
        return labels

    def _data_checkpoint(self) -> dict[str, Any] | None:
        from ..data import BatchLoader

        if isinstance(self._loader, BatchLoader):
            return self._loader.state_dict()
        if self._loader is not None:  # the sharded loaders order by seed
            return {"shuffle": "seeded"}
        return self._data_state

    def _check_images(self, shape) -> None:
        want = (self.settings.channels, self.settings.image_size, self.settings.image_size)
        if tuple(shape) != want:
            raise ConfigError(
                f"the data's images are {tuple(shape)} but the recipe expects {want}; "
                "load the data at the recipe's image size and channels."
            )

    @staticmethod
    def _iter_from(loader: Any, start: int) -> Iterator:
        if start and hasattr(loader, "iter_from"):
            return iter(loader.iter_from(start))
        it = iter(loader)
        for _ in range(start):  # plain iterables: skip what this epoch already consumed
            next(it, None)
        return it

    def _notify(self, event: str, *args: Any) -> None:
        for cb in self.callbacks:
            getattr(cb, event)(self, *args)

    def fit(self, data: Any, *, epochs: int | None = None, max_steps: int | None = None,
            num_images: int | None = None) -> Trainer:
        """Train over ``data`` for ``epochs`` epochs (the recipe's by default) or ``max_steps`` steps.

        After every epoch (and every ``grid_every_steps`` / ``checkpoint_every_steps`` steps)
        and at the end it renders the fixed-latent sample grid and the loss curve, writes
        the metrics log and saves ``checkpoints/last.pt`` (and ``checkpoints/epoch_NNNN.pt``
        every ``checkpoint_every`` epochs) under ``out_dir``. Callbacks hear of every step
        and epoch. A resumed trainer continues where it stopped (same epoch, same batch).
        Ctrl-C, SIGTERM or SIGHUP finishes the current step, saves a checkpoint and raises
        :class:`gankit.signals.Interrupted` (a ``KeyboardInterrupt``); a second signal
        raises it at once. A non-finite loss raises :class:`~gankit.errors.TrainingError`
        naming the step; the last good checkpoint is kept.

        Args:
            data: a folder path or dataset name (``"toy-faces"``), an image tensor or
                :class:`gankit.data` dataset, a ``Dataset``, a ``DataLoader`` or any
                iterable of batches (re-iterated every epoch).
            epochs: total epochs to reach (counting epochs already done).
            max_steps: total steps to reach (counting steps already done).
            num_images: with a folder path or dataset name, use at most this many images
                (for ``"toy-faces"``: draw this many), as
                :func:`~gankit.data.load_images`'s ``num_images``.

        Returns:
            The trainer.
        """
        epochs = self.settings.epochs if epochs is None else epochs
        loader = self._as_batches(data, num_images)
        use_bn = _has_batchnorm(self.generator, self.discriminator)
        if use_bn:  # every batch of one image: refuse now rather than skip them all
            check_batchnorm_batches(loader)
        self._t0 = time.perf_counter()
        previous_handler = self._install_sigint()
        bar = None
        try:
            if self.is_main and self.loggers:
                from .loggers import run_hparams

                hparams = run_hparams(self)
                for logger in self.loggers:
                    logger.setup(self)
                    logger.log_hparams(hparams)
            self._notify("on_fit_start")
            if self._evaluating and self.step == 0 and not self.eval_history:
                self.evaluate_now()  # where training starts from
            while self.epoch < epochs and not self._done(max_steps):
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(self.epoch)
                total = len(loader) if hasattr(loader, "__len__") else None
                bar = self._bar(total)
                if self.batch_index == 0:
                    self._notify("on_epoch_start")
                for raw in self._iter_from(loader, self.batch_index):
                    if self._done(max_steps):  # checked first, so a last batch still closes its epoch
                        break
                    batch = as_batch(raw)
                    if use_bn and len(batch) == 1:
                        warnings.warn(
                            f"skipping a batch of one image at epoch {self.epoch + 1} (BatchNorm "
                            "cannot train on it); use a batch size that does not leave one image.",
                            stacklevel=2,
                        )
                        self.batch_index += 1
                        continue
                    out = self._guarded_step(batch)
                    self._record(out)
                    if bar is not None:
                        bar.update(1)
                    if len(self._pending) >= self.log_every:
                        self._flush(bar)
                    self._notify("on_step_end", batch, out)
                    self._every_steps()
                    if self.eval_every and self.step % self.eval_every == 0:
                        self.evaluate_now()
                    if self._stop_requested:
                        path = self._finish(reason="interrupted")
                        raise _signals.Interrupted(
                            self._stop_requested, f"training interrupted by "
                            f"{_signals.signal_name(self._stop_requested)} at step {self.step}; "
                            f"checkpoint saved to {path}")
                else:
                    self.epoch += 1
                    self.batch_index = 0
                    self._notify("on_epoch_end")
                    self._end_of_epoch()
                if bar is not None:
                    bar.close()
                    bar = None
            if not (self.batch_index == 0 and self._last_saved_step == self.step):
                self._finish(reason="end")
            self._notify("on_fit_end")
        except BaseException:
            if self.dist is not None:  # leave the group at once: the other ranks fail, not hang
                _dist.destroy_distributed()
            raise
        finally:
            if bar is not None:
                bar.close()
            self._restore_sigint(previous_handler)
            if self.is_main:
                for logger in self.loggers:
                    logger.close()
        return self

    def _every_steps(self) -> None:
        if self.grid_every_steps and self.step % self.grid_every_steps == 0:
            self._flush()
            self._write_artifacts(f"step_{self.step:07d}")
        if self.checkpoint_every_steps and self.step % self.checkpoint_every_steps == 0 and self.out_dir:
            self.save(self.out_dir / "checkpoints" / "last.pt")
            self._save_periodic(f"step_{self.step:07d}.pt")

    def _save_periodic(self, name: str) -> None:
        folder = self.out_dir / "checkpoints"
        path = self.save(folder / name)
        if self.keep_last and self.is_main:
            prefix = name.split("_")[0] + "_"
            kept = sorted(p for p in folder.glob(f"{prefix}*.pt") if p != path)
            for old in kept[: max(0, len(kept) + 1 - self.keep_last)]:
                old.unlink(missing_ok=True)

    def _guarded_step(self, batch: Batch) -> dict[str, torch.Tensor | None]:
        try:
            return self.train_step(batch)
        except RuntimeError as err:
            # BCE on probabilities refuses NaN inputs before any loss exists to check.
            if "between 0 and 1" not in str(err):
                raise
            raise self._non_finite(self.step + 1, "the discriminator output NaN") from None

    def _non_finite(self, step: int, detail: str) -> TrainingError:
        """The one-line error that stops training at a non-finite loss (pending logs dropped)."""
        self._pending.clear()
        kept = self._last_checkpoint or "none was written"
        return TrainingError(
            f"non-finite loss at step {step} ({detail}); training stopped, last good checkpoint: "
            f"{kept}; lower the learning rate or check the data."
        )

    def _done(self, max_steps: int | None) -> bool:
        return max_steps is not None and self.step >= max_steps

    def _bar(self, total: int | None):
        if not (self.progress and self.is_main):
            return None
        from tqdm.auto import tqdm

        return tqdm(
            total=total,
            initial=self.batch_index,
            desc=f"epoch {self.epoch + 1}/{self.settings.epochs}",
            unit="batch",
            dynamic_ncols=True,
            leave=False,
        )

    def _record(self, out: dict[str, torch.Tensor | None]) -> None:
        self._pending.append((self.step, self.epoch, out))

    def _flush(self, bar=None) -> None:
        """Read pending logged values back in one transfer, check them, log them."""
        if not self._pending:
            return
        names: list[str] = []
        for _, _, out in self._pending:
            names += [k for k in out if k not in names]
        nan = torch.tensor(float("nan"), device=self.device)
        rows = torch.stack([
            torch.stack([nan if out.get(k) is None else out[k].float() for k in names])
            for _, _, out in self._pending
        ])
        if self.dist is not None:  # log the global batch: the mean over ranks (NaN if any has one)
            rows = self.dist.all_reduce(rows, "mean")
        rows = rows.cpu().tolist()
        elapsed = self._elapsed_before + time.perf_counter() - self._t0
        records = []
        for (step, epoch, out), values in zip(self._pending, rows):
            # a step's record holds the names it logged (loss_g always: NaN / null when G did not step)
            row = {k: v for k, v in zip(names, values) if k in out}
            bad = [f"{k}={v}" for k, v in row.items() if out[k] is not None and not math.isfinite(v)]
            if bad:
                raise self._non_finite(step, ", ".join(bad))
            self.history.append({"step": float(step), "epoch": float(epoch),
                                 **{k: v for k, v in row.items() if out[k] is not None or k == "loss_g"}})
            records.append({"step": step, "epoch": epoch,
                            **{k: (None if out[k] is None else v) for k, v in row.items()},
                            "seconds": round(elapsed, 3)})
        self._pending.clear()
        if self.out_dir is not None and self.is_main:
            MetricsLog(self.out_dir / "metrics.jsonl").write(records)
        if self.loggers and self.is_main:
            for record in records:
                values = {k: (math.nan if v is None else float(v)) for k, v in record.items()
                          if k not in ("step", "seconds")}
                for logger in self.loggers:
                    logger.log_metrics(values, record["step"])
        if bar is not None:
            bar.set_postfix(self.progress_columns(), refresh=False)

    def progress_columns(self) -> dict[str, str]:
        """The progress bar's columns: the last finite value of every logged name
        (``D(x)`` and ``D(G(z))`` for the mean discriminator outputs)."""
        shown = {"d_real": "D(x)", "d_fake": "D(G(z))"}
        # incremental over the whole history (a lazy term logged every k > log_every steps
        # keeps its column); a history replaced by a resume is read again from its start
        src, upto, latest = getattr(self, "_latest_values", (None, 0, {}))
        if src is not self.history:
            upto, latest = 0, {}
        for rec in self.history[upto:]:
            latest.update({k: v for k, v in rec.items() if k not in ("step", "epoch") and math.isfinite(v)})
        self._latest_values = (self.history, len(self.history), latest)
        return {shown.get(k, k): f"{latest[k]:.4f}" for k in sorted(latest, key=_log_order)}

    def _write_artifacts(self, tag: str) -> dict[str, Path]:
        if not self.is_main or (self.out_dir is None and not self.loggers):
            return {}
        grid = self.settings.sample_grid
        images = self.render(self.z_sample, labels=self._grid_labels(grid))
        if self.loggers:
            from torchvision.utils import make_grid

            picture = make_grid(images.detach().float().cpu(), nrow=grid)
            for logger in self.loggers:
                logger.log_image("samples", picture, self.step)
        if self.out_dir is None:
            return {}
        paths = {
            "samples": save_grid(images, self.out_dir / "samples" / f"{tag}.png", grid),
            "loss_curve": plot_loss_curve(self.history, self.out_dir / "loss_curve.png", title=self.recipe.name),
        }
        self.artifacts.update(paths)
        return paths

    @property
    def _evaluating(self) -> bool:
        return bool(self.eval_every or self.eval_every_epochs)

    def evaluate_now(self):
        """Measure sample quality now, log it (``metrics.jsonl``, ``metric_curve.png``) and return it.

        Uses the trainer's ``eval_*`` options; the reference is ``eval_reference`` or the
        training images. Only the main process evaluates (None elsewhere).

        Returns:
            The :class:`~gankit.metrics.MetricResult`, or None on other ranks.
        """
        from .evaluation import dataset_id, evaluate_generator
        from .outputs import plot_metric_curve

        if not self.is_main:
            return None
        self._flush()
        reference = self.eval_reference if self.eval_reference is not None else self._train_images
        if reference is None:
            raise ConfigError(
                "evaluation needs reference images: pass eval_reference=... or train on an image "
                "tensor, a gankit dataset, a folder or a dataset name."
            )
        ref_id = None
        if isinstance(reference, torch.Tensor) and reference.dtype == torch.uint8:
            if getattr(self, "_ref_id", (None, None))[0] is not reference:
                self._ref_id = (reference, dataset_id(reference, "train"))
            ref_id = self._ref_id[1]
        result = evaluate_generator(
            self.sampling_generator(),
            reference,
            z_dim=self.settings.z_dim,
            metrics=self.eval_metrics,
            num_samples=self.eval_samples,
            extractor=self.eval_extractor,
            device=self.device,
            reference_id=ref_id,
        )
        record = {"kind": "eval", "step": self.step, "epoch": self.epoch, **result.values,
                  "extractor": result.extractor, "comparable_to_published": result.comparable_to_published,
                  "num_fake": result.num_fake, "num_real": result.num_real, "reference": result.reference}
        if self.ema is not None:
            record["generator"] = "ema"
        self.eval_history.append(record)
        for logger in self.loggers:
            logger.log_metrics({f"eval/{k}": float(v) for k, v in result.values.items()}, self.step)
        if self.out_dir is not None:
            MetricsLog(self.out_dir / "metrics.jsonl").write([record])
            self.artifacts["metric_curve"] = plot_metric_curve(
                self.eval_history, self.out_dir / "metric_curve.png", title=self.recipe.name
            )
        return result

    def _end_of_epoch(self) -> None:
        self._flush()
        if self.eval_every_epochs and self.epoch % self.eval_every_epochs == 0 and (
            not self.eval_history or self.eval_history[-1]["step"] != self.step
        ):
            self.evaluate_now()
        self._write_artifacts(f"epoch_{self.epoch:04d}")
        every = self.settings.checkpoint_every
        if self.out_dir is not None:
            self.save(self.out_dir / "checkpoints" / "last.pt")
            if every and self.epoch % every == 0:
                self._save_periodic(f"epoch_{self.epoch:04d}.pt")

    def _finish(self, reason: str) -> Path | None:
        self._flush()
        if self.batch_index:  # stopped inside an epoch: render where we are
            self._write_artifacts(f"step_{self.step:07d}")
        if self.out_dir is None:
            return None
        return self.save(self.out_dir / "checkpoints" / "last.pt")

    def _install_sigint(self):
        if threading.current_thread() is not threading.main_thread() or self.dist is not None:
            return None  # under torchrun every rank gets Ctrl-C at its own step: stop at once
        # SIGINT, SIGTERM and SIGHUP: the first stops after this step, a second at once
        return _signals.install_stop_handlers(self._request_stop)

    def _request_stop(self, signum: int) -> None:
        self._stop_requested = signum

    def _restore_sigint(self, previous) -> None:
        self._stop_requested = 0
        _signals.restore_handlers(previous)

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume exactly: networks, optimizers, counters, RNG states.

        Returns:
            A checkpoint dictionary of tensors and Python primitives.
        """
        self._flush()
        cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        return {
            "format": CHECKPOINT_FORMAT,
            "format_version": CHECKPOINT_VERSION,
            "gankit_version": __version__,
            "preset": self.recipe.name,
            **({"builder": self.recipe.builder} if self.recipe.builder else {}),
            "overrides": dict(self.recipe.overrides),
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "scaler_g": self.scaler_g.state_dict(),
            "scaler_d": self.scaler_d.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_index": self.batch_index,
            "d_steps": self.d_steps,
            "g_steps": self.g_steps,
            "step_state": self.step_fn.state_dict(),
            "callbacks": {cb.name: cb.state_dict() for cb in self.callbacks},
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": list(cuda_rng),
            "z_sample": self.z_sample,
            **({"class_names": list(self.class_names)} if self.class_names else {}),
            "data_seed": self.data_seed,
            "data": self._data_checkpoint(),
            "history": _pack_history(self.history),
            "eval_history": [dict(r) for r in self.eval_history],
            "elapsed": self._elapsed_before + time.perf_counter() - self._t0,
            "trainer": {"precision": self.precision, "channels_last": self.channels_last,
                        "latents": self.latents_on, "compile": self.compiled,
                        "cuda_graph": self.cuda_graph},
            **self._distributed_state(),
        }

    def _distributed_state(self) -> dict[str, Any]:
        if self.dist is None:
            return {}
        # A collective: every rank's RNG states, so that resuming restores each stream.
        return {"world_size": self.dist.world_size,
                "rng_ranks": self.dist.all_gather_object(_dist.rank_rng_states())}

    def save(self, path: str | os.PathLike) -> Path:
        """Write a checkpoint atomically (temporary file, then rename).

        Args:
            path: the ``.pt`` file.

        Returns:
            The path written.
        """
        if self.dist is not None:  # every rank gathers RNG states; rank 0 writes
            state = self.state_dict()
            path = atomic_save(state, path) if self.is_main else Path(path)
            self.dist.barrier()  # the file exists on return, on every rank
        else:
            path = atomic_save(self.state_dict(), path) if self.is_main else Path(path)
        self._last_checkpoint = path
        self._last_saved_step = self.step
        return path

    def load_state_dict(self, ckpt: dict[str, Any], *, source: str = "checkpoint") -> None:
        """Restore a checkpoint dictionary into this trainer (same preset and settings).

        Args:
            ckpt: a dictionary from :meth:`state_dict` or :func:`load_checkpoint`.
            source: how to name it in error messages (usually its path).

        Raises:
            CheckpointError: when it belongs to another preset or architecture, or a field
                has the wrong type or shape.
        """
        check_resumable(ckpt, source, preset=self.recipe.name, z_dim=self.settings.z_dim,
                        modules={"generator": self.generator, "discriminator": self.discriminator},
                        optimizers={"opt_g": self.opt_g, "opt_d": self.opt_d})
        if ckpt.get("preset") != self.recipe.name:
            raise CheckpointError(
                f"{source} was written by preset {ckpt.get('preset')!r}, not {self.recipe.name!r}; "
                f"resume it with preset {ckpt.get('preset')!r} or start a new run."
            )
        try:
            self.generator.load_state_dict(ckpt["generator"])
            self.discriminator.load_state_dict(ckpt["discriminator"])
            # the saved groups carry the writer's execution flags; this trainer keeps its own
            for opt, key in ((self.opt_g, "opt_g"), (self.opt_d, "opt_d")):
                flags = optimizer_flags(opt)
                opt.load_state_dict(ckpt[key])
                restore_optimizer_flags(opt, flags)
            self.scaler_g.load_state_dict(ckpt["scaler_g"])
            self.scaler_d.load_state_dict(ckpt["scaler_d"])
        except (RuntimeError, KeyError, ValueError) as err:
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(
                f"{source} does not fit this {self.recipe.name} recipe (other settings?): {first[:160]}; "
                "resume with the settings it was trained with."
            ) from None
        self.step, self.epoch = int(ckpt["step"]), int(ckpt["epoch"])
        self.batch_index, self.g_steps = int(ckpt["batch_index"]), int(ckpt["g_steps"])
        self.d_steps = int(ckpt.get("d_steps", self.step))
        self.step_fn.load_state_dict(ckpt.get("step_state") or {})
        saved_callbacks = ckpt.get("callbacks") or {}
        for cb in self.callbacks:
            if cb.name in saved_callbacks:
                cb.load_state_dict(saved_callbacks[cb.name])
        self.z_sample = ckpt["z_sample"].clone()
        names = ckpt.get("class_names")
        if isinstance(names, list) and names:
            for net in (self.generator, self.sampling_generator()):
                _unwrap(net).class_names = [str(n) for n in names]
        self.data_seed = int(ckpt.get("data_seed", self.data_seed))
        # checkpoints before the "data" entry batched with the seeded order
        self._data_state = ckpt["data"] if "data" in ckpt else {"shuffle": "seeded"}
        self._loader = None
        self.history = _unpack_history(ckpt["history"])
        self.eval_history = [dict(r) for r in ckpt.get("eval_history", [])]
        self._elapsed_before = float(ckpt.get("elapsed", 0.0))
        self._t0 = time.perf_counter()
        torch.set_rng_state(ckpt["rng_cpu"])
        if ckpt.get("rng_cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ckpt["rng_cuda"])
        if self.dist is not None:
            self._load_rank_rng(ckpt)
        self._last_saved_step = self.step
        if self._graphs is not None:  # new optimizer state tensors: capture again
            self._graphs.reset()
        if self.out_dir is not None and self.is_main:  # a crash may have logged steps past it
            rewind_run(self.out_dir, self.step)

    def _load_rank_rng(self, ckpt: dict[str, Any]) -> None:
        ranks = ckpt.get("rng_ranks") or []
        if len(ranks) == self.dist.world_size:
            _dist.set_rank_rng_states(ranks[self.dist.rank])
            return
        if self.is_main:
            warnings.warn(
                f"the checkpoint was written by {len(ranks) or 1} process(es), this run has "
                f"{self.dist.world_size}: every rank starts a new latent stream (not bitwise resumable).",
                stacklevel=3,
            )
        _dist.seed_rank_streams(self.dist, torch.initial_seed() + self.step)

    def resume(self, path: str | os.PathLike) -> Trainer:
        """Restore the checkpoint at ``path`` into this trainer.

        Args:
            path: a checkpoint written by :meth:`save`.

        Returns:
            The trainer.
        """
        self.load_state_dict(load_checkpoint(path), source=str(path))
        self._last_checkpoint = Path(path)
        return self

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        out_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ) -> Trainer:
        """Rebuild a trainer from a checkpoint: its preset, overrides, weights and state.

        The recipe is rebuilt from the checkpoint: a registered preset by name, otherwise
        the importable builder it records (``module:function``), whose module must already be
        imported in this process (``gankit --import MODULE`` on the command line): a
        checkpoint never makes gankit import code by itself.

        Args:
            path: a checkpoint written by :meth:`save`.
            device: where to train from now on.
            out_dir: output folder of the resumed run (None writes nothing).
            **kwargs: other :class:`Trainer` options (precision, progress, ...).

        Returns:
            The restored trainer, ready to continue with :meth:`fit` or :meth:`train_step`.

        Raises:
            CheckpointError: for a missing, truncated or foreign file.
        """
        from ..presets import rebuild_recipe

        ckpt = load_checkpoint(path)
        recipe = rebuild_recipe(ckpt, source=str(path))
        trainer = cls(recipe, device=device, out_dir=out_dir, z_sample=ckpt["z_sample"], **kwargs)
        trainer.load_state_dict(ckpt, source=str(path))
        trainer._last_checkpoint = Path(path)
        return trainer

    # ------------------------------------------------------------------ export

    def export_generator(self, path: str | os.PathLike, *, ema: bool | None = None) -> Path:
        """Write the generator's weights to a ``.safetensors`` file (with its preset).

        Args:
            path: the file to write (atomically).
            ema: which generator (see :meth:`sampling_generator`): by default the averaged
                one when the trainer has a :class:`~gankit.train.GeneratorEMA`.

        Returns:
            The path written; load it with :func:`gankit.load_generator`.
        """
        from .export import export_generator

        return export_generator(self.sampling_generator(ema), self.recipe, path)


def _log_order(name: str) -> tuple[int, str]:
    order = {k: i for i, k in enumerate(CORE_LOGS)}
    return (order.get(name, len(order)), name)


def _pack_history(history: list[dict[str, float]]) -> dict[str, Any]:
    """The history as compact columns for checkpoints (NaN where a name was not logged)."""
    names: list[str] = []
    for rec in history:
        names += [k for k in rec if k not in names]
    values = torch.tensor([[rec.get(k, math.nan) for k in names] for rec in history],
                          dtype=torch.float64).reshape(len(history), len(names))
    return {"columns": names, "values": values}


def _unpack_history(saved: Any) -> list[dict[str, float]]:
    if isinstance(saved, torch.Tensor):  # checkpoints before named columns
        old = ("step", "epoch", "loss_d", "loss_g", "d_real", "d_fake")
        return [dict(zip(old, row)) for row in saved.tolist()]
    names = list(saved["columns"])
    return [{k: v for k, v in zip(names, row) if k in ("step", "epoch") or math.isfinite(v) or k == "loss_g"}
            for row in saved["values"].tolist()]
