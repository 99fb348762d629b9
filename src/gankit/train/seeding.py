"""Seeding as the report's code seeds: the ML2020 notebook's ``same_seeds``."""

from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything", "SEED_ORDERS"]

#: ``"seed-first"``: seed, then build the networks (their initial weights follow the seed);
#: ``"original"``: build, then seed, then data and ``z_sample`` (the notebook's order).
SEED_ORDERS = ("seed-first", "original")


def seed_everything(seed: int) -> None:
    """Seed torch (CPU and CUDA), numpy and ``random``; cuDNN deterministic, no autotuning.

    This is the ML2020 HW11 notebook's ``same_seeds(seed)``. The notebook calls it *after*
    building its networks and optimizers, so its initial weights are not fixed by it, while
    its data order, latents and ``z_sample`` are: to replay such a run, build the recipe,
    load the run's initial weights (:meth:`gankit.presets.Recipe.load_weights`), call this,
    then create the :class:`~gankit.Trainer` (which draws ``z_sample``) and fit.

    Args:
        seed: the seed.

    Example:
        >>> seed_everything(0)
        >>> torch.initial_seed()
        0
    """
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed(seed)
        torch.cuda.manual_seed_all(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True
