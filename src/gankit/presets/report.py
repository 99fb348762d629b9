"""The two GANs of the course report (``SPEC.md``), as registered presets.

* :func:`dcgan_task1` -- the ML2020 HW11 baseline DCGAN: BCE on sigmoid outputs,
  Adam(1e-4, betas=(0.5, 0.999)) for both networks, batch 64, 51 epochs.
* :func:`wgan_task2` -- the weight-clipped WGAN after "wgan-pytorch": an LSGAN-style
  generator shrunk to 64x64, the task-one discriminator with dropout and a linear
  head as critic, SGD(1e-4), batch 32, 51 epochs, clip 0.01, n_critic 5.

Both build the generator first, then the discriminator, as the original code does, so
that under the same ``torch.manual_seed`` the initial weights are bitwise those of
the original.
"""

from __future__ import annotations

import copy
from typing import Any

from torch import nn

from ..blocks import LatentProjection, OutputConv, upsampling_stack
from ..errors import ConfigError
from ..models import Discriminator, Generator, dcgan_discriminator, dcgan_generator
from ._registry import Recipe, RecipeSettings, make_settings, register_preset

__all__ = ["dcgan_task1", "wgan_task2", "report_wgan_generator", "TASK2_STAGES"]


_REPORT = ("the course report (report-original.txt), as transcribed in SPEC.md")

#: ``Recipe.meta`` of the two report presets (no benchmark figures: none measured yet).
META = {
    "dcgan_task1": {
        "summary": "The report's task one: the ML2020 HW11 baseline DCGAN on 64x64 anime faces.",
        "source": f"Task one of {_REPORT}; the ML2020 HW11 baseline code; DCGAN layout "
                  "(Radford et al. 2016).",
        "recipe": "BCE on sigmoid outputs; Adam lr 1e-4, betas (0.5, 0.999) for G and D; batch 64; "
                  "51 epochs; the report: sharper images but unstable (it collapsed one epoch after "
                  "a good grid).",
        "benchmarks": [],
    },
    "wgan_task2": {
        "summary": "The report's task two: a weight-clipped WGAN with an LSGAN-style generator "
                   "shrunk to 64x64.",
        "source": f"Task two of {_REPORT}; the wgan-pytorch implementation; WGAN "
                  "(Arjovsky et al. 2017) for the clip value and critic schedule, which the "
                  "report leaves open.",
        "recipe": "Wasserstein loss; SGD lr 1e-4 for G and D; clip 0.01; n_critic 5; batch 32; "
                  "51 epochs; the report: more stable than task one but not better looking.",
        "benchmarks": [],
    },
}


def measured_figures(name: str) -> list[dict[str, Any]]:
    """The figures the quality benchmark measured for preset ``name`` (``measured.json``).

    ``benchmarks/quality.py --write-meta src/gankit/presets/measured.json`` writes them from
    a real run: best and last SWD and offline FID (mean over seeds), each with its
    provenance (machine, configuration, training images, seeds, extractor, commit, date).

    Args:
        name: a preset name.

    Returns:
        A list of figures (dicts with ``metric``, ``value`` and the provenance); empty when
        no run measured the preset.
    """
    import json
    from importlib import resources

    global _MEASURED
    if _MEASURED is None:
        try:
            _MEASURED = json.loads(resources.files(__package__).joinpath("measured.json").read_text())
        except (OSError, ValueError):
            _MEASURED = {}
    return copy.deepcopy(_MEASURED.get(name, {}).get("figures", []))


_MEASURED: dict[str, Any] | None = None


