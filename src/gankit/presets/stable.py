"""Presets that go beyond the report: the same two networks, recipes known to be stable.

Each is a small builder over the parts gankit already has (the report's networks from
:mod:`gankit.models`, losses, regularisers, augmentations, the generator EMA, schedules),
so what differs from the report is exactly what the builder says:

* :func:`wgan_task2_paper` -- task two with the published WGAN recipe (RMSProp 5e-5,
  batch 64) in place of the report's SGD 1e-4 / batch 32.
* :func:`wgan_gp_task2` -- task two's networks trained as WGAN-GP: the critic's
  BatchNorm replaced by layer normalisation, gradient penalty 10, Adam 1e-4 (0, 0.9).
* :func:`sngan_task1` -- task one's networks with spectral norm on a BatchNorm-free
  discriminator, hinge loss, Adam from Miyato et al. 2018's setting C (lr 2e-4), generator EMA.
* :func:`r3gan_task1` -- task one's networks trained with R3GAN's objective: RpGAN + R1 +
  R2, no normalisation in D, Adam (0, 0.99), cosine schedules, generator EMA.
* :func:`dcgan_task1_stable` -- the report's task one with the fewest changes that make it
  better without collapsing: the DCGAN paper's learning rate 2e-4 and a generator EMA (see
  :data:`DCGAN_STABLE_ABLATION`).

Every one works at 32x32 and 64x64 (``image_size``), on CPU and CUDA, in faithful and fast
numerics, and takes every :class:`~gankit.presets.RecipeSettings` override.
"""

from __future__ import annotations

from typing import Any

from ..models import dcgan_discriminator, dcgan_generator
from ..schedules import cosine, over_images
from ._registry import Recipe, make_settings, register_preset
from .report import finish_recipe, report_wgan_generator

__all__ = [
    "wgan_task2_paper",
    "wgan_gp_task2",
    "sngan_task1",
    "r3gan_task1",
    "dcgan_task1_stable",
    "DCGAN_STABLE_ABLATION",
    "STABLE_META",
]

_EMA = {"ema_half_life_images": 10_000.0, "ema_rampup": 0.05}
#: sngan_task1's EMA: no ramp-up, BatchNorm statistics recomputed on 2,048 of its own images
#: before it samples (benchmarks/ema_probe.py: last FID 0.169 against 0.245 with ``_EMA``)
_EMA_OWN_BN = {"ema_half_life_images": 10_000.0, "ema_recompute_bn": 2048}
_PAPER_LR = {"g_optimizer": "adam_dcgan_paper", "d_optimizer": "adam_dcgan_paper"}  # Adam 2e-4 (0.5, 0.999)

#: The rows of the ``dcgan_task1_stable`` ablation: each adds one change to the report's
#: task one, as overrides of ``dcgan_task1``. The second row is the raw generator of the
#: ``dcgan_task1_stable`` run itself (the EMA only watches the training, so that generator
#: is bitwise the one of ``dcgan_task1(**DCGAN_STABLE_ABLATION[1][1])``): the quality
#: benchmark measures it with ``--raw-too dcgan_task1_stable``. DiffAugment, this preset's
#: first choice, is an alternative row of docs/beyond.rst: it lowered SWD and raised FID.
DCGAN_STABLE_ABLATION: list[tuple[str, dict[str, Any]]] = [
    ("dcgan_task1 (the report)", {}),
    ("+ the DCGAN paper's Adam lr 2e-4 for G and D", _PAPER_LR),
    ("+ generator EMA, half-life 10k images, ramp-up 0.05 (= dcgan_task1_stable)", _PAPER_LR | _EMA),
]

