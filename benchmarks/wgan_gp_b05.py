"""Adam 1e-4 with betas (0.5, 0.9): the other setting Gulrajani et al. 2017 used (their DCGAN-like runs)."""
import torch

from gankit.optim import OptimizerPreset, register_optimizer

register_optimizer(OptimizerPreset("adam_wgan_gp_b05", torch.optim.Adam, {"lr": 1e-4, "betas": (0.5, 0.9)},
                                   "Adam lr 1e-4, betas (0.5, 0.9) (WGAN-GP paper, DCGAN-like runs)"))
