"""wgan_gp_task2 with no normalisation in the critic: the other choice Gulrajani et al. 2017 allow.

Section 4 of the WGAN-GP paper rules out batch normalisation in the critic and suggests layer
normalisation "as a drop-in replacement" or none; ``wgan_gp_task2`` uses layer normalisation.
This module registers the "none" variant so the quality benchmark can compare the two::

    python benchmarks/quality.py --import benchmarks/wgan_gp_nonorm.py --seeds 0 \\
        --presets wgan_gp_task2_nonorm --out runs/q-wgangp-nonorm-s0
"""
from typing import Any

from gankit.models import dcgan_discriminator
from gankit.presets import Recipe, finish_recipe, register_preset, wgan_gp_task2


@register_preset
def wgan_gp_task2_nonorm(**overrides: Any) -> Recipe:
    """wgan_gp_task2 with no normalisation in the critic (gradient penalty 10, Adam 1e-4 (0, 0.9), n_critic 5)."""
    base = wgan_gp_task2(**overrides)
    s = base.settings
    d = dcgan_discriminator(image_size=s.image_size, channels=s.channels, base_channels=s.base_channels,
                            dropout=0.25, head="linear", sigmoid=False, norm_layer=None)
    meta = dict(base.meta, summary="wgan_gp_task2 with no normalisation in the critic.", benchmarks=[])
    return finish_recipe("wgan_gp_task2_nonorm", base.generator, d, s, overrides,
                         wgan_gp_task2_nonorm.__doc__.splitlines()[0], meta=meta)