#: ``Recipe.meta`` of the presets of this module (``benchmarks`` filled from real runs of
#: ``benchmarks/quality.py``: see docs/beyond.rst).
STABLE_META: dict[str, dict[str, Any]] = {
    "wgan_task2_paper": {
        "summary": "Task two's networks with the WGAN paper's own recipe: what the report's SGD cost.",
        "source": "Arjovsky, Chintala & Bottou 2017, 'Wasserstein GAN', Algorithm 1 (alpha 5e-5, "
                  "c 0.01, n_critic 5, m 64, RMSProp); the report's task-two networks.",
        "recipe": "Wasserstein loss; RMSProp lr 5e-5 for G and D; clip 0.01; n_critic 5; batch 64.",
        "benchmarks": [],
    },
    "wgan_gp_task2": {
        "summary": "Task two's networks as WGAN-GP: gradient penalty instead of clipping, no BatchNorm "
                   "in the critic.",
        "source": "Gulrajani et al. 2017, 'Improved Training of Wasserstein GANs', Algorithm 1 "
                  "(lambda 10, n_critic 5, Adam alpha 1e-4, beta1 0, beta2 0.9) and section 4 "
                  "(layer normalisation in the critic in place of batch normalisation); batch 64.",
        "recipe": "Wasserstein loss + gradient penalty 10; Adam lr 1e-4, betas (0, 0.9); n_critic 5; "
                  "critic norm: layer norm (GroupNorm with one group); batch 64.",
        "benchmarks": [],
    },
    "sngan_task1": {
        "summary": "Task one's networks as SN-GAN: spectral norm on a BatchNorm-free discriminator, "
                   "hinge loss, generator EMA.",
        "source": "Miyato et al. 2018, 'Spectral Normalization for GANs': hinge loss, Table 1 setting C "
                  "(Adam alpha 2e-4, beta1 0.5, beta2 0.999, n_dis 1: the report's task-one optimizer "
                  "at the DCGAN paper's learning rate); EMA of G as in Yazici et al. 2019 / StyleGAN2.",
        "recipe": "Hinge loss; spectral norm on every D layer, no BatchNorm in D; Adam lr 2e-4, betas "
                  "(0.5, 0.999) for G and D; n_dis 1; batch 64; G EMA half-life 10k images, no ramp-up, "
                  "BatchNorm statistics of the average recomputed on 2,048 of its images.",
        "benchmarks": [],
    },
    "r3gan_task1": {
        "summary": "Task one's networks trained with R3GAN's objective: relativistic pairing loss with "
                   "R1 and R2 penalties.",
        "source": "Huang et al. 2024, 'The GAN is dead; long live the GAN! A Modern GAN Baseline' "
                  "(RpGAN + R1 + R2, Adam betas (0, 0.99) at the end of its beta2 schedule, cosine "
                  "schedules of lr 2e-4 -> 5e-5 and gamma -> gamma/10); lazy R1/R2 every 4 steps "
                  "(StyleGAN2's lazy regularisation, a gankit change for cost); gamma chosen by a sweep "
                  "on the benchmark data (docs/beyond.rst).",
        "recipe": "RpGAN loss; R1 = R2 gamma 100 (cosine to 10 over decay_images), every 4 D steps; "
                  "no normalisation in D; Adam lr 2e-4 (cosine to 5e-5), betas (0, 0.99); batch 64; "
                  "G EMA half-life 10k images, ramp-up 0.05.",
        "benchmarks": [],
    },
    "dcgan_task1_stable": {
        "summary": "The report's task one with the fewest changes that make it better without "
                   "collapsing: the DCGAN paper's learning rate and a generator EMA.",
        "source": "Task one of the report (SPEC.md); Adam lr 2e-4 (Radford et al. 2016, the DCGAN "
                  "paper); generator EMA (StyleGAN2: half-life 10k images, StyleGAN2-ADA ramp-up "
                  "0.05). Each change is an ablation row (docs/beyond.rst).",
        "recipe": "Task one (BCE, batch 64) with Adam lr 2e-4 (0.5, 0.999) in place of 1e-4 + "
                  "G EMA for samples, evaluation and export.",
        "benchmarks": [],
    },
}

#: R3GAN's R1 = R2 gamma at the start of its cosine schedule on the task-one networks,
#: chosen by two sweeps on toy-faces (32x32, width 32, 40,960 training images): 0.1 / 1 /
#: 10 (seed 0), then 10 / 30 / 100 / 300 / 1000 (seeds 0 and 1), where 100 and 300 had
#: the lowest last SWD and FID, equal within the seeds' spread (docs/beyond.rst).
R3GAN_GAMMA = 100.0