def finish_recipe(
    name: str, g: Generator, d: Discriminator, s: RecipeSettings, overrides: dict[str, Any], doc: str,
    meta: dict[str, Any] | None = None,
) -> Recipe:
    """The :class:`Recipe` of built networks and settings, with what the settings add.

    ``spectral_norm`` wraps the discriminator's layers; ``ema_half_life_images`` > 0 attaches
    a :class:`~gankit.train.GeneratorEMA` (half-life, ``ema_rampup`` and ``ema_recompute_bn``
    from the settings).
    Every registered preset ends with it, so these settings work on any of them
    (``dcgan_task1(ema_half_life_images=10_000)``).

    Args:
        name: the preset's name.
        g: the generator.
        d: the discriminator.
        s: the settings.
        overrides: the overrides the preset was built with.
        doc: one line saying what the recipe is.
        meta: the recipe's ``meta`` (default: the report presets' own, else empty).

    Returns:
        The recipe.
    """
    if s.spectral_norm:
        from ..constraints import spectral_norm_

        spectral_norm_(d)
    meta = copy.deepcopy(META.get(name, {}) if meta is None else meta)
    figures = None if meta.get("benchmarks") else measured_figures(name)
    if figures:
        meta["benchmarks"] = figures
    recipe = Recipe(name, g, d, s, dict(overrides), doc, meta=meta)
    if s.ema_half_life_images:
        from ..train.ema import GeneratorEMA

        recipe.ema = GeneratorEMA(half_life_images=s.ema_half_life_images, rampup=s.ema_rampup,
                                  recompute_bn=s.ema_recompute_bn)
    return recipe


@register_preset
def dcgan_task1(**overrides: Any) -> Recipe:
    """Task one: the ML2020 HW11 baseline DCGAN (BCE, Adam 1e-4 / (0.5, 0.999), batch 64, 51 epochs).

    Generator 5,142,083 and discriminator 4,316,545 parameters at the defaults; DCGAN
    normal initialisation of both (the Linear keeps PyTorch's default).

    Args:
        **overrides: any :class:`~gankit.presets.RecipeSettings` field, e.g.
            ``batch_size=128`` or ``epochs=5``.

    Returns:
        The :class:`~gankit.presets.Recipe`.

    Example:
        >>> import torch
        >>> from gankit.presets import dcgan_task1
        >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
        <torch._C.Generator object at ...>
        >>> recipe = dcgan_task1()
        >>> recipe.generator(torch.randn(2, 100)).shape
        torch.Size([2, 3, 64, 64])
    """
    s = make_settings(
        dict(batch_size=64, epochs=51, loss="bce", g_optimizer="adam_dcgan", d_optimizer="adam_dcgan",
             shuffle="dataloader"),
        overrides,
    )
    g = dcgan_generator(
        z_dim=s.z_dim, image_size=s.image_size, channels=s.channels, base_channels=s.base_channels
    )
    d = dcgan_discriminator(
        image_size=s.image_size,
        channels=s.channels,
        base_channels=s.base_channels,
        sigmoid=True,
        head="conv",
    )
    return finish_recipe("dcgan_task1", g, d, s, overrides, dcgan_task1.__doc__.splitlines()[0])


#: Task two's generator stages per image size: ``(channels in units of b, stride, padding,
#: output_padding)`` of each 3x3 transposed convolution after the 5x5 projection. 64 is the
#: report's (5 -> 9 -> 9 -> 17 -> 17 -> 33 -> 64); 32 drops one doubling and its stride-1
#: partner (5 -> 9 -> 9 -> 17 -> 32); 128 adds one of each (5 -> 9 -> 9 -> 17 -> 17 -> 33 ->
#: 33 -> 65 -> 128), keeping the layout.
TASK2_STAGES: dict[int, list[tuple[int, int, int, int]]] = {
    32: [(4, 2, 1, 0), (4, 1, 1, 0), (2, 2, 1, 0), (1, 2, 2, 1)],
    64: [(4, 2, 1, 0), (4, 1, 1, 0), (4, 2, 1, 0), (4, 1, 1, 0), (2, 2, 1, 0), (1, 2, 2, 1)],
    128: [(4, 2, 1, 0), (4, 1, 1, 0), (4, 2, 1, 0), (4, 1, 1, 0), (4, 2, 1, 0), (4, 1, 1, 0),
          (2, 2, 1, 0), (1, 2, 2, 1)],
}


