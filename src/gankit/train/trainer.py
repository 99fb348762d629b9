"""The Trainer: owns the training loop of a recipe, and nothing else does.

The default ("faithful") mode reproduces SPEC.md's procedure step for step: latents are
``torch.randn(batch, z_dim)`` on torch's default CPU generator, drawn in the original
order and moved to the device; the discriminator is called on real, then fake images;
losses, optimizers and clipping are those of the recipe. Speed-ups in this mode change
no number: the generator forward of the discriminator step runs without a graph, and
the discriminator's weight gradients are not computed during the generator step (the
original code computes them and throws them away at the next ``zero_grad``).

Faster numerics are opt-in: ``precision="bf16"``/``"fp16"`` (autocast; BCE on
probabilities is switched to its logits twin, which is autocast-safe),
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
from ..constraints import WeightClipper
from ..errors import CheckpointError, ConfigError, TrainingError
from ..losses import get_loss, gradient_penalty, r1_penalty
from ..presets import Recipe, get_preset
from . import distributed as _dist
from .checkpoint import (
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    atomic_save,
    check_resumable,
    load_checkpoint,
)
from .graphs import StepGraphs, make_graph_safe, optimizer_flags, restore_optimizer_flags
from .guards import check_batchnorm_batches
from .hostmem import tune_host_allocator
from .outputs import MetricsLog, plot_loss_curve, save_grid
from .rundir import rewind_run

__all__ = ["Trainer", "resolve_device"]

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
HISTORY_COLUMNS = ("step", "epoch", "loss_d", "loss_g", "d_real", "d_fake")


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


def _first_tensor(batch: Any) -> torch.Tensor:
    """Real images from a batch: a tensor, or the first item of (images, labels)."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch and isinstance(batch[0], torch.Tensor):
        return batch[0]
    if isinstance(batch, dict):
        for key in ("image", "images", "x"):
            if isinstance(batch.get(key), torch.Tensor):
                return batch[key]
    raise ConfigError(
        f"a data batch must be an image tensor or an (images, labels) pair, got {type(batch).__name__}."
    )


