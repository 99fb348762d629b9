"""``toy-faces``: procedurally drawn cartoon faces, generated in memory from a seed.

Each face is a stack of soft-edged shapes (background gradient, shoulders, hair, neck, ears,
face, fringe, eyes with irises and pupils, eyebrows, nose, mouth, blush) whose colours, sizes
and positions are drawn per image. All images of a block are drawn at once with tensor ops
over (B, H, W) grids, so there is no Python loop per image or per pixel.

Image ``i`` depends only on ``(seed, i)`` and the image size: parameters are drawn in blocks of
:data:`BLOCK` images, each from its own generator seeded with ``(seed, block index)``, so the
first 100 faces of ``n=100`` and of ``n=10_000`` are the same.
"""

from __future__ import annotations

import hashlib

import torch

from gankit.data.convert import rgb_to_gray_uint8

__all__ = [
    "generate_toy_faces",
    "toy_faces_labels",
    "TOY_FACES_CLASSES",
    "TOY_FACES_NAME",
    "DEFAULT_NUM_TOY_FACES",
    "BLOCK",
]

#: The built-in dataset name.
TOY_FACES_NAME = "toy-faces"
#: Images generated when no count is given.
DEFAULT_NUM_TOY_FACES = 10_000
#: Images whose parameters share one random generator.
BLOCK = 256
# Images rendered together: small enough that the (B, 3, H, W) canvas stays in cache.
_RENDER_CHUNK = 32

_SKIN = torch.tensor([
    [255, 224, 196], [247, 205, 170], [236, 188, 145], [224, 172, 105],
    [198, 134, 66], [160, 102, 58], [120, 76, 45], [88, 56, 36],
]) / 255.0
_HAIR = torch.tensor([
    [28, 22, 18], [62, 40, 24], [110, 70, 38], [160, 110, 60], [225, 195, 120],
    [170, 80, 35], [185, 185, 190], [40, 40, 60],
]) / 255.0
#: The classes of ``toy-faces`` (:func:`toy_faces_labels`): the eight hair colours of the
#: palette, then hair of a random colour, then bald.
TOY_FACES_CLASSES = ("black", "dark-brown", "brown", "light-brown", "blond", "auburn", "grey", "blue-black",
                     "wild", "bald")
# The columns of _Params that decide the hair (see _render's draw order): the palette
# index, the chance of a wild colour, the chance of baldness.
_HAIR_COLUMN, _WILD_COLUMN, _BALD_COLUMN = 20, 24, 29

_IRIS = torch.tensor([
    [80, 50, 25], [40, 90, 160], [50, 120, 70], [30, 25, 20], [120, 110, 60], [90, 120, 150],
]) / 255.0


