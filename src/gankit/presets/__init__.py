"""Registered presets: named recipes that build a generator, a discriminator and settings.

Example:
    >>> from gankit.presets import dcgan_task1, get_preset, list_presets
    >>> list_presets("*task*")
    ['dcgan_task1', 'wgan_task2']
    >>> recipe = get_preset("dcgan_task1", batch_size=128)
"""

from ._registry import (
    META_KEYS,
    Recipe,
    RecipeSettings,
    build_recipe,
    get_preset,
    list_presets,
    make_settings,
    meta_table,
    preset_description,
    rebuild_recipe,
    recipe_from_name,
    register_preset,
)
from .report import dcgan_task1, report_wgan_generator, wgan_task2
from .resnet import sngan_projection32, sngan_resnet32, sngan_resnet64

__all__ = [
    "META_KEYS",
    "meta_table",
    "Recipe",
    "RecipeSettings",
    "build_recipe",
    "rebuild_recipe",
    "recipe_from_name",
    "get_preset",
    "list_presets",
    "make_settings",
    "preset_description",
    "register_preset",
    "dcgan_task1",
    "wgan_task2",
    "report_wgan_generator",
    "sngan_resnet32",
    "sngan_resnet64",
    "sngan_projection32",
]
