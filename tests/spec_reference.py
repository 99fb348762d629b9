"""Independent transcription of SPEC.md's two GANs; does NOT import gankit.

Written the way the ML2020 HW11 baseline and the wgan-pytorch code write their
networks: plain ``nn.Module`` classes with ``nn.Sequential`` bodies, layers in
SPEC.md's order, reshapes in ``forward``, and the DCGAN init applied with
``self.apply(weights_init)`` at the end of ``__init__``. Tests compare gankit's
presets against these, so keep this file a literal reading of the spec.

``Module.apply`` visits children before their parent (post-order), while SPEC.md
says the init runs over ``module.modules()`` in registration order (pre-order).
Only leaves match ``weights_init`` and leaves come in the same relative order in
both traversals, so the random draws happen in the same order; a test checks it.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = [
    "weights_init",
    "Task1Generator",
    "Task1Discriminator",
    "Task2Generator",
    "Task2Discriminator",
    "build_task1",
    "build_task2",
    "task1_train_step",
    "task2_train_step",
]


def weights_init(m: nn.Module) -> None:
    """The ML2020 DCGAN init: Conv* weight ~ N(0, 0.02); BatchNorm* weight ~ N(1, 0.02), bias 0.

    Conv biases and Linear layers keep PyTorch's default init.

    Args:
        m: One module (called by ``Module.apply``).
    """
    classname = m.__class__.__name__
    if classname.find("Conv") != -1:
        m.weight.data.normal_(0.0, 0.02)
    elif classname.find("BatchNorm") != -1:
        m.weight.data.normal_(1.0, 0.02)
        m.bias.data.fill_(0)


# --- task one: the ML2020 HW11 baseline DCGAN ----------------------------------------------


class Task1Generator(nn.Module):
    """SPEC task-one generator: (N, in_dim) -> (N, 3, 64, 64); 5,142,083 parameters.

    Args:
        in_dim: Latent size.
        dim: Base channel width.
    """

    def __init__(self, in_dim: int = 100, dim: int = 64) -> None:
        super().__init__()

        def dconv_bn_relu(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.ConvTranspose2d(c_in, c_out, 5, 2, padding=2, output_padding=1, bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
            )

        self.l1 = nn.Sequential(
            nn.Linear(in_dim, dim * 8 * 4 * 4, bias=False),
            nn.BatchNorm1d(dim * 8 * 4 * 4),
            nn.ReLU(),
        )
        self.l2_5 = nn.Sequential(
            dconv_bn_relu(dim * 8, dim * 4),
            dconv_bn_relu(dim * 4, dim * 2),
            dconv_bn_relu(dim * 2, dim),
            nn.ConvTranspose2d(dim, 3, 5, 2, padding=2, output_padding=1),
            nn.Tanh(),
        )
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.l1(x)
        y = y.view(y.size(0), -1, 4, 4)
        return self.l2_5(y)


class Task1Discriminator(nn.Module):
    """SPEC task-one discriminator: (N, 3, 64, 64) -> (N,) probabilities; 4,316,545 params.

    Args:
        in_dim: Input channels.
        dim: Base channel width.
    """

    def __init__(self, in_dim: int = 3, dim: int = 64) -> None:
        super().__init__()

        def conv_bn_lrelu(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 5, 2, 2),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2),
            )

        self.ls = nn.Sequential(
            nn.Conv2d(in_dim, dim, 5, 2, 2),
            nn.LeakyReLU(0.2),
            conv_bn_lrelu(dim, dim * 2),
            conv_bn_lrelu(dim * 2, dim * 4),
            conv_bn_lrelu(dim * 4, dim * 8),
            nn.Conv2d(dim * 8, 1, 4),
            nn.Sigmoid(),
        )
        self.apply(weights_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.ls(x)
        return y.view(-1)


# --- task two: WGAN with weight clipping ---------------------------------------------------


class Task2Generator(nn.Module):
    """SPEC task-two generator (LSGAN layout at 64x64); 3,380,227 parameters, default init.

    Args:
        in_dim: Latent size.
    """

    def __init__(self, in_dim: int = 100) -> None:
        super().__init__()
        self.fc = nn.Sequential(nn.Linear(in_dim, 256 * 5 * 5))
        self.conv = nn.Sequential(
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.ConvTranspose2d(256, 256, 3, stride=2, padding=1),  # 5 -> 9
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.ConvTranspose2d(256, 256, 3, stride=1, padding=1),  # 9 -> 9
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.ConvTranspose2d(256, 256, 3, stride=2, padding=1),  # 9 -> 17
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.ConvTranspose2d(256, 256, 3, stride=1, padding=1),  # 17 -> 17
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.ConvTranspose2d(256, 128, 3, stride=2, padding=1),  # 17 -> 33
            nn.BatchNorm2d(128),
            nn.ReLU(),
            nn.ConvTranspose2d(128, 64, 3, stride=2, padding=2, output_padding=1),  # 33 -> 64
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 3, 3, stride=1, padding=1),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.fc(z)
        x = x.view(x.size(0), 256, 5, 5)
        return self.conv(x)


class Task2Discriminator(nn.Module):
    """SPEC task-two critic: (N, 3, 64, 64) -> (N,) raw scores; 4,316,545 parameters.

    Args:
        in_dim: Input channels.
        dim: Base channel width.
    """

    def __init__(self, in_dim: int = 3, dim: int = 64) -> None:
        super().__init__()

        def conv_bn_lrelu_drop(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 5, 2, 2),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(0.2),
                nn.Dropout2d(0.25),
            )

        self.ls = nn.Sequential(
            nn.Conv2d(in_dim, dim, 5, 2, 2),
            nn.LeakyReLU(0.2),
            conv_bn_lrelu_drop(dim, dim * 2),
            conv_bn_lrelu_drop(dim * 2, dim * 4),
            conv_bn_lrelu_drop(dim * 4, dim * 8),
        )
        self.adv_layer = nn.Sequential(nn.Linear(dim * 8 * 4 * 4, 1))
        self.apply(weights_init)

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        out = self.ls(img)
        out = out.view(out.size(0), -1)
        return self.adv_layer(out).view(-1)


def build_task1(seed: int) -> tuple[Task1Generator, Task1Discriminator]:
    """Seed the global RNG, then build G and D (in that order) for task one.

    Args:
        seed: Passed to ``torch.manual_seed``.

    Returns:
        ``(G, D)``.
    """
    torch.manual_seed(seed)
    G = Task1Generator(100)
    D = Task1Discriminator(3)
    return G, D


def build_task2(seed: int) -> tuple[Task2Generator, Task2Discriminator]:
    """Seed the global RNG, then build G and D (in that order) for task two.

    Args:
        seed: Passed to ``torch.manual_seed``.

    Returns:
        ``(G, D)``.
    """
    torch.manual_seed(seed)
    G = Task2Generator(100)
    D = Task2Discriminator(3)
    return G, D


# --- training steps, SPEC.md's numbered steps --------------------------------------------


def task1_train_step(
    G: nn.Module,
    D: nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    x: torch.Tensor,
    z_dim: int = 100,
) -> tuple[float, float]:
    """One task-one step (SPEC steps 1-5) on the real batch ``x``.

    Args:
        G: Generator.
        D: Discriminator (ends in a sigmoid).
        opt_G: Generator optimizer.
        opt_D: Discriminator optimizer.
        x: Real images on the training device.
        z_dim: Latent size.

    Returns:
        ``(loss_D, loss_G)`` as floats.
    """
    criterion = nn.BCELoss()
    bs = x.size(0)
    # 1. latent on the default CPU generator, then moved
    z = torch.randn(bs, z_dim).to(x.device)
    f_imgs = G(z)
    r_label = torch.ones(bs).to(x.device)
    f_label = torch.zeros(bs).to(x.device)
    # 2. two separate D calls, real first
    r_logit = D(x.detach())
    f_logit = D(f_imgs.detach())
    r_loss = criterion(r_logit, r_label)
    f_loss = criterion(f_logit, f_label)
    loss_D = (r_loss + f_loss) / 2
    # 3.
    D.zero_grad()
    loss_D.backward()
    opt_D.step()
    # 4. fresh latent
    z = torch.randn(bs, z_dim).to(x.device)
    f_imgs = G(z)
    f_logit = D(f_imgs)
    loss_G = criterion(f_logit, r_label)
    # 5.
    G.zero_grad()
    loss_G.backward()
    opt_G.step()
    return loss_D.item(), loss_G.item()


def task2_train_step(
    G: nn.Module,
    D: nn.Module,
    opt_G: torch.optim.Optimizer,
    opt_D: torch.optim.Optimizer,
    x: torch.Tensor,
    i: int,
    clip: float = 0.01,
    n_critic: int = 5,
    z_dim: int = 100,
) -> tuple[float, float | None]:
    """One task-two step (SPEC steps 1-3) on the real batch ``x`` with index ``i``.

    Args:
        G: Generator.
        D: Critic (no sigmoid).
        opt_G: Generator optimizer.
        opt_D: Critic optimizer.
        x: Real images on the training device.
        i: Batch index within the epoch; G steps when ``(i + 1) % n_critic == 0``.
        clip: Weight-clipping bound.
        n_critic: Critic steps per generator step.
        z_dim: Latent size.

    Returns:
        ``(loss_D, loss_G)`` as floats; ``loss_G`` is ``None`` when G did not step.
    """
    bs = x.size(0)
    # 1.
    z = torch.randn(bs, z_dim).to(x.device)
    fake_imgs = G(z)
    loss_D = -torch.mean(D(x)) + torch.mean(D(fake_imgs.detach()))
    # 2.
    D.zero_grad()
    loss_D.backward()
    opt_D.step()
    for p in D.parameters():
        p.data.clamp_(-clip, clip)
    # 3.
    loss_G = None
    if (i + 1) % n_critic == 0:
        z = torch.randn(bs, z_dim).to(x.device)
        gen_imgs = G(z)
        loss_G = -torch.mean(D(gen_imgs))
        G.zero_grad()
        loss_G.backward()
        opt_G.step()
    return loss_D.item(), (None if loss_G is None else loss_G.item())
