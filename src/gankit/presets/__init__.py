"""Registered presets: named recipes that build a generator, a discriminator and settings.

Example:
    >>> from gankit.presets import dcgan_task1, get_preset, list_presets
    >>> list_presets("*task*")
    ['dcgan_task1', 'dcgan_task1_stable', 'r3gan_task1', 'sngan_task1', 'wgan_gp_task2', 'wgan_task2', 'wgan_task2_paper']
    >>> recipe = get_preset("dcgan_task1", batch_size=128)
"""

from ._loading import import_user_module
from ._registry import (
    META_KEYS,
    Recipe,
    RecipeSettings,
    build_recipe,
    get_preset,
    list_presets,
    make_augmentation,
    make_settings,
    meta_table,
    preset_description,
    rebuild_recipe,
    recipe_from_name,
    register_preset,
    unregister_preset,
)
from .report import TASK2_STAGES, dcgan_task1, finish_recipe, report_wgan_generator, wgan_task2
from .resnet import sngan_projection32, sngan_resnet32, sngan_resnet64
from .stable import (
    DCGAN_STABLE_ABLATION,
    dcgan_task1_stable,
    r3gan_task1,
    sngan_task1,
    wgan_gp_task2,
    wgan_task2_paper,
)

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
    "unregister_preset",
    "import_user_module",
    "dcgan_task1",
    "wgan_task2",
    "report_wgan_generator",
    "TASK2_STAGES",
    "finish_recipe",
    "make_augmentation",
    "wgan_task2_paper",
    "wgan_gp_task2",
    "sngan_task1",
    "r3gan_task1",
    "dcgan_task1_stable",
    "DCGAN_STABLE_ABLATION",
    "sngan_resnet32",
    "sngan_resnet64",
    "sngan_projection32",
]