def report_wgan_generator(
    *, z_dim: int = 100, channels: int = 3, base_channels: int = 64, image_size: int = 64
) -> Generator:
    """Task two's generator: the LSGAN layout shrunk to 64x64 (3,380,227 parameters).

    ``Linear(z, 4b·5·5)`` with bias, reshape to (4b, 5, 5), ``BatchNorm2d``, ``ReLU``;
    six 3x3 transposed convolutions with bias, each followed by ``BatchNorm2d`` and
    ``ReLU`` (5 -> 9 -> 9 -> 17 -> 17 -> 33 -> 64; channels 4b, 4b, 4b, 4b, 2b, b); a last
    3x3 transposed convolution to ``channels`` and ``Tanh``. PyTorch's default init.
    At ``image_size=32`` the same layout has four transposed convolutions
    (5 -> 9 -> 9 -> 17 -> 32; channels 4b, 4b, 2b, b): see :data:`TASK2_STAGES`.

    Args:
        z_dim: latent size.
        channels: output image channels.
        base_channels: ``b`` above (64 in the report, so 256 channels inside).
        image_size: 64 (the report's), 32 or 128.

    Returns:
        A :class:`~gankit.models.Generator` producing ``image_size`` x ``image_size`` images.

    Raises:
        ConfigError: for an image size without a stage list.
    """
    if image_size not in TASK2_STAGES:
        raise ConfigError(
            f"task two's generator has stage lists for image sizes {sorted(TASK2_STAGES)}, not "
            f"{image_size}; use one of them, or compose your own generator for other sizes."
        )
    b = base_channels
    stages = TASK2_STAGES[image_size]
    return Generator(
        LatentProjection(
            z_dim, 4 * b, 5, bias=True, norm_layer=nn.BatchNorm2d, norm_position="after_reshape"
        ),
        upsampling_stack(
            [4 * b] + [m * b for m, *_ in stages],
            kernel_size=3,
            stride=[st for _, st, _, _ in stages],
            padding=[pd for _, _, pd, _ in stages],
            output_padding=[op for *_, op in stages],
            bias=True,
            norm_layer=nn.BatchNorm2d,
            act_layer=nn.ReLU,
            output=OutputConv(channels, 3, 1, 1, 0, bias=True, act_layer="tanh"),
            input_size=5,
        ),
        init=None,
    )


@register_preset
def wgan_task2(**overrides: Any) -> Recipe:
    """Task two: weight-clipped WGAN (SGD 1e-4, clip 0.01, n_critic 5, batch 32, 51 epochs).

    Generator 3,380,227 parameters (PyTorch default init); critic 4,316,545 parameters:
    the task-one discriminator with ``Dropout2d(0.25)`` after each BatchNorm block and a
    flatten + ``Linear(8192, 1)`` head without sigmoid (DCGAN init). The report leaves
    the clip value and critic schedule open; these are the WGAN paper's defaults.

    Args:
        **overrides: any :class:`~gankit.presets.RecipeSettings` field, e.g.
            ``clip_value=0.02`` or ``n_critic=1``. ``image_size`` is 64 (the report's), 32 or 128.

    Returns:
        The :class:`~gankit.presets.Recipe`.
    """
    s = make_settings(
        dict(
            batch_size=32,
            epochs=51,
            loss="wasserstein",
            g_optimizer="sgd_wgan_report",
            d_optimizer="sgd_wgan_report",
            clip_value=0.01,
            n_critic=5,
            shuffle="dataloader",
        ),
        overrides,
    )
    g = report_wgan_generator(z_dim=s.z_dim, channels=s.channels, base_channels=s.base_channels,
                              image_size=s.image_size)
    d = dcgan_discriminator(
        image_size=s.image_size,
        channels=s.channels,
        base_channels=s.base_channels,
        dropout=0.25,
        head="linear",
        sigmoid=False,
    )
    return finish_recipe("wgan_task2", g, d, s, overrides, wgan_task2.__doc__.splitlines()[0])
