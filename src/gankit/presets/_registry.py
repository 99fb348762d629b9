"""The preset registry: named builder functions that return a :class:`Recipe`.

A preset is a plain function ``builder(**overrides) -> Recipe`` decorated with
:func:`register_preset`. :func:`get_preset` looks one up by name and passes overrides
through (``None`` values are dropped, so unset command-line options never replace a
preset's own values).
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, overload

from torch import nn

from ..errors import ConfigError

__all__ = [
    "RecipeSettings",
    "Recipe",
    "register_preset",
    "get_preset",
    "list_presets",
    "preset_description",
    "build_recipe",
    "rebuild_recipe",
    "META_KEYS",
    "meta_table",
    "make_augmentation",
]

#: The keys of :attr:`Recipe.meta` (torchvision style), each with what it holds.
META_KEYS = {
    "summary": "what the recipe is, in one sentence",
    "source": "where it comes from: paper(s) and the recipe or code it follows",
    "recipe": "the training procedure in one line (loss, optimizers, batch, length)",
    "benchmarks": "figures measured by gankit's quality benchmark, each a dict with metric, value "
                  "and provenance (machine, steps, seeds, extractor); empty until a real run",
}


@dataclass(frozen=True)
class RecipeSettings:
    """Every setting of a recipe except the networks themselves.

    Args:
        z_dim: latent size; latents are ``torch.randn(batch, z_dim)``.
        image_size: side of the square images.
        channels: image channels.
        num_classes: classes of a class-conditional recipe (0: unconditional); its data
            must carry labels ``0..num_classes-1``.
        base_channels: width of the networks (channels next to the image).
        batch_size: real images per step.
        epochs: passes over the data.
        loss: adversarial loss name (see :func:`gankit.losses.list_losses`).
        g_optimizer: optimizer preset of the generator (see :func:`gankit.optim.list_optimizers`).
        d_optimizer: optimizer preset of the discriminator.
        g_lr: learning rate replacing the generator preset's, or None.
        d_lr: learning rate replacing the discriminator preset's, or None.
        clip_value: clamp every discriminator parameter to ``[-c, c]`` after each
            discriminator step (weight-clipped WGAN), or None.
        n_critic: discriminator steps per generator step; the generator steps after real
            batch ``i`` of an epoch when ``(i + 1) % n_critic == 0``.
        n_critic_count: ``"epoch"`` (the count above restarts every epoch: SPEC.md's
            task-two rule) or ``"global"`` (counted over the whole run's discriminator steps).
        gp_weight: weight of the WGAN-GP gradient penalty (0: none).
        r1_gamma: weight of the R1 penalty on real images (0: none).
        spectral_norm: wrap the discriminator's conv and linear layers in spectral norm
            (the built-in presets apply it; a custom builder calls
            :func:`gankit.constraints.spectral_norm_` itself).
        r2_gamma: weight of the R2 penalty on generated images (0: none; R3GAN uses
            ``r1_gamma = r2_gamma``).
        reg_every: run the R1 / R2 penalties on every ``reg_every``-th discriminator step,
            scaled by ``reg_every`` (lazy regularisation, StyleGAN2; 1: every step).
        augment: input augmentation of the discriminator, applied to real and fake images
            in both steps: ``"none"``, ``"diffaugment"`` (DiffAugment's
            ``color,translation,cutout``), ``"diffaugment:POLICY"`` (e.g.
            ``"diffaugment:translation,cutout"``) or ``"ada"`` (adaptive, target 0.6).
        ema_half_life_images: keep an exponential moving average of the generator with this
            half-life in images (StyleGAN2: 10,000), used for sample grids, evaluation,
            sampling and export; 0: none.
        ema_rampup: the EMA's ramp-up ratio (half-life at most ``ema_rampup`` times the images
            seen; StyleGAN2-ADA: 0.05), or None.
        ema_recompute_bn: before the averaged generator samples (grids, evaluation, export),
            recompute its BatchNorm statistics on this many of its own images; 0: keep the
            statistics copied from the raw generator (StyleGAN2's way).
        decay_images: images over which a preset's cosine schedules run (learning rate,
            penalty gamma: see the preset); 0: no schedule (constant values).
        shuffle: the order of the real images in each epoch when gankit batches them
            (folders, dataset names, image tensors): ``"seeded"`` (a private generator
            seeded by the trainer's ``data_seed``: torch's global RNG is left alone),
            ``"dataloader"`` (the draws and the permutation of
            ``DataLoader(shuffle=True)``, taken from torch's global RNG at the start of
            every epoch, as the report's code does) or ``"none"`` (file order). Only
            ``"dataloader"`` sees the original's data order and latents; ``"seeded"``
            differs from them from the first step on.
        sample_grid: side of the fixed-latent sample grid (10: a 10x10 grid of 100 images).
        checkpoint_every: save a checkpoint every this many epochs (0: only at the end).
    """

    z_dim: int = 100
    image_size: int = 64
    channels: int = 3
    num_classes: int = 0
    base_channels: int = 64
    batch_size: int = 64
    epochs: int = 51
    loss: str = "bce"
    g_optimizer: str = "adam_dcgan"
    d_optimizer: str = "adam_dcgan"
    g_lr: float | None = None
    d_lr: float | None = None
    clip_value: float | None = None
    n_critic: int = 1
    n_critic_count: str = "epoch"
    gp_weight: float = 0.0
    r1_gamma: float = 0.0
    spectral_norm: bool = False
    r2_gamma: float = 0.0
    reg_every: int = 1
    augment: str = "none"
    ema_half_life_images: float = 0.0
    ema_rampup: float | None = None
    ema_recompute_bn: int = 0
    decay_images: int = 0
    shuffle: str = "seeded"
    sample_grid: int = 10
    checkpoint_every: int = 5

    def __post_init__(self) -> None:
        for name in ("z_dim", "image_size", "channels", "base_channels", "batch_size", "n_critic", "sample_grid",
                     "reg_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"{name} must be a positive integer, got {v!r}.")
        for name in ("epochs", "checkpoint_every", "decay_images", "num_classes", "ema_recompute_bn"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ConfigError(f"{name} must be a non-negative integer, got {v!r}.")
        if self.clip_value is not None and not self.clip_value > 0:
            raise ConfigError(f"clip_value must be > 0 or None, got {self.clip_value!r}.")
        for name in ("g_lr", "d_lr"):
            v = getattr(self, name)
            if v is not None and not v > 0:
                raise ConfigError(f"{name} must be > 0 or None, got {v!r}.")
        if self.n_critic_count not in ("epoch", "global"):
            raise ConfigError(f"n_critic_count must be epoch or global, got {self.n_critic_count!r}.")
        if self.shuffle not in ("seeded", "dataloader", "none"):
            raise ConfigError(
                f"shuffle must be seeded, dataloader or none, got {self.shuffle!r}."
            )
        for name in ("gp_weight", "r1_gamma", "r2_gamma", "ema_half_life_images"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)!r}.")
        if self.ema_rampup is not None and not self.ema_rampup > 0:
            raise ConfigError(f"ema_rampup must be > 0 or None, got {self.ema_rampup!r}.")
        make_augmentation(self.augment)  # validates the name and policy

    @classmethod
    def field_names(cls) -> list[str]:
        """Names of every setting, in declaration order."""
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def parse_value(cls, key: str, text: str) -> Any:
        """Convert a command-line string to the type of setting ``key``.

        Args:
            key: a setting name.
            text: its value as text (``"none"`` gives None where None is allowed).

        Returns:
            The typed value.

        Raises:
            ConfigError: for an unknown key or a value of the wrong type.

        Example:
            >>> RecipeSettings.parse_value("batch_size", "32")
            32
        """
        hints = typing.get_type_hints(cls)
        if key not in hints:
            raise _unknown_key(key, cls.field_names())
        hint = hints[key]
        args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if text.strip().lower() in ("none", "null") and type(None) in args:
            return None
        for typ in (a for a in args if a is not type(None)):
            try:
                if typ is bool:
                    low = text.strip().lower()
                    if low in ("1", "true", "yes", "on"):
                        return True
                    if low in ("0", "false", "no", "off"):
                        return False
                    raise ValueError(text)
                return typ(text)
            except ValueError:
                continue
        names = " or ".join(getattr(a, "__name__", str(a)) for a in args)
        raise ConfigError(f"setting {key} expects {names}, got {text!r}.")


def _unknown_key(key: str, valid: list[str]) -> ConfigError:
    close = difflib.get_close_matches(key, valid, n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    return ConfigError(f"unknown setting {key!r}; valid settings: {', '.join(valid)}.{hint}")


@dataclass
class Recipe:
    """A built preset: the two networks and every training setting.

    Settings are reachable directly (``recipe.batch_size``) or as ``recipe.settings``.

    Args:
        name: the preset's name.
        generator: the built generator.
        discriminator: the built discriminator (critic).
        settings: every other setting (:class:`RecipeSettings`).
        overrides: the overrides the preset was built with (to rebuild it exactly).
        description: one line saying what the recipe is.
        step: the training step (:class:`~gankit.train.GANStep`) when the recipe brings its
            own objective, regularisers or schedule; None: :meth:`make_step` builds it from
            the settings.
        builder: ``"module:function"`` of the builder that made it (recorded in
            checkpoints, so an unregistered recipe can be rebuilt; set by
            :func:`get_preset` and :func:`build_recipe`).
        ema: a :class:`~gankit.train.GeneratorEMA` the trainer attaches (then samples,
            evaluates and exports with the averaged generator); None: no EMA.
        meta: what the recipe is and where it comes from, torchvision style (see
            :data:`META_KEYS`): ``summary``, ``source``, ``recipe``, ``benchmarks`` (figures
            with their provenance; empty until a real run measured them).
        schedules: ``{target: schedule}`` the trainer applies before every step (see
            :mod:`gankit.schedules`); the trainer's own ``schedules`` argument adds to them
            and wins for the same target.

    Example:
        >>> from gankit.presets import dcgan_task1
        >>> recipe = dcgan_task1()
        >>> recipe.batch_size, recipe.loss
        (64, 'bce')
    """

    name: str
    generator: nn.Module
    discriminator: nn.Module
    settings: RecipeSettings
    overrides: dict[str, Any] = field(default_factory=dict)
    description: str = ""
    step: Any = None
    builder: str | None = None
    ema: Any = None
    meta: dict[str, Any] = field(default_factory=dict)
    schedules: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, item: str) -> Any:
        # Only reached for names that are not fields: expose the settings flat.
        settings = self.__dict__.get("settings")
        if settings is not None and item in RecipeSettings.field_names():
            return getattr(settings, item)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {item!r}")

    def build_optimizers(self):
        """Build ``(opt_g, opt_d)`` from the recipe's optimizer presets and learning rates.

        Returns:
            A pair of :class:`torch.optim.Optimizer` over the generator's and the
            discriminator's parameters.
        """
        from ..optim import build_optimizer

        s = self.settings
        g_kw = {} if s.g_lr is None else {"lr": s.g_lr}
        d_kw = {} if s.d_lr is None else {"lr": s.d_lr}
        return (
            build_optimizer(s.g_optimizer, self.generator.parameters(), **g_kw),
            build_optimizer(s.d_optimizer, self.discriminator.parameters(), **d_kw),
        )

    def make_step(self):
        """The training step: ``self.step`` if the recipe has one, else one from the settings.

        The settings give the objective (``loss``), the regularisers (``gp_weight`` ->
        :class:`~gankit.regularizers.GradientPenalty`, ``r1_gamma`` ->
        :class:`~gankit.regularizers.R1Penalty`, ``r2_gamma`` ->
        :class:`~gankit.regularizers.R2Penalty`, both every ``reg_every`` steps), the
        constraints (``clip_value`` -> :class:`~gankit.regularizers.WeightClip`), the input
        augmentation (``augment``) and the schedule (``n_critic``, ``n_critic_count``).

        Returns:
            A :class:`~gankit.train.GANStep`.
        """
        if self.step is not None:
            return self.step
        from ..regularizers import GradientPenalty, R1Penalty, R2Penalty, WeightClip
        from ..train.step import GANStep, StepSchedule

        s = self.settings
        regs = ([GradientPenalty(s.gp_weight)] if s.gp_weight else []) + (
            [R1Penalty(s.r1_gamma, every=s.reg_every)] if s.r1_gamma else []) + (
            [R2Penalty(s.r2_gamma, every=s.reg_every)] if s.r2_gamma else [])
        return GANStep(s.loss, regularizers=regs,
                       constraints=[WeightClip(s.clip_value)] if s.clip_value else [],
                       schedule=StepSchedule(n_critic=s.n_critic, count=s.n_critic_count),
                       augment=make_augmentation(s.augment))

    def load_weights(self, *, generator: Any = None, discriminator: Any = None) -> Recipe:
        """Load initial weights into the recipe's networks (e.g. an original run's ``.pth`` files).

        Each argument is a path to a state dict saved with ``torch.save`` (read with
        ``weights_only=True``: nothing in it runs), a state dict, or a gankit checkpoint
        (its ``generator`` / ``discriminator`` entry is used). A gankit state dict is matched
        by key; another code's state dict (the ML2020 notebook names its layers ``l1``,
        ``l2_5``, ...) is matched **by position**: the i-th tensor goes to the i-th entry of
        the network's own state dict, so the two must hold the same tensors in the same
        order with the same shapes -- as the report's networks and gankit's presets do.

        Args:
            generator: the generator's weights, or None to keep them.
            discriminator: the discriminator's weights, or None to keep them.

        Returns:
            The recipe (changed in place).

        Raises:
            CheckpointError: for an unreadable file or weights that do not fit (named, with
                the first entry that differs).

        Example:
            >>> import torch
            >>> from gankit.presets import dcgan_task1
            >>> a, b = dcgan_task1(image_size=8, base_channels=2), dcgan_task1(image_size=8, base_channels=2)
            >>> _ = a.load_weights(generator=b.generator.state_dict())
            >>> all(torch.equal(x, y) for x, y in zip(a.generator.state_dict().values(),
            ...                                        b.generator.state_dict().values()))
            True
        """
        for role, source, net in (("generator", generator, self.generator),
                                  ("discriminator", discriminator, self.discriminator)):
            if source is not None:
                net.load_state_dict(_fitting_state(role, source, net))
        return self

    def summary_lines(self) -> list[str]:
        """Every setting as ``key: value`` lines (for ``gankit summary`` and logs)."""
        return [f"{k}: {v}" for k, v in dataclasses.asdict(self.settings).items()]


def make_augmentation(spec: str):
    """The augmentation a recipe's ``augment`` setting names (see :class:`RecipeSettings`).

    Args:
        spec: ``"none"``, ``"diffaugment"``, ``"diffaugment:POLICY"`` or ``"ada"``.

    Returns:
        A :class:`~gankit.augment.DiffAugment` or :class:`~gankit.augment.ADA`, or None.

    Raises:
        ConfigError: for another name or an unknown DiffAugment policy.

    Example:
        >>> make_augmentation("diffaugment:translation")
        DiffAugment('translation', p=1.0)
    """
    from ..augment import ADA, DiffAugment

    kind, _, policy = str(spec).partition(":")
    kind = kind.strip().lower()
    if kind == "none" and not policy:
        return None
    if kind == "diffaugment":
        return DiffAugment(policy) if policy else DiffAugment()
    if kind == "ada" and not policy:
        return ADA()
    raise ConfigError(f"augment must be none, diffaugment, diffaugment:POLICY or ada, got {spec!r}.")


def meta_table(names: list[str] | None = None) -> str:
    """The ``meta`` of registered presets as a reStructuredText table (for the docs).

    Args:
        names: presets to list (default: every registered one).

    Returns:
        A ``list-table`` directive; a preset without measured figures says so.

    Example:
        >>> print(meta_table(["dcgan_task1"]).splitlines()[0])
        .. list-table:: Presets (``Recipe.meta``)
    """
    import torch

    rows = []
    for name in names if names is not None else list_presets():
        with torch.random.fork_rng(devices=[]):  # building draws initial weights
            meta = get_preset(name).meta
        figures = meta.get("benchmarks") or []
        bench = "; ".join(
            f"{b['metric']} {b['value']} ({', '.join(f'{k}: {v}' for k, v in b.items() if k not in ('metric', 'value'))})"
            for b in figures) or "none yet: no measured run"
        rows.append([f"``{name}``", meta.get("summary", ""), meta.get("source", ""), meta.get("recipe", ""), bench])
    lines = [".. list-table:: Presets (``Recipe.meta``)", "   :header-rows: 1", "   :widths: 14 22 26 24 14", "",
             "   * - Preset", "     - What it is", "     - Source", "     - Recipe", "     - Benchmarks"]
    for row in rows:
        lines.append(f"   * - {row[0]}")
        lines += [f"     - {cell}" for cell in row[1:]]
    return "\n".join(lines) + "\n"


def _fitting_state(role: str, source: Any, net: nn.Module) -> dict[str, Any]:
    """``source``'s tensors under ``net``'s own keys (by key, else by position); one-line errors."""
    import os

    import torch

    from ..errors import CheckpointError

    name = f"the {role} weights" if not isinstance(source, (str, os.PathLike)) else os.fspath(source)
    if isinstance(source, (str, os.PathLike)):
        try:
            source = torch.load(source, map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise CheckpointError(f"{name} does not exist; give the path of a saved state dict.") from None
        except Exception as err:  # noqa: BLE001 - torch raises many types for bad files
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
            raise CheckpointError(f"cannot read {name} as a state dict ({first}); save it with "
                                  f"torch.save({role}.state_dict(), path).") from None
    if isinstance(source, dict) and isinstance(source.get(role), dict):
        source = source[role]  # a gankit checkpoint
    if not isinstance(source, dict) or not all(isinstance(v, torch.Tensor) for v in source.values()):
        raise CheckpointError(f"{name} is not a state dict of tensors; save it with "
                              f"torch.save({role}.state_dict(), path).")
    own = net.state_dict()
    if set(source) == set(own):
        triples = [(k, k, source[k]) for k in own]
    elif len(source) == len(own):
        triples = [(k, sk, v) for k, (sk, v) in zip(own, source.items())]
    else:
        raise CheckpointError(f"{name} has {len(source)} tensors, the recipe's {role} {len(own)}; "
                              "load weights of the same architecture (same preset and settings).")
    for key, src_key, value in triples:
        if tuple(value.shape) != tuple(own[key].shape):
            raise CheckpointError(
                f"{name}: entry {src_key!r} has shape {tuple(value.shape)} but the recipe's "
                f"{role} needs {tuple(own[key].shape)} for {key!r}; load weights of the same "
                "architecture (same preset and settings).")
    return {key: value for key, _, value in triples}


Builder = Callable[..., Recipe]


@dataclass(frozen=True)
class _Entry:
    name: str
    builder: Builder
    description: str


_PRESETS: dict[str, _Entry] = {}


@overload
def register_preset(fn: Builder) -> Builder: ...
@overload
def register_preset(*, name: str | None = None, description: str | None = None) -> Callable[[Builder], Builder]: ...


def register_preset(fn=None, *, name=None, description=None):
    """Register a preset builder under its function name (or ``name``).

    Usable bare (``@register_preset``) or with arguments
    (``@register_preset(name="x", description="...")``). The description defaults to the
    first line of the builder's docstring.

    Args:
        fn: the builder, ``fn(**overrides) -> Recipe``.
        name: registry name; defaults to ``fn.__name__``.
        description: one line shown by ``gankit presets``.

    Returns:
        The builder, unchanged (so it stays importable and callable).

    Raises:
        ConfigError: if a preset of that name is already registered.

    Example:
        >>> @register_preset(name="my_gan_doc_example")
        ... def my_gan(**overrides):
        ...     '''My GAN.'''
        ...     return dcgan_task1(**overrides)
    """

    def deco(builder: Builder) -> Builder:
        key = name or builder.__name__
        if key in _PRESETS:
            raise ConfigError(f"a preset named {key!r} is already registered; choose another name "
                              f"(or unregister_preset({key!r}) first to replace it).")
        doc = (builder.__doc__ or "").strip().splitlines()
        _PRESETS[key] = _Entry(key, builder, description or (doc[0] if doc else ""))
        return builder

    return deco if fn is None else deco(fn)


def unregister_preset(name: str, *, missing_ok: bool = False) -> Builder | None:
    """Remove a registered preset, so that its name can be registered again.

    For a notebook cell that redefines a preset, or a test that registers one for a while;
    checkpoints that name the preset cannot be resumed until it is registered again.

    Args:
        name: the registered name.
        missing_ok: return ``None`` when no preset of that name is registered, instead of
            raising (as :meth:`pathlib.Path.unlink` does; for clean-up code).

    Returns:
        The builder that was registered under ``name`` (``None`` if there was none and
        ``missing_ok``).

    Raises:
        ConfigError: if no preset of that name is registered and not ``missing_ok``.

    Example:
        >>> @register_preset(name="my_gan_unregister_example")
        ... def my_gan(**overrides):
        ...     '''My GAN.'''
        ...     return dcgan_task1(**overrides)
        >>> unregister_preset("my_gan_unregister_example") is my_gan
        True
        >>> "my_gan_unregister_example" in list_presets()
        False
    """
    if missing_ok and name not in _PRESETS:
        return None
    return _PRESETS.pop(_lookup(name).name).builder


def _lookup(name: str) -> _Entry:
    if name not in _PRESETS:
        close = difflib.get_close_matches(name, list(_PRESETS), n=3, cutoff=0.4)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ConfigError(
            f"unknown preset {name!r}.{hint} Available: {', '.join(sorted(_PRESETS))} "
            "(a preset of your own must be registered first: import its module, or "
            "'gankit --import MODULE ...')."
        )
    return _PRESETS[name]


def get_preset(name: str, **overrides: Any) -> Recipe:
    """Build a registered preset, with settings overridden.

    Args:
        name: the preset's registry name (see :func:`list_presets`).
        **overrides: settings to change (see :class:`RecipeSettings`); None values are
            ignored, so they keep the preset's own value.

    Returns:
        The built :class:`Recipe`.

    Raises:
        ConfigError: for an unknown name (listing close matches) or an invalid override.

    Example:
        >>> recipe = get_preset("wgan_task2", epochs=5)
        >>> recipe.epochs, recipe.batch_size
        (5, 32)
    """
    return _built(_lookup(name).builder, {k: v for k, v in overrides.items() if v is not None})


def _built(builder: Builder, overrides: dict[str, Any]) -> Recipe:
    recipe = builder(**overrides)
    if not isinstance(recipe, Recipe):
        raise ConfigError(f"builder {getattr(builder, '__name__', builder)!r} returned a "
                          f"{type(recipe).__name__}, not a Recipe.")
    # the outermost builder is what rebuilds it (a builder may wrap a preset)
    recipe.builder = f"{builder.__module__}:{builder.__qualname__}"
    recipe.overrides = dict(overrides)
    return recipe


def _resolve_builder(spec: str) -> Builder:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ConfigError(f"a builder is named 'module:function', got {spec!r}.")
    module = sys.modules.get(module_name)
    if module is None:
        try:
            module = importlib.import_module(module_name)
        except ImportError as err:
            raise ConfigError(f"cannot import {module_name!r} for builder {spec!r} ({err}); install it "
                              "or pass its folder with 'gankit --import'.") from None
    obj: Any = module
    for part in attr.split("."):
        obj = getattr(obj, part, None)
    if not callable(obj):
        raise ConfigError(f"{spec!r} is not a function of module {module_name!r}.")
    return obj


def build_recipe(builder: str | Builder, **overrides: Any) -> Recipe:
    """Build a recipe from any builder function, registered or not, and record how.

    The recipe remembers ``"module:function"`` and the overrides, so its checkpoints can
    be resumed (``Trainer.load``, ``gankit train --resume``) without a registry entry.

    Args:
        builder: a function ``builder(**overrides) -> Recipe``, or its ``"module:function"``
            name (the module is imported if it is not yet).
        **overrides: the builder's keyword arguments.

    Returns:
        The :class:`Recipe`.

    Example:
        >>> recipe = build_recipe("gankit.presets.report:dcgan_task1", image_size=32)
        >>> recipe.builder, recipe.image_size
        ('gankit.presets.report:dcgan_task1', 32)
    """
    fn = _resolve_builder(builder) if isinstance(builder, str) else builder
    return _built(fn, {k: v for k, v in overrides.items() if v is not None})


def recipe_from_name(name: str, **overrides: Any) -> Recipe:
    """A registered preset, or a ``"module:function"`` builder (see :func:`build_recipe`).

    Args:
        name: a preset name or a builder's ``module:function``.
        **overrides: settings (or the builder's arguments).

    Returns:
        The :class:`Recipe`.
    """
    return build_recipe(name, **overrides) if ":" in name else get_preset(name, **overrides)


def rebuild_recipe(ckpt: dict[str, Any], *, source: str = "checkpoint") -> Recipe:
    """Rebuild the recipe a checkpoint was trained with: a registered preset by name, else
    the builder it records, whose module must already be imported (a checkpoint never makes
    gankit import code by itself).

    Args:
        ckpt: a checkpoint dictionary.
        source: how to name it in messages.

    Returns:
        The :class:`Recipe` built with the checkpoint's overrides.

    Raises:
        CheckpointError: when the recipe cannot be rebuilt, saying what to import.
    """
    from ..errors import CheckpointError

    name, builder = ckpt.get("preset"), ckpt.get("builder")
    overrides = ckpt.get("overrides") or {}
    try:
        registered = _PRESETS.get(name) if isinstance(name, str) else None
        if registered is not None and builder in (
                None, f"{registered.builder.__module__}:{registered.builder.__qualname__}"):
            return get_preset(name, **overrides)
        if isinstance(builder, str):
            module = builder.partition(":")[0]
            if module not in sys.modules:
                raise CheckpointError(
                    f"{source} was trained with the recipe builder {builder!r}, whose module is not "
                    f"imported; import {module} first (gankit --import {module} ...).")
            return build_recipe(builder, **overrides)
        raise CheckpointError(f"{source} names preset {name!r}, which is not registered here; "
                              "import the module that registers it (gankit --import MODULE ...).")
    except ConfigError as err:
        raise CheckpointError(f"cannot rebuild the recipe of {source}: {err}") from None


def list_presets(pattern: str | None = None) -> list[str]:
    """Sorted names of the registered presets, optionally filtered by a shell-style pattern.

    Args:
        pattern: e.g. ``"*task*"``; None lists all.

    Returns:
        The matching names.

    Example:
        >>> list_presets("dcgan*")
        ['dcgan_task1']
    """
    names = sorted(_PRESETS)
    return names if pattern is None else [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def preset_description(name: str) -> str:
    """The one-line description of a registered preset."""
    return _lookup(name).description


def make_settings(defaults: dict[str, Any], overrides: dict[str, Any]) -> RecipeSettings:
    """Merge a preset's defaults with user overrides into validated settings.

    Args:
        defaults: the preset's own values (only what differs from :class:`RecipeSettings`).
        overrides: the user's values.

    Returns:
        The validated :class:`RecipeSettings`.

    Raises:
        ConfigError: for an unknown key or an invalid value.
    """
    valid = RecipeSettings.field_names()
    for key in overrides:
        if key not in valid:
            raise _unknown_key(key, valid)
    return RecipeSettings(**{**defaults, **overrides})
