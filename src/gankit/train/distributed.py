"""Multi-process training on ``torch.distributed``: DistributedDataParallel under torchrun.

gankit adds no launcher of its own. ``torchrun --nproc_per_node=N -m gankit train ...``
starts one process per device and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; a :class:`~gankit.Trainer` built in such a process
(``WORLD_SIZE`` > 1) calls :func:`init_distributed`, which joins the process group --
NCCL for CUDA devices, gloo for the CPU -- and the Trainer then wraps the generator and
the discriminator in two separate :class:`~torch.nn.parallel.DistributedDataParallel`
instances.

What the Trainer does with this module:

* the recipe's ``batch_size`` stays the *global* batch: each rank trains on
  ``batch_size // world_size`` images of it (:class:`ShardedBatchLoader` for image
  tensors, :class:`~torch.utils.data.DistributedSampler` for other datasets);
* every rank builds the same initial weights, then reseeds torch's global generators
  with :func:`rank_seed` so that latents (and dropout masks) differ between ranks;
* only rank 0 (:func:`is_main_process`) prints, logs and writes files.

The helpers (:func:`barrier`, :func:`broadcast_object`, :func:`all_reduce`, ...) are
no-ops or identities when no process group is initialised, so code that calls them runs
unchanged in a single process.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import hashlib
import inspect
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError

__all__ = [
    "DistributedContext",
    "ShardedBatchLoader",
    "SampledLoader",
    "DEFAULT_TIMEOUT_S",
    "all_reduce",
    "barrier",
    "broadcast_object",
    "convert_sync_batchnorm",
    "destroy_distributed",
    "distributed_requested",
    "get_context",
    "init_distributed",
    "is_main_process",
    "local_batch_size",
    "main_process_first",
    "rank_rng_states",
    "rank_seed",
    "seed_rank_streams",
    "set_rank_rng_states",
    "wrap_ddp",
]

#: Seconds a collective may wait for the other ranks before the job fails
#: (overridden by the environment variable ``GANKIT_DIST_TIMEOUT``).
DEFAULT_TIMEOUT_S = 600.0

_REDUCE_OPS = {"sum": "SUM", "max": "MAX", "min": "MIN", "mean": "SUM"}
_context: DistributedContext | None = None


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name} must be an integer, got {value!r}.") from None


def distributed_requested() -> bool:
    """Whether this process was started by a distributed launcher with several processes.

    True when ``WORLD_SIZE`` (set by ``torchrun``) is greater than 1, or when a process
    group with more than one rank is already initialised.

    Returns:
        True for a multi-process launch.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size() > 1
    return _env_int("WORLD_SIZE", 1) > 1


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands in the distributed job.

    Args:
        rank: global rank (0 .. world_size - 1).
        world_size: number of processes.
        local_rank: rank on this machine (selects the GPU).
        backend: ``"nccl"`` or ``"gloo"``.
        device: the device this rank trains on.
        owns_group: whether gankit initialised the process group (and so destroys it).
    """

    rank: int
    world_size: int
    local_rank: int
    backend: str
    device: torch.device
    owns_group: bool = True

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that prints and writes files."""
        return self.rank == 0

    def _tensor_device(self) -> torch.device:
        # NCCL reduces CUDA tensors only; gloo reduces CPU tensors.
        return self.device if self.backend == "nccl" else torch.device("cpu")

    def barrier(self) -> None:
        """Wait until every rank reaches this point."""
        if self.backend == "nccl":
            dist.barrier(device_ids=[self.device.index or 0])
        else:
            dist.barrier()

    def broadcast_object(self, obj: Any, src: int = 0) -> Any:
        """Send a picklable object from rank ``src`` to every rank.

        Args:
            obj: the object (only rank ``src``'s is used).
            src: the sending rank.

        Returns:
            Rank ``src``'s object, on every rank.
        """
        box = [obj]
        dist.broadcast_object_list(box, src=src, device=self._tensor_device())
        return box[0]

    def all_gather_object(self, obj: Any) -> list[Any]:
        """Collect one picklable object from every rank.

        Args:
            obj: this rank's object.

        Returns:
            The objects of ranks 0 .. world_size - 1, on every rank.
        """
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Reduce a tensor over all ranks.

        Args:
            tensor: the tensor (any device; moved to the backend's device and back).
            op: ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``.

        Returns:
            A new tensor with the reduced values, on ``tensor``'s device.
        """
        if op not in _REDUCE_OPS:
            raise ConfigError(f"op must be one of {', '.join(_REDUCE_OPS)}, got {op!r}.")
        work = tensor.detach().to(self._tensor_device(), copy=True)
        dist.all_reduce(work, op=getattr(dist.ReduceOp, _REDUCE_OPS[op]))
        if op == "mean":
            work /= self.world_size
        return work.to(tensor.device)

    def any(self, flag: bool) -> bool:
        """True on every rank when ``flag`` is true on at least one rank."""
        return bool(self.all_reduce(torch.tensor([float(flag)]), "max").item())

    def shutdown(self) -> None:
        """Leave the process group (destroying it when gankit created it)."""
        destroy_distributed()


def _pick_device(device: torch.device | str | None, local_rank: int) -> torch.device:
    if device is None or str(device) == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cpu":
        return torch.device("cpu")
    if dev.type != "cuda":
        raise ConfigError(
            f"distributed training runs on cuda or cpu devices, not {dev.type}; use --device cpu."
        )
    if not torch.cuda.is_available():
        raise ConfigError("device cuda was asked for but no CUDA GPU is available; use --device cpu.")
    count = torch.cuda.device_count()
    if count == 1:  # one GPU visible per process (e.g. CUDA_VISIBLE_DEVICES set per rank)
        return torch.device("cuda", 0)
    if local_rank >= count:
        raise ConfigError(
            f"LOCAL_RANK is {local_rank} but only {count} GPUs are visible on this machine; "
            f"start at most {count} processes per node (--nproc_per_node)."
        )
    return torch.device("cuda", local_rank)


def _timeout() -> datetime.timedelta:
    text = os.environ.get("GANKIT_DIST_TIMEOUT")
    seconds = DEFAULT_TIMEOUT_S
    if text:
        try:
            seconds = float(text)
        except ValueError:
            raise ConfigError(f"GANKIT_DIST_TIMEOUT must be seconds, got {text!r}.") from None
        if not seconds > 0:
            raise ConfigError(f"GANKIT_DIST_TIMEOUT must be > 0 seconds, got {text!r}.")
    return datetime.timedelta(seconds=seconds)


def init_distributed(
    backend: str | None = None,
    device: torch.device | str | None = None,
) -> DistributedContext:
    """Join (or create) the default process group from torchrun's environment.

    Reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` (and ``MASTER_ADDR`` /
    ``MASTER_PORT`` for the rendezvous). The device is ``cuda:LOCAL_RANK`` for CUDA (or
    ``cuda:0`` when each process sees a single GPU), else the CPU; the backend is NCCL
    for CUDA and gloo for the CPU. Collectives time out after ``GANKIT_DIST_TIMEOUT``
    seconds (default 600), so a rank that died cannot leave the others waiting forever.
    A process group that is already initialised (by the caller) is reused as it is.

    Args:
        backend: ``"nccl"``, ``"gloo"`` or None (chosen from the device).
        device: ``"auto"``/None (CUDA when available, else CPU), ``"cuda"`` or ``"cpu"``.

    Returns:
        The :class:`DistributedContext` of this process (also kept for
        :func:`get_context`).

    Raises:
        ConfigError: for a missing rendezvous address, an unknown backend or a device
            that cannot be used.
    """
    global _context
    if not dist.is_available():
        raise ConfigError("this PyTorch build has no torch.distributed; train in one process.")
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = _pick_device(device, local_rank)
    if dist.is_initialized():
        if _context is not None and _context.world_size == dist.get_world_size():
            return _context
        backend = dist.get_backend()
        owns = False
    else:
        backend = backend or ("nccl" if dev.type == "cuda" and dist.is_nccl_available() else "gloo")
        if backend not in ("nccl", "gloo"):
            raise ConfigError(f"backend must be 'nccl' or 'gloo', got {backend!r}.")
        if backend == "nccl" and dev.type != "cuda":
            raise ConfigError("the nccl backend needs CUDA devices; use gloo on the CPU.")
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE") if k not in os.environ]
        if missing:
            raise ConfigError(
                f"a distributed launch needs {', '.join(missing)} in the environment; "
                "start the job with torchrun (e.g. torchrun --standalone --nproc_per_node=2 -m gankit train ...)."
            )
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group(
            backend=backend,
            init_method="env://",
            rank=_env_int("RANK", 0),
            world_size=_env_int("WORLD_SIZE", 1),
            timeout=_timeout(),
        )
        owns = True
        atexit.register(destroy_distributed)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    _context = DistributedContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=local_rank,
        backend=str(backend),
        device=dev,
        owns_group=owns,
    )
    return _context


def get_context() -> DistributedContext | None:
    """The context set up by :func:`init_distributed`, or None outside a distributed job."""
    if _context is not None and dist.is_available() and dist.is_initialized():
        return _context
    return None


def destroy_distributed() -> None:
    """Leave the process group; a no-op when none is initialised or gankit did not create it.

    Called automatically at interpreter exit, and by the Trainer when training fails, so
    that a rank that raised does not keep the others waiting.
    """
    global _context
    ctx, _context = _context, None
    if ctx is not None and not ctx.owns_group:
        return
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def is_main_process() -> bool:
    """True in a single process and on rank 0 of a distributed job.

    Before the process group exists this reads torchrun's ``RANK``, so command-line code
    can decide what to print before the Trainer is built.
    """
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    return _env_int("RANK", 0) == 0


def barrier() -> None:
    """Wait for every rank (no-op outside a distributed job)."""
    ctx = get_context()
    if ctx is not None:
        ctx.barrier()
    elif dist.is_available() and dist.is_initialized():
        dist.barrier()


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank (``obj`` itself outside a distributed job).

    Args:
        obj: a picklable object.
        src: the sending rank.

    Returns:
        The object of rank ``src``.
    """
    ctx = get_context()
    return obj if ctx is None else ctx.broadcast_object(obj, src)


def all_reduce(tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce ``tensor`` over ranks (a copy of it outside a distributed job).

    Args:
        tensor: the values of this rank.
        op: ``"sum"``, ``"mean"``, ``"max"`` or ``"min"``.

    Returns:
        A new tensor with the reduced values.
    """
    ctx = get_context()
    return tensor.detach().clone() if ctx is None else ctx.all_reduce(tensor, op)


@contextlib.contextmanager
def main_process_first(ctx: DistributedContext | None = None) -> Iterator[None]:
    """Run the block on rank 0 first, then on the other ranks (for shared caches).

    Args:
        ctx: the context; None uses :func:`get_context` (a plain block outside a job).
    """
    ctx = ctx or get_context()
    if ctx is None:
        yield
        return
    if not ctx.is_main:
        ctx.barrier()
    try:
        yield
    finally:
        if ctx.is_main:
            ctx.barrier()


def rank_seed(seed: int, rank: int) -> int:
    """The seed of rank ``rank``'s random stream, derived from the run's seed.

    Args:
        seed: the run's seed (``torch.initial_seed()`` in the Trainer).
        rank: the global rank.

    Returns:
        A 63-bit seed, different for every rank and stable across runs.

    Example:
        >>> rank_seed(0, 0) != rank_seed(0, 1)
        True
    """
    digest = hashlib.sha256(f"gankit-rank-rng:{seed}:{rank}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def wrap_ddp(
    module: nn.Module,
    ctx: DistributedContext,
    *,
    broadcast_buffers: bool = False,
) -> nn.parallel.DistributedDataParallel:
    """Wrap one network in its own DistributedDataParallel.

    The wrapper broadcasts rank 0's parameters and buffers once, here, and averages
    gradients over ranks in every backward pass. With ``broadcast_buffers=False`` (the
    default) buffers are not broadcast again before each forward pass, so each rank then
    keeps its own BatchNorm running statistics.

    Args:
        module: the network, already on ``ctx.device``.
        ctx: the distributed context.
        broadcast_buffers: re-broadcast rank 0's buffers before every forward pass.

    Returns:
        The wrapped network.
    """
    ids = [ctx.device.index or 0] if ctx.device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel
    # PyTorch >= 2.14 renames broadcast_buffers to forward_sync_buffers (buffers are
    # still broadcast once at construction).
    sync_kw = ("forward_sync_buffers" if "forward_sync_buffers" in inspect.signature(ddp).parameters
               else "broadcast_buffers")
    return ddp(module, device_ids=ids, output_device=None if ids is None else ids[0],
               **{sync_kw: broadcast_buffers})


def convert_sync_batchnorm(module: nn.Module, ctx: DistributedContext) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` by :class:`~torch.nn.SyncBatchNorm`.

    The parameters and buffers are kept (the same tensors), so optimizers built over the
    module stay valid.

    Args:
        module: the network.
        ctx: the distributed context (SyncBatchNorm needs CUDA).

    Returns:
        The converted module.

    Raises:
        ConfigError: on the CPU, where PyTorch has no SyncBatchNorm.
    """
    if ctx.device.type != "cuda":
        raise ConfigError(
            "sync_batchnorm needs CUDA devices (PyTorch's SyncBatchNorm does not run on the CPU); "
            "drop it to keep per-rank BatchNorm statistics."
        )
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


class ShardedBatchLoader:
    """Every rank's share of the global batches of a uint8 image tensor.

    All ranks compute the same seeded permutation as :class:`gankit.data.BatchLoader`
    (same ``seed``, same epoch, so the same global batches) and each rank takes its own
    contiguous slice of each global batch: rank ``r`` of ``W`` gets images
    ``[r*m, (r+1)*m)`` of a global batch of ``M`` images, ``m = M // W``. Every rank so
    gets the same number of images (DistributedDataParallel averages the ranks'
    gradients, so equal shares make that the gradient of the global batch); the at most
    ``W - 1`` images of a short last batch that do not split evenly are left out, and a
    last batch of fewer than ``W`` images is skipped. Positions, ``set_epoch``,
    ``iter_from`` and ``state_dict`` count global batches, so a checkpoint resumes
    exactly, under any number of processes.

    Args:
        data: an :class:`~gankit.data.ImageTensorDataset` or a uint8 tensor (N, C, H, W).
        batch_size: the global batch size (divisible by ``world_size``).
        rank: this process's rank.
        world_size: number of processes.
        shuffle: random order per epoch.
        seed: seed of the per-epoch permutations (the same on every rank).
        device: where batches are returned.
        labels: one integer class per image (a ``(N,)`` tensor), or True for the data's
            own (:attr:`~gankit.data.ImageTensorDataset.labels`): every rank's share is then
            an ``(images, labels)`` pair, sliced from the same rows.

    Example:
        >>> images = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1)
        >>> shards = [ShardedBatchLoader(images, 4, rank=r, world_size=2, shuffle=False)
        ...           for r in (0, 1)]
        >>> [next(iter(s)).shape[0] for s in shards]
        [2, 2]
    """

    def __init__(
        self,
        data: Any,
        batch_size: int,
        *,
        rank: int,
        world_size: int,
        shuffle: bool = True,
        seed: int = 0,
        device: torch.device | str | None = None,
        labels: torch.Tensor | bool | None = None,
    ) -> None:
        from ..data import BatchLoader

        if world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
        local_batch_size(batch_size, world_size)
        # The global loader fixes the order and where the images live; batches are cut here.
        self._global = BatchLoader(data, batch_size, shuffle=shuffle, seed=seed, device=device, labels=labels)
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.device = self._global.device

    @property
    def images(self) -> torch.Tensor:
        """The uint8 images (N, C, H, W)."""
        return self._global.images

    @property
    def num_images(self) -> int:
        """Number of images in the data."""
        return self._global.num_images

    @property
    def labels(self) -> torch.Tensor | None:
        """The class of every image (N,), or None for unlabelled data."""
        return self._global.labels

    @property
    def local_batch_size(self) -> int:
        """Images per rank in a full batch."""
        return self.batch_size // self.world_size

    @property
    def epoch(self) -> int:
        """The epoch the next batch comes from."""
        return self._global.epoch

    @property
    def batch_index(self) -> int:
        """Index within its epoch of the next (global) batch."""
        return self._global.batch_index

    def __len__(self) -> int:
        """Global batches per epoch (a last batch smaller than ``world_size`` is skipped)."""
        n = self.num_images
        full, rest = divmod(n, self.batch_size)
        return full + (1 if rest >= self.world_size else 0)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        """Choose where the next iteration starts.

        Args:
            epoch: epoch number (fixes the order with ``seed``).
            start_batch: first global batch to yield, ``0 <= start_batch <= len(self)``.
        """
        if epoch < 0 or not 0 <= start_batch <= len(self):
            raise ValueError(f"need epoch >= 0 and 0 <= start_batch <= {len(self)}, got "
                             f"epoch={epoch}, start_batch={start_batch}")
        self._global.set_epoch(epoch, start_batch)

    def permutation(self, epoch: int) -> torch.Tensor:
        """The order of the images in an epoch (the same on every rank)."""
        return self._global.permutation(epoch)

    def shard_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """This rank's slice of the image indices of one global batch."""
        per = rows.shape[0] // self.world_size
        return rows[self.rank * per:(self.rank + 1) * per]

    def iter_from(self, start_batch: int, epoch: int | None = None) -> Iterator[Any]:
        """Iterate an epoch from global batch ``start_batch`` (for resuming mid-epoch).

        Args:
            start_batch: first global batch to yield.
            epoch: epoch to run; default the current one.

        Returns:
            An iterator over this rank's shares of batches ``start_batch ..``.
        """
        self.set_epoch(self.epoch if epoch is None else epoch, start_batch)
        return iter(self)

    def __iter__(self) -> Iterator[Any]:
        """This rank's shares of the rest of the current epoch, then the next epoch."""
        return self._run(self.epoch, self.batch_index)

    def _run(self, epoch: int, start: int) -> Iterator[Any]:
        from ..data import normalize_uint8

        images = self.images
        order = self.permutation(epoch)
        if images.device.type != "cpu":
            order = order.to(images.device)
        count = len(self)
        for index in range(start, count):
            rows = self.shard_rows(order[index * self.batch_size:(index + 1) * self.batch_size])
            batch = normalize_uint8(images.index_select(0, rows).to(self.device, non_blocking=True))
            if self.labels is not None:
                batch = (batch, self.labels.index_select(0, rows.to(self.labels.device)).to(self.device))
            # As BatchLoader: the position moves before the batch is handed over.
            if index + 1 < count:
                self._global.set_epoch(epoch, index + 1)
            else:
                self._global.set_epoch(epoch + 1, 0)
            yield batch
        if start >= count:
            self._global.set_epoch(epoch + 1, 0)

    def state_dict(self) -> dict[str, Any]:
        """The position to resume from (in global batches)."""
        return self._global.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a position saved by :meth:`state_dict`."""
        self._global.load_state_dict(state)


class SampledLoader:
    """A DataLoader over this rank's share of a dataset (a DistributedSampler), with ``set_epoch``.

    Args:
        dataset: a map-style dataset.
        batch_size: the global batch size (divisible by ``world_size``).
        rank: this process's rank.
        world_size: number of processes.
        seed: the sampler's shuffling seed (the same on every rank).
    """

    def __init__(self, dataset: Any, batch_size: int, *, rank: int, world_size: int, seed: int = 0) -> None:
        from torch.utils.data import DataLoader, DistributedSampler

        per_rank = local_batch_size(batch_size, world_size)
        self.sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed)
        self.loader = DataLoader(dataset, batch_size=per_rank, sampler=self.sampler)

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle for ``epoch`` (the same order on every rank)."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        """Batches per epoch on this rank (the same on every rank)."""
        return len(self.loader)

    def __iter__(self) -> Iterator[Any]:
        """This rank's batches of the epoch."""
        return iter(self.loader)


