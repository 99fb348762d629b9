"""The report's original training code, transcribed cell by cell; does NOT import gankit.

Task one is the public ML2020 HW11 baseline notebook; task two SPEC.md's WGAN loop over
the same notebook scaffolding. What is transcribed: the models (``spec_reference``'s literal
classes, each applying the DCGAN init at the end of ``__init__``), the loss and the
optimizers built *before* ``same_seeds(0)``, the dataset of SPEC.md without cv2 (PIL opens
the file, RGB, ``Resize((64, 64))``, ``ToTensor``, ``Normalize(0.5, 0.5)``), the files
listed with ``glob.glob`` unsorted, ``DataLoader(shuffle=True, num_workers=2)``,
``z_sample = torch.randn(100, 100)``, the loop, and the per-epoch grid.

Only observation is added, none of it touching the RNG: the initial state dicts and every
epoch's are saved, and every step's real batch and latents are written as digests
(SHA-256 of dtype, shape and bytes) to ``trace.jsonl``.

Usage: ``python original_notebook.py TASK FOLDER OUT EPOCHS [INIT]``. With ``INIT`` (a
folder holding an earlier run's ``G_init.pth`` and ``D_init.pth``) the models are built as
usual and then load those weights, before ``same_seeds(0)``: the rerun of a run on its own
initial weights (building draws from the RNG that ``same_seeds`` resets anyway).
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
import random
import sys

import numpy as np
import torch
import torchvision.transforms as transforms
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision.utils import save_image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spec_reference as ref  # noqa: E402


def same_seeds(seed):
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed(seed)
        torch.cuda.manual_seed_all(seed)
    np.random.seed(seed)
    random.seed(seed)
    torch.backends.cudnn.benchmark = False
    torch.backends.cudnn.deterministic = True


class FaceDataset(Dataset):
    def __init__(self, fnames, transform):
        self.transform = transform
        self.fnames = fnames
        self.num_samples = len(self.fnames)

    def __getitem__(self, idx):
        fname = self.fnames[idx]
        img = Image.open(fname).convert("RGB")  # SPEC.md: PIL gives cv2's pixels for RGB JPEGs
        return self.transform(img)

    def __len__(self):
        return self.num_samples


def get_dataset(root):
    fnames = glob.glob(os.path.join(root, "*"))
    transform = transforms.Compose([
        transforms.Resize((64, 64)),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.5] * 3, std=[0.5] * 3),
    ])
    return FaceDataset(fnames, transform)


def digest(t):
    t = t.detach().cpu().contiguous()
    h = hashlib.sha256(f"{t.dtype}:{tuple(t.shape)}:".encode())
    h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def main(task, root, out, n_epoch, init=None):
    os.makedirs(out, exist_ok=True)
    z_dim = 100
    if task == 1:
        G, D = ref.Task1Generator(in_dim=z_dim), ref.Task1Discriminator(3)
        criterion = nn.BCELoss()
        opt_D = torch.optim.Adam(D.parameters(), lr=1e-4, betas=(0.5, 0.999))
        opt_G = torch.optim.Adam(G.parameters(), lr=1e-4, betas=(0.5, 0.999))
        batch_size = 64
    else:
        G, D = ref.Task2Generator(z_dim), ref.Task2Discriminator()
        opt_D = torch.optim.SGD(D.parameters(), lr=1e-4)
        opt_G = torch.optim.SGD(G.parameters(), lr=1e-4)
        batch_size = 32
    if init is not None:  # a rerun on an earlier run's initial weights (not in the notebook)
        G.load_state_dict(torch.load(os.path.join(init, "G_init.pth"), weights_only=True))
        D.load_state_dict(torch.load(os.path.join(init, "D_init.pth"), weights_only=True))
    torch.save(G.state_dict(), os.path.join(out, "G_init.pth"))
    torch.save(D.state_dict(), os.path.join(out, "D_init.pth"))
    same_seeds(0)
    dataset = get_dataset(root)
    dataloader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=2)
    z_sample = torch.randn(100, z_dim)
    torch.save(z_sample, os.path.join(out, "z_sample.pt"))
    G.train()
    D.train()
    trace = open(os.path.join(out, "trace.jsonl"), "w")
    step = 0
    for e in range(n_epoch):
        for i, data in enumerate(dataloader):
            imgs = data
            bs = imgs.size(0)
            z = torch.randn(bs, z_dim)
            latents = [z]
            r_imgs = imgs
            f_imgs = G(z)
            if task == 1:
                r_label = torch.ones(bs)
                f_label = torch.zeros(bs)
                r_logit = D(r_imgs.detach())
                f_logit = D(f_imgs.detach())
                r_loss = criterion(r_logit, r_label)
                f_loss = criterion(f_logit, f_label)
                loss_D = (r_loss + f_loss) / 2
                D.zero_grad()
                loss_D.backward()
                opt_D.step()
                z = torch.randn(bs, z_dim)
                latents.append(z)
                f_imgs = G(z)
                f_logit = D(f_imgs)
                loss_G = criterion(f_logit, r_label)
                G.zero_grad()
                loss_G.backward()
                opt_G.step()
            else:
                loss_D = -torch.mean(D(r_imgs)) + torch.mean(D(f_imgs.detach()))
                D.zero_grad()
                loss_D.backward()
                opt_D.step()
                for p in D.parameters():
                    p.data.clamp_(-0.01, 0.01)
                if (i + 1) % 5 == 0:
                    z = torch.randn(bs, z_dim)
                    latents.append(z)
                    loss_G = -torch.mean(D(G(z)))
                    G.zero_grad()
                    loss_G.backward()
                    opt_G.step()
            step += 1
            trace.write(json.dumps({"step": step, "batch": digest(imgs),
                                    "latents": [digest(x) for x in latents]}) + "\n")
        G.eval()
        f_imgs_sample = (G(z_sample).data + 1) / 2.0
        save_image(f_imgs_sample, os.path.join(out, f"Epoch_{e + 1:03d}.jpg".replace(".jpg", ".png")), nrow=10)
        G.train()
        torch.save(G.state_dict(), os.path.join(out, f"G_epoch{e + 1}.pth"))
        torch.save(D.state_dict(), os.path.join(out, f"D_epoch{e + 1}.pth"))
    trace.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), *sys.argv[5:6])