def _block_generator(seed: int, block: int) -> torch.Generator:
    digest = hashlib.sha256(f"gankit-toy-faces:{seed}:{block}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


class _Params:
    """Per-image drawing parameters, each a (B, 1, 1) tensor or a (B, 3, 1, 1) colour."""

    COLUMNS = 96

    def __init__(self, uniform: torch.Tensor) -> None:
        self._u = uniform  # (B, COLUMNS) values in [0, 1), consumed column by column
        self._col = 0
        self.count = uniform.shape[0]

    @classmethod
    def draw(cls, gen: torch.Generator, count: int) -> _Params:
        return cls(torch.rand((count, cls.COLUMNS), generator=gen))

    def slice(self, start: int, stop: int) -> _Params:
        return _Params(self._u[start:stop])

    def uniform(self, low: float, high: float) -> torch.Tensor:
        if self._col >= self.COLUMNS:
            raise RuntimeError("toy-faces draws more parameters than _Params.COLUMNS")
        column = self._u[:, self._col]
        self._col += 1
        return (low + (high - low) * column).view(-1, 1, 1)

    def chance(self, p: float) -> torch.Tensor:
        return (self.uniform(0.0, 1.0) < p).float()

    def colour(self, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return torch.cat([self.uniform(low, high) for _ in range(3)], 1).unsqueeze(-1)

    def pick(self, palette: torch.Tensor, jitter: float) -> torch.Tensor:
        index = (self.uniform(0.0, 1.0).view(-1) * len(palette)).long().clamp_max(len(palette) - 1)
        noise = self.colour(-jitter, jitter)
        return (palette[index].view(-1, 3, 1, 1) + noise).clamp(0.0, 1.0)


def _ellipse(dx: torch.Tensor, dy: torch.Tensor, rx: torch.Tensor, ry: torch.Tensor,
             inv_px: float) -> torch.Tensor:
    """Soft mask (B, H, W) of an ellipse; dx (B, 1, W) and dy (B, H, 1) are offsets from it."""
    dist = (dx / rx).square() + (dy / ry).square()
    # (|p| - 1) * min radius approximates the signed distance; +-half a pixel of antialiasing.
    scale = torch.minimum(rx, ry) * inv_px
    return dist.sqrt_().sub_(1.0).mul_(scale).neg_().add_(0.5).clamp_(0.0, 1.0)


def _step(value: torch.Tensor, inv_px: float) -> torch.Tensor:
    """Soft indicator of ``value > 0`` (value in coordinate units), half a pixel each side."""
    return value.mul(inv_px).add_(0.5).clamp_(0.0, 1.0)


def _paint(canvas: torch.Tensor, alpha: torch.Tensor, colour: torch.Tensor) -> None:
    canvas.lerp_(colour.expand_as(canvas), alpha.unsqueeze(1))


def _render(p: _Params, size: int) -> torch.Tensor:
    """Draws ``p.count`` faces as float RGB (B, 3, size, size) in [0, 1]."""
    inv_px = size / 2.0  # coordinates span [-1, 1], so one pixel is 2 / size wide
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) * (2.0 / size) - 1.0
    x = coords.view(1, 1, size)
    y = coords.view(1, size, 1)

    # Draw every parameter first, in a fixed order, so the image depends on nothing else.
    bg_top, bg_bottom = p.colour(0.25, 0.95), p.colour(0.15, 0.9)
    shirt = p.colour(0.05, 0.9)
    body_x, body_y, body_rx = p.uniform(-0.1, 0.1), p.uniform(1.05, 1.25), p.uniform(0.6, 0.85)
    cx, cy = p.uniform(-0.12, 0.12), p.uniform(-0.08, 0.1)
    rx = p.uniform(0.37, 0.5)
    ry = rx * p.uniform(1.1, 1.35)
    skin = p.pick(_SKIN, 0.03)
    hair = p.pick(_HAIR, 0.04)
    wild_hair = p.chance(0.12)
    hair = hair * (1 - wild_hair.unsqueeze(1)) + p.colour(0.1, 1.0) * wild_hair.unsqueeze(1)
    long_hair, bald = p.chance(0.4), p.chance(0.08)
    hair_len = p.uniform(0.2, 1.1)
    hairline, fringe_amp = p.uniform(0.3, 0.62), p.uniform(0.0, 0.07)
    fringe_freq, fringe_phase, fringe_tilt = p.uniform(6.0, 22.0), p.uniform(0, 6.3), p.uniform(
        -0.35, 0.35)
    volume = p.uniform(1.04, 1.2)
    eye_y = cy - ry * p.uniform(0.0, 0.16)
    eye_off = rx * p.uniform(0.32, 0.46)
    eye_w = rx * p.uniform(0.16, 0.25)
    eye_h = eye_w * p.uniform(0.6, 1.0)
    iris = p.pick(_IRIS, 0.05)
    iris_r = eye_h * p.uniform(0.6, 0.85)
    gaze_x, gaze_y = eye_w * p.uniform(-0.35, 0.35), eye_h * p.uniform(-0.2, 0.2)
    brow_gap, brow_tilt = p.uniform(0.5, 1.1), p.uniform(-0.35, 0.35)
    brow_h = eye_h * p.uniform(0.2, 0.4)
    nose_y, nose_r = cy + ry * p.uniform(0.08, 0.25), rx * p.uniform(0.06, 0.11)
    mouth_y, mouth_w = cy + ry * p.uniform(0.42, 0.6), rx * p.uniform(0.22, 0.45)
    mouth_open, frown = p.chance(0.3), p.chance(0.12)
    mouth_r = mouth_w * p.uniform(1.05, 2.2)
    mouth_t = ry * p.uniform(0.05, 0.08)
    lips = p.colour(0.0, 0.12) + torch.tensor([0.45, 0.08, 0.1]).view(1, 3, 1, 1)
    blush = p.chance(0.5) * 0.35

    top = (1.0 - (y + 1.0) / 2.0).unsqueeze(1)
    canvas = bg_bottom + (bg_top - bg_bottom) * top  # (B, 3, H, 1): vertical gradient
    canvas = canvas.expand(-1, -1, -1, size).contiguous()

    dx, dy = x - cx, y - cy
    adx = dx.abs()
    _paint(canvas, _ellipse(x - body_x, y - body_y, body_rx, torch.full_like(cy, 0.5), inv_px),
           shirt)
    back = _ellipse(dx, dy + 0.1 * ry, rx * 1.3, ry * 1.25, inv_px)
    back.mul_(_step(cy + ry * hair_len - y, inv_px)).mul_(long_hair * (1 - bald))
    _paint(canvas, back, hair)
    _paint(canvas, _ellipse(dx, dy - ry * 0.95, rx * 0.42, ry * 0.5, inv_px), skin * 0.85)
    _paint(canvas, _ellipse(adx - rx * 0.97, dy, rx * 0.2, ry * 0.16, inv_px), skin * 0.92)
    _paint(canvas, _ellipse(dx, dy, rx, ry, inv_px), skin)
    line = cy - ry * hairline + fringe_amp * torch.sin(fringe_freq * dx + fringe_phase)
    cap = _ellipse(dx, dy + 0.12 * ry, rx * volume, ry * 1.02, inv_px)
    cap.mul_(_step(line + fringe_tilt * dx * 0.3 - y, inv_px)).mul_(1 - bald)
    _paint(canvas, cap, hair)

    ex, ey = adx - eye_off, y - eye_y
    sclera = _ellipse(ex, ey, eye_w, eye_h, inv_px)
    _paint(canvas, sclera, torch.full_like(skin, 0.97))
    ix, iy = (dx - gaze_x).abs() - eye_off, ey - gaze_y
    _paint(canvas, _ellipse(ix, iy, iris_r, iris_r, inv_px).mul_(sclera), iris)
    _paint(canvas, _ellipse(ix, iy, iris_r * 0.48, iris_r * 0.48, inv_px).mul_(sclera),
           torch.full_like(skin, 0.03))
    shine = _ellipse(ix + iris_r * 0.3, iy + iris_r * 0.3, iris_r * 0.22, iris_r * 0.22, inv_px)
    _paint(canvas, shine.mul_(sclera), torch.ones_like(skin))
    brow_y = ey + eye_h * (1.0 + brow_gap) + brow_tilt * ex
    _paint(canvas, _ellipse(ex, brow_y, eye_w * 1.15, brow_h, inv_px), hair * 0.7)

    _paint(canvas, _ellipse(dx, y - nose_y, nose_r, nose_r * 0.8, inv_px), skin * 0.82)
    _paint(canvas, _ellipse(adx - rx * 0.55, dy - ry * 0.3, rx * 0.16, rx * 0.12, inv_px)
           .mul_(blush), torch.tensor([0.95, 0.45, 0.5]).view(1, 3, 1, 1))

    # Mouth: an arc of a circle (smile, or frown when the centre is below), or an open "D".
    sign = 1.0 - 2.0 * frown
    centre = mouth_y - sign * mouth_r
    ring = (dx.square() + (y - centre).square()).sqrt_().sub_(mouth_r).abs_()
    arc = _step(mouth_t * 0.5 - ring, inv_px)
    arc.mul_(_step(mouth_w - adx, inv_px)).mul_(_step(sign * (y - centre), inv_px))
    gape = _ellipse(dx, y - mouth_y, mouth_w * 0.85, mouth_w * 0.6, inv_px)
    gape.mul_(_step(y - mouth_y + mouth_w * 0.05, inv_px))
    mouth = arc * (1 - mouth_open) + gape * mouth_open
    _paint(canvas, mouth, lips.clamp(0.0, 1.0))
    return canvas


def generate_toy_faces(n: int = DEFAULT_NUM_TOY_FACES, image_size: int = 64, *, seed: int = 0,
                       channels: int = 3) -> torch.Tensor:
    """Generates ``n`` cartoon faces as a uint8 tensor.

    Does not touch torch's global random state.

    Args:
        n: Number of images.
        image_size: Side length of the square images (any size >= 1; 64 by default).
        seed: Everything about image ``i`` is fixed by ``(seed, i, image_size)``.
        channels: 3 for RGB, 1 for grey (PIL's ``convert('L')`` weights).

    Returns:
        uint8 tensor (n, channels, image_size, image_size).

    Example:
        >>> faces = generate_toy_faces(16, 32, seed=1)
        >>> faces.shape, faces.dtype
        (torch.Size([16, 3, 32, 32]), torch.uint8)
    """
    if n < 0 or image_size < 1 or channels not in (1, 3):
        raise ValueError(f"bad toy-faces arguments n={n}, image_size={image_size}, "
                         f"channels={channels}")
    out = torch.empty((n, channels, image_size, image_size), dtype=torch.uint8)
    for block_start in range(0, n, BLOCK):
        params = _Params.draw(_block_generator(seed, block_start // BLOCK), BLOCK)
        count = min(BLOCK, n - block_start)
        for start in range(0, count, _RENDER_CHUNK):
            stop = min(start + _RENDER_CHUNK, count)
            rgb = _render(params.slice(start, stop), image_size)
            pixels = rgb.clamp_(0.0, 1.0).mul_(255.0).round_().to(torch.uint8)
            if channels == 1:
                pixels = rgb_to_gray_uint8(pixels)
            out[block_start + start:block_start + stop] = pixels
    return out


def toy_faces_labels(n: int = DEFAULT_NUM_TOY_FACES, *, seed: int = 0) -> torch.Tensor:
    """The class of each of the first ``n`` toy faces: its hair (one of 10 classes).

    Class ``k < 8`` is hair of palette colour ``k`` (:data:`TOY_FACES_CLASSES` names them),
    8 is hair of a random ("wild") colour and 9 is bald; about 10% of the faces each. The
    labels are read from the same drawn parameters as the images (they do not depend on
    the image size), so they match :func:`generate_toy_faces` with the same ``seed``.

    Args:
        n: number of faces.
        seed: the seed of :func:`generate_toy_faces`.

    Returns:
        int64 tensor ``(n,)`` of classes 0..9.

    Example:
        >>> toy_faces_labels(8, seed=0).tolist()  # doctest: +SKIP
        [9, 2, ...]
    """
    if n < 0:
        raise ValueError(f"bad toy-faces count n={n}")
    out = torch.empty(n, dtype=torch.long)
    for block_start in range(0, n, BLOCK):
        u = _Params.draw(_block_generator(seed, block_start // BLOCK), BLOCK)._u
        count = min(BLOCK, n - block_start)
        hair = (u[:count, _HAIR_COLUMN] * len(_HAIR)).long().clamp_max(len(_HAIR) - 1)
        hair = torch.where(u[:count, _WILD_COLUMN] < 0.12, 8, hair)
        out[block_start:block_start + count] = torch.where(u[:count, _BALD_COLUMN] < 0.08, 9, hair)
    return out