def _task2_networks(s, *, norm_layer: Any = "batch"):
    import torch.nn as nn

    g = report_wgan_generator(z_dim=s.z_dim, channels=s.channels, base_channels=s.base_channels,
                              image_size=s.image_size)
    d = dcgan_discriminator(
        image_size=s.image_size, channels=s.channels, base_channels=s.base_channels, dropout=0.25,
        head="linear", sigmoid=False, norm_layer=nn.BatchNorm2d if norm_layer == "batch" else norm_layer,
    )
    return g, d


def _task1_networks(s, *, d_norm: Any = "batch", sigmoid: bool = True):
    import torch.nn as nn

    g = dcgan_generator(z_dim=s.z_dim, image_size=s.image_size, channels=s.channels,
                        base_channels=s.base_channels)
    d = dcgan_discriminator(image_size=s.image_size, channels=s.channels, base_channels=s.base_channels,
                            sigmoid=sigmoid, head="conv",
                            norm_layer=nn.BatchNorm2d if d_norm == "batch" else d_norm)
    return g, d


def _done(name: str, builder, g, d, s, overrides) -> Recipe:
    return finish_recipe(name, g, d, s, overrides, builder.__doc__.splitlines()[0], meta=STABLE_META[name])


@register_preset
def wgan_task2_paper(**overrides: Any) -> Recipe:
    """Task two's networks with the WGAN paper's recipe (RMSProp 5e-5, clip 0.01, n_critic 5, batch 64).

    The report trained task two with SGD 1e-4 and batch 32; Arjovsky et al. 2017 use RMSProp
    with lr 5e-5 and batch 64. Networks, loss, clipping and critic schedule are the report's.

    Args:
        **overrides: any :class:`~gankit.presets.RecipeSettings` field.

    Returns:
        The :class:`~gankit.presets.Recipe`.
    """
    s = make_settings(dict(batch_size=64, epochs=51, loss="wasserstein", g_optimizer="rmsprop_wgan",
                           d_optimizer="rmsprop_wgan", clip_value=0.01, n_critic=5), overrides)
    g, d = _task2_networks(s)
    return _done("wgan_task2_paper", wgan_task2_paper, g, d, s, overrides)


@register_preset
def wgan_gp_task2(**overrides: Any) -> Recipe:
    """Task two's networks as WGAN-GP (gradient penalty 10, layer-norm critic, Adam 1e-4 (0, 0.9), n_critic 5).

    The critic is task two's with each BatchNorm replaced by layer normalisation
    (``GroupNorm(1, C)``: a batch-dependent normalisation makes the per-sample gradient
    penalty meaningless, Gulrajani et al. 2017 section 4); no clipping.

    Args:
        **overrides: any :class:`~gankit.presets.RecipeSettings` field.

    Returns:
        The :class:`~gankit.presets.Recipe`.
    """
    s = make_settings(dict(batch_size=64, epochs=51, loss="wasserstein", g_optimizer="adam_wgan_gp",
                           d_optimizer="adam_wgan_gp", gp_weight=10.0, n_critic=5), overrides)
    g, d = _task2_networks(s, norm_layer="layer")
    return _done("wgan_gp_task2", wgan_gp_task2, g, d, s, overrides)


