"""wgan_gp_task2 with other critics: the choices Gulrajani et al. 2017 leave open, and their own.

``wgan_gp_task2`` keeps task two's critic but for its BatchNorm, which it replaces by layer
normalisation (section 4 of the WGAN-GP paper rules out batch normalisation in the critic and
suggests layer normalisation "as a drop-in replacement", or none). This module registers two
variants so the quality benchmark can compare them with it:

* ``wgan_gp_task2_nonorm`` -- no normalisation at all in the critic (the paper's other choice);
* ``wgan_gp_task2_nodropout`` -- layer normalisation as in ``wgan_gp_task2``, without task
  two's ``Dropout2d(0.25)`` after each block (the paper's critics have no dropout)::

    python benchmarks/quality.py --import benchmarks/wgan_gp_critics.py --seeds 0 \\
        --presets wgan_gp_task2_nonorm,wgan_gp_task2_nodropout --out runs/q-wgangp-critics-s0
"""
from typing import Any

from gankit.models import dcgan_discriminator
from gankit.presets import Recipe, finish_recipe, register_preset, wgan_gp_task2


def _with_critic(name: str, builder, overrides: dict[str, Any], *, norm_layer: Any, dropout: float) -> Recipe:
    """``wgan_gp_task2(**overrides)`` with task two's critic rebuilt with this normalisation and dropout."""
    base = wgan_gp_task2(**overrides)
    s = base.settings
    d = dcgan_discriminator(image_size=s.image_size, channels=s.channels, base_channels=s.base_channels,
                            dropout=dropout, head="linear", sigmoid=False, norm_layer=norm_layer)
    doc = builder.__doc__.splitlines()[0]
    meta = dict(base.meta, summary=doc, benchmarks=[])
    return finish_recipe(name, base.generator, d, s, overrides, doc, meta=meta)


@register_preset
def wgan_gp_task2_nonorm(**overrides: Any) -> Recipe:
    """wgan_gp_task2 with no normalisation in the critic (gradient penalty 10, Adam 1e-4 (0, 0.9), n_critic 5)."""
    return _with_critic("wgan_gp_task2_nonorm", wgan_gp_task2_nonorm, overrides, norm_layer=None, dropout=0.25)


@register_preset
def wgan_gp_task2_nodropout(**overrides: Any) -> Recipe:
    """wgan_gp_task2 without the critic's dropout (layer norm, gradient penalty 10, Adam 1e-4 (0, 0.9), n_critic 5)."""
    return _with_critic("wgan_gp_task2_nodropout", wgan_gp_task2_nodropout, overrides, norm_layer="layer",
                        dropout=0.0)