class Trainer:
    """Train a :class:`~gankit.presets.Recipe` exactly as its procedure says.

    Args:
        recipe: the built preset (networks and settings).
        device: ``"auto"`` (CUDA, else MPS, else CPU), ``"cpu"``, ``"cuda"``, ...
        out_dir: where metrics, sample grids, the loss curve and checkpoints go; None
            writes nothing.
        precision: ``"fp32"`` (faithful, default), ``"bf16"`` or ``"fp16"`` autocast.
        channels_last: use channels-last memory format (fast mode).
        compile: ``torch.compile`` the generator and the discriminator separately.
        cuda_graph: capture the whole training step in CUDA graphs and replay them
            (CUDA only; fp32 or bf16; optimizers run with ``capturable=True``, Adam with
            its fused kernel; see :mod:`gankit.train.graphs`). A step then costs one launch.
        latents: ``"cpu"`` (faithful: ``torch.randn`` on the default CPU generator, then
            moved) or ``"device"`` (drawn on the device; faster on GPUs, other numbers).
        data_seed: seed of the shuffling of data that gankit batches itself.
        progress: show a tqdm progress bar in :meth:`fit`.
        log_every: read losses back from the device every this many steps (fewer host
            syncs); every step still gets its own line in the metrics log.
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
        precision: str = "fp32",
        channels_last: bool = False,
        compile: bool = False,
        cuda_graph: bool = False,
        latents: str = "cpu",
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
        for name, value in (("eval_every", eval_every), ("eval_every_epochs", eval_every_epochs)):
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be >= 1 or None, got {value}.")
        if eval_samples < 2:
            raise ConfigError(f"eval_samples must be >= 2, got {eval_samples}.")
        self.eval_every, self.eval_every_epochs = eval_every, eval_every_epochs
        self.eval_samples, self.eval_metrics = eval_samples, tuple(eval_metrics)
        self.eval_extractor, self.eval_reference = eval_extractor, eval_reference
        self.eval_history: list[dict[str, Any]] = []
        self._train_images: torch.Tensor | None = None
        self.recipe = recipe
        self.settings = recipe.settings
        self.device = resolve_device(device)
        self.out_dir = None if out_dir is None else Path(out_dir)
        self.precision = precision
        self.channels_last = channels_last
        self.compiled = compile
        self.latents = latents
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
        self.loss = get_loss(self.settings.loss)
        self.clipper = WeightClipper(self.settings.clip_value) if self.settings.clip_value else None

        self._dtype = PRECISIONS[precision]
        self._autocast_dtype = self._dtype
        if self._dtype is not None and self.device.type == "mps":
            raise ConfigError("mixed precision is not supported on mps by gankit; use precision='fp32'.")
        # BCE on probabilities is not autocast-safe: under mixed precision the sigmoid is
        # folded into the loss (same function, computed stably on logits).
        self._loss = self.loss
        if self._dtype is not None and self.loss.name == "bce":
            self._loss = get_loss("bce_logits")
        self._use_logits = self._loss.from_logits
        self._probability_head = bool(getattr(_unwrap(self.discriminator), "outputs_probability", False))
        scaling = precision == "fp16" and self.device.type == "cuda"
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=scaling)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=scaling)

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
            self.g_run = torch.compile(self.g_run)
            self.d_gen = torch.compile(self.discriminator)
            self.d_run = self.d_gen if self.dist is None else torch.compile(self.d_run)
        self.cuda_graph = cuda_graph
        self._graphs: StepGraphs | None = None
        if cuda_graph:
            self._check_cuda_graph()
            make_graph_safe(self.opt_g)
            make_graph_safe(self.opt_d)
            self._graphs = StepGraphs(self._compute, self._latent, z_dim=self.settings.z_dim,
                                      latents_on_device=latents == "device", device=self.device)

        self.step = 0  # train_step calls so far
        self.epoch = 0  # completed epochs
        self.batch_index = 0  # batches consumed in the current epoch (n_critic phase)
        self.g_steps = 0
        self.history: list[list[float]] = []
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

    # ------------------------------------------------------------------ one step

    def _latent(self, n: int) -> torch.Tensor:
        if self.latents == "device":
            return torch.randn(n, self.settings.z_dim, device=self.device)
        return torch.randn(n, self.settings.z_dim).to(self.device, non_blocking=True)

    def _autocast(self):
        if self._autocast_dtype is None:
            return contextlib.nullcontext()
        # A captured step cannot keep autocast's cache of cast weights (torch.cuda.graph's
        # rule); without the cache the casts are recomputed: same values, a little slower.
        return torch.autocast(self.device.type, dtype=self._autocast_dtype, cache_enabled=not self.cuda_graph)

    def _score(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        out = net(x, return_logits=self._use_logits) if self._probability_head else net(x)
        return out.float()

    def _mean_output(self, out: torch.Tensor) -> torch.Tensor:
        # D(x) as the original reports it: a probability when the head has a sigmoid.
        if self._use_logits and self._probability_head:
            out = torch.sigmoid(out)
        return out.detach().mean()

    def _prepare(self, real: torch.Tensor) -> torch.Tensor:
        real = real.to(self.device, non_blocking=True)
        if self.channels_last:
            real = real.contiguous(memory_format=torch.channels_last)
        return real

    def train_step(self, real: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Process one batch of real images as the recipe's loop body does.

        Discriminator step (real batch first, then a fresh fake batch), clipping if the
        recipe clips, then a generator step when the n_critic schedule says so
        (after batch ``i`` of the epoch when ``(i + 1) % n_critic == 0``).

        Args:
            real: ``(N, C, H, W)`` images in [-1, 1] (any device; moved to the trainer's).

        Returns:
            ``loss_d``, ``loss_g`` (None when the generator did not step), ``d_real`` and
            ``d_fake`` (mean discriminator outputs), as detached 0-d tensors on the
            device -- reading them (``float(...)``) waits for the device.
        """
        real = self._prepare(_first_tensor(real))
        g_step = (self.batch_index + 1) % self.settings.n_critic == 0
        if self._graphs is not None:
            out = self._graphs(real, g_step)
        else:
            out = self._compute(real, g_step, self._latent)
        if g_step:
            self.g_steps += 1
        self.batch_index += 1
        self.step += 1
        return out

    def _compute(self, real: torch.Tensor, g_step: bool, latent) -> dict[str, torch.Tensor | None]:
        """The arithmetic of one step (no bookkeeping); ``latent(n)`` gives each latent batch."""
        s = self.settings
        n = real.shape[0]

        # -- discriminator step (SPEC steps 1-3)
        z = latent(n)
        with torch.no_grad(), self._autocast():
            fake = self.g_run(z)  # no graph: the original detaches it anyway
        with self._autocast():
            real_out = self._score(self.d_run, real)
            fake_out = self._score(self.d_run, fake)
            loss_d = self._loss.d_loss(real_out, fake_out)
        if s.gp_weight:
            loss_d = loss_d + gradient_penalty(self.d_run, real, fake.float(), weight=s.gp_weight)
        if s.r1_gamma:
            loss_d = loss_d + r1_penalty(self.d_run, real, gamma=s.r1_gamma)
        self.opt_d.zero_grad(set_to_none=True)
        self.scaler_d.scale(loss_d).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        if self.clipper is not None:
            self.clipper(self.discriminator)

        # -- generator step (SPEC step 4-5, every n_critic batches)
        loss_g = None
        if g_step:
            z = latent(n)
            d_params = [p for p in self.discriminator.parameters() if p.requires_grad]
            for p in d_params:  # gradients flow through D to G, but D's own are not needed
                p.requires_grad_(False)
            try:
                with self._autocast():
                    out = self._score(self.d_gen, self.g_run(z))
                    loss_g = self._loss.g_loss(out)
                self.opt_g.zero_grad(set_to_none=True)
                self.scaler_g.scale(loss_g).backward()
                self.scaler_g.step(self.opt_g)
                self.scaler_g.update()
            finally:
                for p in d_params:
                    p.requires_grad_(True)
        return {
            "loss_d": loss_d.detach(),
            "loss_g": None if loss_g is None else loss_g.detach(),
            "d_real": self._mean_output(real_out),
            "d_fake": self._mean_output(fake_out),
        }

    def _check_cuda_graph(self) -> None:
        """Refuse the combinations a captured step cannot run (one line each)."""
        s = self.settings
        problem = None
        if self.device.type != "cuda":
            problem = f"cuda_graph needs a CUDA device, this trainer is on {self.device.type}"
        elif self.dist is not None:
            problem = "cuda_graph is not supported with distributed training"
        elif self.compiled:
            problem = "cuda_graph and compile cannot be combined (torch.compile brings its own graphs)"
        elif self.precision == "fp16":
            problem = "cuda_graph does not support fp16 (its gradient scaler checks on the host)"
        elif s.gp_weight or s.r1_gamma:
            problem = "cuda_graph does not support gradient penalties (gp_weight / r1_gamma)"
        if problem:
            raise ConfigError(f"{problem}; train without cuda_graph (drop --cuda-graph).")

    # ------------------------------------------------------------------ sampling

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, *, batch_size: int = 256) -> torch.Tensor:
        """Generate ``n`` images in [0, 1] (generator in eval mode, then back as it was).

        Args:
            n: number of images.
            seed: seed of a private generator for the latents (torch's global RNG is not
                touched); None draws from the global CPU generator.
            batch_size: images generated per forward pass.

        Returns:
            ``(n, C, H, W)`` float tensor on the CPU, values in [0, 1].
        """
        if n < 1:
            raise ConfigError(f"n must be >= 1, got {n}.")
        gen = None if seed is None else torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.settings.z_dim, generator=gen)
        return self.render(z, batch_size=batch_size)

    @torch.no_grad()
    def render(self, z: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
        """Images in [0, 1] for the given latents (eval mode, then the previous mode back)."""
        from .export import generate

        return ((generate(self.generator, z, device=self.device, batch_size=batch_size) + 1) / 2).clamp_(0, 1)

    # ------------------------------------------------------------------ fitting

    def _as_batches(self, data: Any) -> Any:
        """Turn what the user gave into something iterable over batches, once per epoch.

        Under torchrun each rank gets its share of every global batch; a plain iterable of
        batches is used as given (on every rank).
        """
        from ..data import BatchLoader, load_images

        bs, ctx = self.settings.batch_size, self.dist
        if isinstance(data, (str, os.PathLike)):
            with _dist.main_process_first(ctx):  # rank 0 fills the cache, then the others read it
                data = load_images(data, image_size=self.settings.image_size, channels=self.settings.channels)
        if isinstance(data, torch.Tensor) or hasattr(data, "images"):
            images = data if isinstance(data, torch.Tensor) else data.images
            self._check_images(images.shape[1:])
            self._train_images = images  # the default reference of evaluations
            if ctx is not None:
                return _dist.ShardedBatchLoader(images, bs, rank=ctx.rank, world_size=ctx.world_size,
                                                seed=self.data_seed, device=self.device)
            return BatchLoader(images, bs, shuffle=True, seed=self.data_seed, device=self.device)
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

    def fit(self, data: Any, *, epochs: int | None = None, max_steps: int | None = None) -> Trainer:
        """Train over ``data`` for ``epochs`` epochs (the recipe's by default) or ``max_steps`` steps.

        After every epoch and at the end it renders the fixed-latent sample grid and the
        loss curve, writes the metrics log and saves ``checkpoints/last.pt`` (and
        ``checkpoints/epoch_NNNN.pt`` every ``checkpoint_every`` epochs) under ``out_dir``.
        A resumed trainer continues where it stopped (same epoch, same batch).
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

        Returns:
            The trainer.
        """
        epochs = self.settings.epochs if epochs is None else epochs
        loader = self._as_batches(data)
        use_bn = _has_batchnorm(self.generator, self.discriminator)
        if use_bn:  # every batch of one image: refuse now rather than skip them all
            check_batchnorm_batches(loader)
        self._t0 = time.perf_counter()
        previous_handler = self._install_sigint()
        bar = None
        try:
            if self._evaluating and self.step == 0 and not self.eval_history:
                self.evaluate_now()  # where training starts from
            while self.epoch < epochs and not self._done(max_steps):
                if hasattr(loader, "set_epoch"):
                    loader.set_epoch(self.epoch)
                total = len(loader) if hasattr(loader, "__len__") else None
                bar = self._bar(total)
                for batch in self._iter_from(loader, self.batch_index):
                    if self._done(max_steps):  # checked first, so a last batch still closes its epoch
                        break
                    real = _first_tensor(batch)
                    if use_bn and real.shape[0] == 1:
                        warnings.warn(
                            f"skipping a batch of one image at epoch {self.epoch + 1} (BatchNorm "
                            "cannot train on it); use a batch size that does not leave one image.",
                            stacklevel=2,
                        )
                        self.batch_index += 1
                        continue
                    self._record(self._guarded_step(real))
                    if bar is not None:
                        bar.update(1)
                    if len(self._pending) >= self.log_every:
                        self._flush(bar)
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
                    self._end_of_epoch()
                if bar is not None:
                    bar.close()
                    bar = None
            if not (self.batch_index == 0 and self._last_saved_step == self.step):
                self._finish(reason="end")
        except BaseException:
            if self.dist is not None:  # leave the group at once: the other ranks fail, not hang
                _dist.destroy_distributed()
            raise
        finally:
            if bar is not None:
                bar.close()
            self._restore_sigint(previous_handler)
        return self

    def _guarded_step(self, real: torch.Tensor) -> dict[str, torch.Tensor | None]:
        try:
            return self.train_step(real)
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
        """Read pending losses back in one transfer, check them, log them."""
        if not self._pending:
            return
        nan = torch.tensor(float("nan"), device=self.device)
        rows = torch.stack(
            [
                torch.stack([o["loss_d"].float(), nan if o["loss_g"] is None else o["loss_g"].float(),
                             o["d_real"].float(), o["d_fake"].float()])
                for _, _, o in self._pending
            ]
        )
        if self.dist is not None:  # log the global batch: the mean over ranks (NaN if any has one)
            rows = self.dist.all_reduce(rows, "mean")
        rows = rows.cpu().tolist()
        elapsed = self._elapsed_before + time.perf_counter() - self._t0
        records = []
        for (step, epoch, out), (ld, lg, dr, df) in zip(self._pending, rows):
            bad = not math.isfinite(ld) or (out["loss_g"] is not None and not math.isfinite(lg))
            if bad:
                raise self._non_finite(step, f"loss_d={ld}, loss_g={lg}")
            self.history.append([float(step), float(epoch), ld, lg, dr, df])
            records.append(
                {"step": step, "epoch": epoch, "loss_d": ld, "loss_g": None if out["loss_g"] is None else lg,
                 "d_real": dr, "d_fake": df, "seconds": round(elapsed, 3)}
            )
        self._pending.clear()
        if self.out_dir is not None and self.is_main:
            MetricsLog(self.out_dir / "metrics.jsonl").write(records)
        if bar is not None:
            last = self.history[-1]
            post = {"loss_d": f"{last[2]:.4f}", "D(x)": f"{last[4]:.3f}", "D(G(z))": f"{last[5]:.3f}"}
            g = [h[3] for h in self.history[-self.log_every:] if math.isfinite(h[3])]
            if g:
                post["loss_g"] = f"{g[-1]:.4f}"
            bar.set_postfix(post, refresh=False)

    def _write_artifacts(self, tag: str) -> dict[str, Path]:
        if self.out_dir is None or not self.is_main:
            return {}
        grid = self.settings.sample_grid
        paths = {
            "samples": save_grid(self.render(self.z_sample), self.out_dir / "samples" / f"{tag}.png", grid),
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
            self.generator,
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
        self.eval_history.append(record)
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
                self.save(self.out_dir / "checkpoints" / f"epoch_{self.epoch:04d}.pt")

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
            "g_steps": self.g_steps,
            "rng_cpu": torch.get_rng_state(),
            "rng_cuda": list(cuda_rng),
            "z_sample": self.z_sample,
            "data_seed": self.data_seed,
            "history": torch.tensor(self.history, dtype=torch.float64).reshape(-1, len(HISTORY_COLUMNS)),
            "eval_history": [dict(r) for r in self.eval_history],
            "elapsed": self._elapsed_before + time.perf_counter() - self._t0,
            "trainer": {"precision": self.precision, "channels_last": self.channels_last,
                        "latents": self.latents, "compile": self.compiled,
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
        self.z_sample = ckpt["z_sample"].clone()
        self.data_seed = int(ckpt.get("data_seed", self.data_seed))
        self.history = ckpt["history"].tolist()
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

        The preset must be registered in this process (built-in ones always are).

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
        ckpt = load_checkpoint(path)
        try:
            recipe = get_preset(ckpt["preset"], **ckpt.get("overrides", {}))
        except ConfigError as err:
            raise CheckpointError(f"cannot rebuild the recipe of {path}: {err}") from None
        trainer = cls(recipe, device=device, out_dir=out_dir, z_sample=ckpt["z_sample"], **kwargs)
        trainer.load_state_dict(ckpt, source=str(path))
        trainer._last_checkpoint = Path(path)
        return trainer

    # ------------------------------------------------------------------ export

    def export_generator(self, path: str | os.PathLike) -> Path:
        """Write the generator's weights to a ``.safetensors`` file (with its preset).

        Args:
            path: the file to write (atomically).

        Returns:
            The path written; load it with :func:`gankit.load_generator`.
        """
        from .export import export_generator

        return export_generator(self.generator, self.recipe, path)
