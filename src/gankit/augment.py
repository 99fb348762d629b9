"""Differentiable augmentation of the discriminator's inputs: DiffAugment and ADA.

A discriminator trained on few images memorises them; augmenting *every* image it sees --
real and fake, in the discriminator's and the generator's step -- with a differentiable
transform keeps it from doing so without leaking the augmentation into the generated
images (Zhao et al. 2020; Karras et al. 2020). An :class:`Augmentation` is given to the
step, ``GANStep(..., augment=DiffAugment("color,translation"))``, and applied by
:meth:`gankit.Trainer.score` to whatever the step scores, so regularisers that take input
gradients through ``ctx.score`` (R1, R2, GP) take them through the augmentation, as
StyleGAN2-ADA does.

* :class:`DiffAugment` -- Zhao et al. 2020's policies by name: ``color`` (brightness
  ``+ U(-0.5, 0.5)``, saturation ``x U(0, 2)``, contrast ``x U(0.5, 1.5)``), ``translation``
  (up to 1/8 of the side, zero padding) and ``cutout`` (one zeroed square of half the side),
  composable as ``"color,translation,cutout"``.
* :class:`ADA` -- Karras et al. 2020's pipeline (x-flip, 90-degree rotations, integer
  translation, isotropic and anisotropic scaling, arbitrary rotation, fractional
  translation; brightness, contrast, luma flip, hue rotation, saturation: the paper's
  ``bgc`` set), each transform applied to an image with probability ``p``, and ``p``
  adjusted from the overfitting heuristic ``r_t = E[sign(D(x_real))]``: every ``interval``
  discriminator steps, ``p <- clip(p + sign(r_t - target) * images / speed_images, 0, 1)``,
  so ``p`` can go from 0 to 1 in ``speed_images`` images (500k in the paper).

Both are identity at ``p = 0`` (bitwise: the images are returned as they are) and keep
shapes; randomness comes from torch's global RNG on the images' device (checkpointed by the
trainer, so resumed runs draw the same augmentations).

Example:
    >>> import torch
    >>> aug = DiffAugment("color,translation")
    >>> aug(torch.zeros(2, 3, 8, 8)).shape
    torch.Size([2, 3, 8, 8])
    >>> ADA(p=0.0)(torch.ones(1, 3, 4, 4)).equal(torch.ones(1, 3, 4, 4))
    True
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .errors import ConfigError

if TYPE_CHECKING:  # pragma: no cover
    from .train.trainer import Trainer

__all__ = ["Augmentation", "DiffAugment", "ADA", "DIFF_AUGMENT_POLICIES", "ADA_TRANSFORMS"]


def _check_p(p: float, who: str) -> float:
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
        raise ConfigError(f"{who}: p must be a probability in [0, 1], got {p!r}.")
    return float(p)


class Augmentation(ABC):
    """The discriminator's input augmentation, as the step and the engine see it.

    Subclasses implement :meth:`augment`; the hooks :meth:`observe` and :meth:`update` let
    an augmentation adapt to the discriminator (ADA) and log what it does.

    Args:
        p: the probability of augmenting an image (per transform); 0 returns the images
            untouched. A schedule sets it as ``"<name>.p"``.

    Attributes:
        name: the prefix of its logged values and schedule targets.
    """

    name: str = "augment"
    #: Whether it can run inside a captured CUDA graph (the trainer refuses it otherwise).
    graph_safe: bool = False

    def __init__(self, p: float = 1.0) -> None:
        self.p = _check_p(p, type(self).__name__)

    def __call__(self, x: Tensor) -> Tensor:
        """Augment a batch ``(N, C, H, W)``; the images themselves when ``p`` is 0."""
        if self.p <= 0.0:
            return x
        return self.augment(x)

    @abstractmethod
    def augment(self, x: Tensor) -> Tensor:
        """The augmented batch (called only with ``p > 0``); differentiable in ``x``."""

    def observe(self, real_scores: Tensor) -> None:  # noqa: B027 - optional hook
        """Called by the step with the (detached) discriminator scores of the real images of
        every discriminator step. Default: nothing."""

    def update(self, trainer: Trainer) -> dict[str, Tensor]:
        """Called after every discriminator update; returns values to log by name."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State to checkpoint (saved with the step's state)."""
        return {"p": self.p}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict`."""
        self.p = float(state.get("p", self.p))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(p={self.p})"


def _chosen(n: int, p: float, device: torch.device) -> Tensor | None:
    """Which images a transform applies to (None: all of them, at p = 1)."""
    return None if p >= 1.0 else torch.rand(n, device=device) < p


def _where(chosen: Tensor | None, new: Tensor, old: Tensor) -> Tensor:
    return new if chosen is None else torch.where(chosen.view(-1, 1, 1, 1), new, old)


# --- DiffAugment (Zhao et al. 2020) ---------------------------------------------------------


def _brightness(x: Tensor, p: float, **_: float) -> Tensor:
    shift = torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) - 0.5
    return _where(_chosen(x.shape[0], p, x.device), x + shift, x)


def _saturation(x: Tensor, p: float, **_: float) -> Tensor:
    mean = x.mean(dim=1, keepdim=True)
    factor = torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) * 2
    return _where(_chosen(x.shape[0], p, x.device), (x - mean) * factor + mean, x)


def _contrast(x: Tensor, p: float, **_: float) -> Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    factor = torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device) + 0.5
    return _where(_chosen(x.shape[0], p, x.device), (x - mean) * factor + mean, x)


def _translation(x: Tensor, p: float, *, translation_ratio: float = 0.125, **_: float) -> Tensor:
    n, _, h, w = x.shape
    sy, sx = int(h * translation_ratio + 0.5), int(w * translation_ratio + 0.5)
    if sy == 0 and sx == 0:
        return x
    ty = torch.randint(-sy, sy + 1, (n, 1, 1), device=x.device)
    tx = torch.randint(-sx, sx + 1, (n, 1, 1), device=x.device)
    chosen = _chosen(n, p, x.device)
    if chosen is not None:  # a zero shift indexes every pixel where it is: exactly the image
        ty, tx = ty * chosen.view(n, 1, 1), tx * chosen.view(n, 1, 1)
    # out[i, j] = x[i - ty, j - tx], zero outside: index the zero-padded image
    rows = torch.arange(h, device=x.device).view(1, h, 1) - ty + sy
    cols = torch.arange(w, device=x.device).view(1, 1, w) - tx + sx
    padded = F.pad(x, [sx, sx, sy, sy])
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def _cutout(x: Tensor, p: float, *, cutout_ratio: float = 0.5, **_: float) -> Tensor:
    n, _, h, w = x.shape
    ch, cw = int(h * cutout_ratio + 0.5), int(w * cutout_ratio + 0.5)
    # the square's centre, as in the paper's code (a square may be clipped at the border)
    cy = torch.randint(0, h + (1 - ch % 2), (n, 1, 1), device=x.device) - ch // 2
    cx = torch.randint(0, w + (1 - cw % 2), (n, 1, 1), device=x.device) - cw // 2
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (rows >= cy) & (rows < cy + ch) & (cols >= cx) & (cols < cx + cw)
    chosen = _chosen(n, p, x.device)
    if chosen is not None:
        inside = inside & chosen.view(n, 1, 1)
    return x * (~inside).unsqueeze(1).to(x.dtype)


#: DiffAugment's policies: name -> transforms, applied in order.
DIFF_AUGMENT_POLICIES: dict[str, tuple[Callable[..., Tensor], ...]] = {
    "color": (_brightness, _saturation, _contrast),
    "translation": (_translation,),
    "cutout": (_cutout,),
}


class DiffAugment(Augmentation):
    """DiffAugment (Zhao et al. 2020): differentiable colour, translation and cutout.

    Args:
        policy: comma-separated policy names (see :data:`DIFF_AUGMENT_POLICIES`), applied in
            the given order; the paper uses ``"color,translation,cutout"`` for small data
            and ``"translation"`` / ``"color,translation"`` otherwise.
        p: probability that each transform is applied to an image (1: always, the paper's).
        translation_ratio: largest shift, as a fraction of the side (1/8).
        cutout_ratio: side of the cut-out square, as a fraction of the side (1/2).
        name: prefix of schedule targets (``"diffaugment.p"``).

    Example:
        >>> import torch
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> x = torch.randn(4, 3, 16, 16, requires_grad=True)
        >>> DiffAugment("color,translation,cutout")(x).sum().backward()
        >>> x.grad.shape
        torch.Size([4, 3, 16, 16])
    """

    def __init__(self, policy: str = "color,translation,cutout", *, p: float = 1.0,
                 translation_ratio: float = 0.125, cutout_ratio: float = 0.5,
                 name: str = "diffaugment") -> None:
        super().__init__(p)
        names = [part.strip() for part in str(policy).split(",") if part.strip()]
        unknown = [n for n in names if n not in DIFF_AUGMENT_POLICIES]
        if not names or unknown:
            raise ConfigError(f"unknown DiffAugment policy {', '.join(unknown) or repr(policy)}; use a "
                              f"comma-separated list of {', '.join(DIFF_AUGMENT_POLICIES)}.")
        for key, value in (("translation_ratio", translation_ratio), ("cutout_ratio", cutout_ratio)):
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"DiffAugment {key} must be in [0, 1], got {value!r}.")
        self.policy = ",".join(names)
        self.translation_ratio, self.cutout_ratio = float(translation_ratio), float(cutout_ratio)
        self.name = name
        self._transforms = [f for n in names for f in DIFF_AUGMENT_POLICIES[n]]

    def augment(self, x: Tensor) -> Tensor:
        for transform in self._transforms:
            x = transform(x, self.p, translation_ratio=self.translation_ratio,
                          cutout_ratio=self.cutout_ratio)
        return x

    def __repr__(self) -> str:
        return f"DiffAugment({self.policy!r}, p={self.p})"


# --- ADA (Karras et al. 2020) ---------------------------------------------------------------

#: ADA's transforms, in the order they are applied (geometric ones, then colour ones).
ADA_TRANSFORMS = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac",
                  "brightness", "contrast", "lumaflip", "hue", "saturation")
_ADA_SETS = {"b": ADA_TRANSFORMS[:3], "bg": ADA_TRANSFORMS[:7], "bgc": ADA_TRANSFORMS,
             "c": ADA_TRANSFORMS[7:]}
# The paper's strengths (its appendix; StyleGAN2-ADA's defaults).
_XINT_MAX, _SCALE_STD, _ROTATE_MAX, _ANISO_STD, _XFRAC_STD = 0.125, 0.2, 1.0, 0.2, 0.125
_BRIGHTNESS_STD, _CONTRAST_STD, _HUE_MAX, _SATURATION_STD = 0.2, 0.5, 1.0, 1.0
# 90-degree rotations as exact integer matrices (no cos(pi / 2) rounding).
_ROT90 = ((1, 0, 0, 1), (0, -1, 1, 0), (-1, 0, 0, -1), (0, 1, -1, 0))


def _mat3(n: int, device: torch.device, a: Tensor, b: Tensor, c: Tensor, d: Tensor,
          tx: Tensor | None = None, ty: Tensor | None = None) -> Tensor:
    """Per-image 3x3 homogeneous matrices ``[[a, b, tx], [c, d, ty], [0, 0, 1]]``."""
    m = torch.zeros(n, 3, 3, device=device)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1], m[:, 2, 2] = a, b, c, d, 1.0
    if tx is not None:
        m[:, 0, 2], m[:, 1, 2] = tx, ty
    return m


class ADA(Augmentation):
    """Adaptive discriminator augmentation (Karras et al. 2020).

    Every transform of ``transforms`` is applied to an image with probability ``p``
    (arbitrary rotation twice, before and after the anisotropic scaling, each with
    ``1 - sqrt(1 - p)``, as in the paper). Geometric transforms are composed into one
    affine map per image and resampled once (bilinear, reflection padding); colour
    transforms into one affine colour map (3-channel images; others get brightness,
    contrast and luma flip). Images no transform touched are returned bitwise.

    With a ``target``, ``p`` adapts: the step passes the real scores of every discriminator
    step to :meth:`observe`; every ``interval`` discriminator updates, ``r_t`` (the mean
    sign of those scores, over every rank) moves ``p`` by ``sign(r_t - target) * images /
    speed_images`` (``images``: real images seen in the interval), clipped to ``[0, 1]``.
    ``p`` is logged as ``<name>_p`` (``ada_p``) every step and ``r_t`` as ``<name>_rt``
    when it is measured; both are checkpointed (with the partial statistics of the
    current interval, so a resumed run adapts bitwise the same).

    Args:
        p: the initial probability (0 in the paper).
        target: ``r_t`` to hold (0.6 in the paper); None: ``p`` is fixed (or scheduled as
            ``"ada.p"``).
        interval: discriminator updates between adjustments (4).
        speed_images: images in which ``p`` can go from 0 to 1 (500,000).
        transforms: ``"bgc"`` (the paper's default), ``"bg"``, ``"b"``, ``"c"`` or a
            comma-separated list of :data:`ADA_TRANSFORMS`.
        name: prefix of logged values and schedule targets.

    Example:
        >>> import torch
        >>> ada = ADA(p=0.5, target=0.6, interval=1, speed_images=100)
        >>> ada.observe(torch.ones(10))  # D is sure every real image is real: r_t = 1
        >>> ada.adjust(sign_sum=10.0, count=10, images=10), ada.p
        (1.0, 0.6)
    """

    def __init__(self, p: float = 0.0, *, target: float | None = 0.6, interval: int = 4,
                 speed_images: int = 500_000, transforms: str = "bgc", name: str = "ada") -> None:
        super().__init__(p)
        if target is not None and not -1.0 <= target <= 1.0:
            raise ConfigError(f"ADA target must be in [-1, 1] (an expected sign) or None, got {target!r}.")
        if isinstance(interval, bool) or not isinstance(interval, int) or interval < 1:
            raise ConfigError(f"ADA interval must be a positive integer, got {interval!r}.")
        if not speed_images > 0:
            raise ConfigError(f"ADA speed_images must be > 0, got {speed_images!r}.")
        names = list(_ADA_SETS[transforms]) if transforms in _ADA_SETS else [
            t.strip() for t in str(transforms).split(",") if t.strip()]
        unknown = [t for t in names if t not in ADA_TRANSFORMS]
        if not names or unknown:
            raise ConfigError(f"unknown ADA transform {', '.join(unknown) or repr(transforms)}; use bgc, bg, "
                              f"b, c or a comma-separated list of {', '.join(ADA_TRANSFORMS)}.")
        self.target, self.interval, self.speed_images = target, interval, speed_images
        self.transforms = tuple(t for t in ADA_TRANSFORMS if t in names)
        self.name = name
        self._sum: Tensor | None = None  # sum of the signs of the real scores of this interval
        self._carry = 0.0  # the same, restored from a checkpoint
        self._count = 0  # scores in the sum
        self._images = 0  # real images in the sum
        self._updates = 0  # discriminator updates seen
        self.rt: float | None = None  # the last measured r_t

    # ------------------------------------------------------------------ adaptation

    def observe(self, real_scores: Tensor) -> None:
        s = real_scores.detach().float().sign().sum()
        self._sum = s if self._sum is None else self._sum + s
        self._count += real_scores.numel()
        self._images += real_scores.shape[0] if real_scores.dim() else 1

    def adjust(self, *, sign_sum: float, count: int, images: int) -> float:
        """Move ``p`` from one interval's statistics; returns ``r_t``.

        Args:
            sign_sum: sum of ``sign(D(x_real))`` over the interval.
            count: number of scores summed.
            images: real images seen in the interval.
        """
        rt = sign_sum / max(count, 1)
        direction = (rt > self.target) - (rt < self.target)
        self.p = min(1.0, max(0.0, self.p + direction * images / self.speed_images))
        self.rt = rt
        return rt

    def update(self, trainer: Trainer) -> dict[str, Tensor]:
        self._updates += 1
        logs: dict[str, Tensor] = {}
        if self.target is not None and self._updates % self.interval == 0:
            local = self._carry + (0.0 if self._sum is None else float(self._sum))
            stats = torch.tensor([local, self._count, self._images], dtype=torch.float64,
                                 device=trainer.device)
            if trainer.dist is not None:  # every rank adapts to the global statistic: same p
                stats = trainer.dist.all_reduce(stats, "sum")
            sign_sum, count, images = stats.tolist()
            if count:
                rt = self.adjust(sign_sum=sign_sum, count=int(count), images=int(images))
                logs[f"{self.name}_rt"] = torch.tensor(rt, device=trainer.device)
            self._sum, self._carry, self._count, self._images = None, 0.0, 0, 0
        logs[f"{self.name}_p"] = torch.tensor(self.p, device=trainer.device)
        return logs

    def state_dict(self) -> dict[str, Any]:
        return {"p": self.p, "rt": self.rt, "updates": self._updates, "count": self._count,
                "images": self._images,
                "sign_sum": self._carry + (0.0 if self._sum is None else float(self._sum))}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.p = float(state.get("p", self.p))
        self.rt = state.get("rt")
        self._updates = int(state.get("updates", 0))
        self._count, self._images = int(state.get("count", 0)), int(state.get("images", 0))
        self._sum, self._carry = None, float(state.get("sign_sum", 0.0))

    # ------------------------------------------------------------------ the pipeline

    def augment(self, x: Tensor) -> Tensor:
        if any(t in self.transforms for t in ADA_TRANSFORMS[:7]):
            x = self._geometric(x)
        if any(t in self.transforms for t in ADA_TRANSFORMS[7:]):
            x = self._colour(x)
        return x

    def _draw(self, n: int, device: torch.device, p: float | None = None) -> Tensor:
        return torch.rand(n, device=device) < (self.p if p is None else p)

    def _geometric(self, x: Tensor) -> Tensor:
        n, _, h, w = x.shape
        dev = x.device
        one, zero = torch.ones(n, device=dev), torch.zeros(n, device=dev)
        # Sampling matrices (output -> input, normalised coordinates): a transform T applied
        # after the ones before it multiplies on the right by T^-1.
        inv = torch.eye(3, device=dev).repeat(n, 1, 1)
        touched = torch.zeros(n, dtype=torch.bool, device=dev)
        use = self.transforms
        if "xflip" in use:
            chosen = self._draw(n, dev) & (torch.rand(n, device=dev) < 0.5)
            inv = inv @ _mat3(n, dev, torch.where(chosen, -one, one), zero, zero, one)
            touched |= chosen
        if "rotate90" in use:
            k = torch.randint(0, 4, (n,), device=dev) * self._draw(n, dev)
            table = torch.tensor(_ROT90, dtype=torch.float32, device=dev)[(-k) % 4]  # R^-1 = R(-k)
            inv = inv @ _mat3(n, dev, table[:, 0], table[:, 1], table[:, 2], table[:, 3])
            touched |= k != 0
        if "xint" in use:
            chosen = self._draw(n, dev)
            t = (torch.rand(n, 2, device=dev) * 2 - 1) * _XINT_MAX
            px = torch.round(t[:, 0] * w) * chosen
            py = torch.round(t[:, 1] * h) * chosen
            inv = inv @ _mat3(n, dev, one, zero, zero, one, -2 * px / w, -2 * py / h)
            touched |= (px != 0) | (py != 0)
        p_rot = 1 - math.sqrt(max(0.0, 1 - self.p))
        for kind in ("scale", "rotate", "aniso", "rotate", "xfrac"):
            if kind not in use:
                continue
            chosen = self._draw(n, dev, p_rot if kind == "rotate" else None)
            if kind == "scale":
                s = torch.where(chosen, torch.exp2(torch.randn(n, device=dev) * _SCALE_STD), one)
                inv = inv @ _mat3(n, dev, 1 / s, zero, zero, 1 / s)
            elif kind == "aniso":
                s = torch.where(chosen, torch.exp2(torch.randn(n, device=dev) * _ANISO_STD), one)
                inv = inv @ _mat3(n, dev, 1 / s, zero, zero, s)
            elif kind == "rotate":
                theta = (torch.rand(n, device=dev) * 2 - 1) * math.pi * _ROTATE_MAX * chosen
                c, s = torch.cos(-theta), torch.sin(-theta)
                inv = inv @ _mat3(n, dev, c, -s, s, c)
            else:  # fractional translation, std 1/8 of the side
                t = torch.randn(n, 2, device=dev) * _XFRAC_STD * chosen.unsqueeze(1)
                inv = inv @ _mat3(n, dev, one, zero, zero, one, -2 * t[:, 0], -2 * t[:, 1])
            touched |= chosen
        grid = F.affine_grid(inv[:, :2, :].to(x.dtype), list(x.shape), align_corners=False)
        out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
        return torch.where(touched.view(n, 1, 1, 1), out, x)

    def _colour(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        dev = x.device
        rgb = c == 3
        use = self.transforms
        # x -> M x + o per image; each transform A, a composes as M <- A M, o <- A o + a.
        size = 3 if rgb else 1
        eye = torch.eye(size, device=dev)
        m = eye.repeat(n, 1, 1)
        o = torch.zeros(n, size, device=dev)
        v = torch.full((size,), 1 / math.sqrt(size), device=dev)  # the luma axis
        vv = torch.outer(v, v)
        touched = torch.zeros(n, dtype=torch.bool, device=dev)
        if "brightness" in use:
            chosen = self._draw(n, dev)
            b = torch.randn(n, device=dev) * _BRIGHTNESS_STD * chosen
            o = o + b.unsqueeze(1)
            touched |= chosen
        if "contrast" in use:
            chosen = self._draw(n, dev)
            s = torch.where(chosen, torch.exp2(torch.randn(n, device=dev) * _CONTRAST_STD),
                            torch.ones(n, device=dev)).view(n, 1, 1)
            m, o = s * m, s.view(n, 1) * o
            touched |= chosen
        if "lumaflip" in use:
            flip = (torch.randint(0, 2, (n,), device=dev) * self._draw(n, dev)).float().view(n, 1, 1)
            a = eye - 2 * vv * flip  # Householder reflection of the luma axis
            m, o = a @ m, (a @ o.unsqueeze(2)).squeeze(2)
            touched |= flip.view(n) != 0
        if rgb and "hue" in use:
            chosen = self._draw(n, dev)
            theta = ((torch.rand(n, device=dev) * 2 - 1) * math.pi * _HUE_MAX * chosen).view(n, 1, 1)
            k = 1 / math.sqrt(3)  # [v]_x, the cross-product matrix of the luma axis
            cross = torch.tensor([[0.0, -k, k], [k, 0.0, -k], [-k, k, 0.0]], device=dev)
            a = torch.cos(theta) * eye + torch.sin(theta) * cross + (1 - torch.cos(theta)) * vv
            m, o = a @ m, (a @ o.unsqueeze(2)).squeeze(2)
            touched |= chosen
        if rgb and "saturation" in use:
            chosen = self._draw(n, dev)
            s = torch.where(chosen, torch.exp2(torch.randn(n, device=dev) * _SATURATION_STD),
                            torch.ones(n, device=dev)).view(n, 1, 1)
            a = vv + (eye - vv) * s
            m, o = a @ m, (a @ o.unsqueeze(2)).squeeze(2)
            touched |= chosen
        m, o = m.to(x.dtype), o.to(x.dtype)
        if rgb:
            out = (m @ x.reshape(n, 3, h * w) + o.unsqueeze(2)).reshape(n, c, h, w)
        else:  # one scale and one offset for every channel
            out = x * m.view(n, 1, 1, 1) + o.view(n, 1, 1, 1)
        return torch.where(touched.view(n, 1, 1, 1), out, x)

    def __repr__(self) -> str:
        return f"ADA(p={self.p}, target={self.target}, transforms={','.join(self.transforms)!r})"