def rank_rng_states() -> dict[str, Any]:
    """This rank's torch RNG states: the CPU one and, once CUDA is in use, the current GPU's.

    Returns:
        ``{"cpu": ByteTensor, "cuda": [ByteTensor] or []}``.
    """
    cuda = [torch.cuda.get_rng_state()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
    return {"cpu": torch.get_rng_state(), "cuda": cuda}


def set_rank_rng_states(state: dict[str, Any]) -> None:
    """Restore states from :func:`rank_rng_states` (the CUDA one on the current GPU).

    Args:
        state: the dictionary :func:`rank_rng_states` returned on this rank.
    """
    torch.set_rng_state(state["cpu"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"][0])


def seed_rank_streams(ctx: DistributedContext, seed: int) -> None:
    """Reseed torch's global generators (CPU and CUDA) with this rank's :func:`rank_seed`.

    Args:
        ctx: the distributed context (its rank).
        seed: the run's seed.
    """
    torch.manual_seed(rank_seed(seed, ctx.rank))


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Images per rank for a global ``batch_size``.

    Args:
        batch_size: the recipe's (global) batch size.
        world_size: number of processes.

    Returns:
        ``batch_size // world_size``.

    Raises:
        ConfigError: when it does not divide evenly.
    """
    if batch_size % world_size:
        raise ConfigError(
            f"batch_size {batch_size} does not split over {world_size} processes; "
            f"use a multiple of {world_size} (--set batch_size=...)."
        )
    return batch_size // world_size