@register_preset
def sngan_task1(**overrides: Any) -> Recipe:
    """Task one's networks as SN-GAN (spectral norm, no BatchNorm in D, hinge, Adam 2e-4 (0.5, 0.999), G EMA).

    Miyato et al. 2018's Table 1 setting C (alpha 2e-4, beta1 0.5, beta2 0.999, n_dis 1) is
    the report's task-one optimizer at twice its learning rate (the DCGAN paper's, the
    ``adam_dcgan_paper`` preset), so the changes are the discriminator's (spectral norm
    instead of BatchNorm, no sigmoid), the loss (hinge), the learning rate and the
    generator EMA (half-life 10k images, no ramp-up, its BatchNorm statistics recomputed on
    2,048 of its own images before it samples: the averaged weights do not match the raw
    generator's statistics). (Setting B, the report's own 1e-4, was this preset's first
    choice: it learned half as fast in the CPU quality benchmark, docs/beyond.rst.)

    Args:
        **overrides: any :class:`~gankit.presets.RecipeSettings` field.

    Returns:
        The :class:`~gankit.presets.Recipe`.
    """
    s = make_settings(dict(batch_size=64, epochs=51, loss="hinge", spectral_norm=True, **_PAPER_LR,
                           **_EMA_OWN_BN), overrides)
    g, d = _task1_networks(s, d_norm=None, sigmoid=False)
    return _done("sngan_task1", sngan_task1, g, d, s, overrides)


@register_preset
def r3gan_task1(**overrides: Any) -> Recipe:
    """Task one's networks with R3GAN's objective (RpGAN + R1 + R2, no norm in D, Adam (0, 0.99), G EMA).

    R1 and R2 share gamma (:data:`R3GAN_GAMMA` at the start), both lazy every 4
    discriminator steps. With ``decay_images`` > 0 (default 163,840: the CPU quality
    benchmark's length) gamma follows a cosine to a tenth of its start and both learning
    rates a cosine from 2e-4 to 5e-5 over that many images, as R3GAN schedules them; 0 keeps
    them constant.

    Args:
        **overrides: any :class:`~gankit.presets.RecipeSettings` field (``r1_gamma`` and
            ``r2_gamma`` set the start of the schedule).

    Returns:
        The :class:`~gankit.presets.Recipe`.
    """
    s = make_settings(dict(batch_size=64, epochs=51, loss="rpgan", g_optimizer="adam_r3gan",
                           d_optimizer="adam_r3gan", r1_gamma=R3GAN_GAMMA, r2_gamma=R3GAN_GAMMA,
                           reg_every=4, decay_images=163_840, **_EMA), overrides)
    g, d = _task1_networks(s, d_norm=None, sigmoid=False)
    recipe = _done("r3gan_task1", r3gan_task1, g, d, s, overrides)
    if s.decay_images:
        def decay(start: float, end: float):
            return over_images(cosine(start, end, steps=s.decay_images), s.batch_size)

        lr_g, lr_d = s.g_lr or 2e-4, s.d_lr or 2e-4
        recipe.schedules = {"g.lr": decay(lr_g, lr_g / 4), "d.lr": decay(lr_d, lr_d / 4)}
        # R1Penalty / R2Penalty weigh their value by gamma / 2
        for name, gamma in (("r1", s.r1_gamma), ("r2", s.r2_gamma)):
            if gamma:
                recipe.schedules[name] = decay(gamma / 2, gamma / 20)
    return recipe


@register_preset
def dcgan_task1_stable(**overrides: Any) -> Recipe:
    """The report's task one + lr 2e-4 + generator EMA: the fewest changes that make it better.

    Networks, loss (BCE), Adam betas (0.5, 0.999), batch (64) and data order
    (``shuffle="dataloader"``) are task one's; both learning rates are the DCGAN paper's
    2e-4 (``adam_dcgan_paper``) instead of the report's 1e-4, and an EMA of the generator
    (half-life 10k images, ramp-up 0.05) samples, evaluates and exports.
    :data:`DCGAN_STABLE_ABLATION` lists the rows that justify each. (DiffAugment, the
    first choice, gave a lower SWD but a higher FID and less diverse samples in the CPU
    quality benchmark: docs/beyond.rst; ``augment="diffaugment"`` adds it back.)

    Args:
        **overrides: any :class:`~gankit.presets.RecipeSettings` field.

    Returns:
        The :class:`~gankit.presets.Recipe`.
    """
    s = make_settings(dict(batch_size=64, epochs=51, loss="bce", shuffle="dataloader", **_PAPER_LR, **_EMA),
                      overrides)
    g, d = _task1_networks(s)
    return _done("dcgan_task1_stable", dcgan_task1_stable, g, d, s, overrides)
