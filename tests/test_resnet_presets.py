"""The ResNet SNGAN presets: published architecture and parameter counts, training, resuming,
export and sampling (tiny widths on CPU)."""

from __future__ import annotations

import pytest
import torch

from gankit import Trainer
from gankit.data import load_images
from gankit.presets import get_preset
from gankit.tables import layer_table
from gankit.train import load_generator


def _conv(c_in, c_out, k):
    return c_in * c_out * k * k + c_out


def _gblock(c_in, c_out, num_classes=0):
    """torch-mimicry's GBlock (torch_mimicry/modules/resblocks.py) with upsampling: c1 3x3, c2 3x3,
    b1/b2 BatchNorm (or a 2C-wide class embedding each when conditional), c_sc 1x1 (learnable)."""
    norms = 2 * num_classes * (c_in + c_out) if num_classes else 2 * (c_in + c_out)
    return _conv(c_in, c_out, 3) + _conv(c_out, c_out, 3) + norms + _conv(c_in, c_out, 1)


def _dblock(c_in, c_out, downsample, optimized=False):
    """torch-mimicry's DBlock / DBlockOptimized: hidden = in (out when optimized) channels;
    a 1x1 shortcut when the channels change, the block downsamples, or it is the first block."""
    hidden = c_out if optimized else c_in
    sc = _conv(c_in, c_out, 1) if (optimized or downsample or c_in != c_out) else 0
    return _conv(c_in, hidden, 3) + _conv(hidden, c_out, 3) + sc


# Counted from the layer lists of torch-mimicry's sngan_32.py, sngan_64.py and cgan_pd_32.py
# (https://github.com/kwotsin/mimicry, torch_mimicry/nets/...), independently of gankit's code.
MIMICRY_G32 = (128 * 4 * 4 * 256 + 4 * 4 * 256) + 3 * _gblock(256, 256) + 2 * 256 + _conv(256, 3, 3)
MIMICRY_D32 = (_dblock(3, 128, True, optimized=True) + _dblock(128, 128, True) + 2 * _dblock(128, 128, False)
               + 128 + 1)
MIMICRY_G64 = ((128 * 16 * 1024 + 16 * 1024) + sum(_gblock(1024 >> i, 1024 >> (i + 1)) for i in range(4))
               + 2 * 64 + _conv(64, 3, 3))
MIMICRY_D64 = _dblock(3, 64, True, optimized=True) + sum(_dblock(64 << i, 128 << i, True) for i in range(4)) + 1025
MIMICRY_G32_PD = MIMICRY_G32 - 3 * 2 * (256 + 256) + 3 * 2 * 10 * (256 + 256)
MIMICRY_D32_PD = MIMICRY_D32 + 10 * 128  # the SN class embedding of the projection


def _count(net):
    return sum(p.numel() for p in net.parameters())


@pytest.mark.parametrize("name,g_want,d_want", [
    ("sngan_resnet32", MIMICRY_G32, MIMICRY_D32),
    ("sngan_resnet64", MIMICRY_G64, MIMICRY_D64),
    ("sngan_projection32", MIMICRY_G32_PD, MIMICRY_D32_PD),
])
def test_parameter_counts_match_torch_mimicry(name, g_want, d_want):
    with torch.device("meta"):
        r = get_preset(name)
    assert (_count(r.generator), _count(r.discriminator)) == (g_want, d_want)


def test_published_numbers_and_layer_table_of_sngan_resnet32():
    assert (MIMICRY_G32, MIMICRY_D32) == (4_276_739, 1_053_825)
    torch.manual_seed(0)
    r = get_preset("sngan_resnet32")
    g, d = r.generator, r.discriminator
    assert g.out_shape == (3, 32, 32) and d.feature_shape == (128, 8, 8)
    t_g, t_d = layer_table(g, (128,)), layer_table(d, (3, 32, 32))
    assert (t_g.total_params, t_d.total_params) == (4_276_739, 1_053_825)
    kinds = [row.name.rsplit("-", 1)[0] for row in t_g.rows]
    # Linear, then three blocks of BN-ReLU-Upsample-Conv-BN-ReLU-Conv (+ the shortcut's Upsample, Conv1x1)
    assert kinds[0] == "Linear" and kinds.count("Conv2d") == 3 * 3 + 1 and kinds[-2:] == ["Conv2d", "Tanh"]
    assert [tuple(row.output_shape[1:]) for row in t_g.rows if row.name.startswith("Conv2d")][-1] == (3, 32, 32)
    s = r.settings
    assert (s.loss, s.g_lr, s.d_lr, s.n_critic, s.batch_size, s.z_dim, s.spectral_norm) == (
        "hinge", 2e-4, 2e-4, 5, 64, 128, True)
    opt_g, opt_d = r.build_optimizers()
    assert opt_g.defaults["betas"] == (0.0, 0.9) == opt_d.defaults["betas"]
    assert "torch-mimicry" in r.meta["source"] and "sngan_32.py" in r.meta["source"]
    assert all(type(m).__name__.startswith("Parametrized") for m in d.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


TINY = dict(image_size=16, base_channels=4, batch_size=8, z_dim=16)


def _images():
    return load_images("toy-faces", num_images=24, image_size=16, labels=True)


@pytest.mark.slow  # three tiny trainings with spectral norm: about 35 s on the 2-core machine
def test_sngan_resnet32_trains_checkpoints_resumes_bitwise_exports_and_samples(tmp_path):
    data = _images()
    torch.manual_seed(0)
    full = Trainer(get_preset("sngan_resnet32", **TINY), device="cpu", progress=False)
    full.fit(data.images, max_steps=6)
    torch.manual_seed(0)
    first = Trainer(get_preset("sngan_resnet32", **TINY), device="cpu", progress=False)
    first.fit(data.images, max_steps=4)
    first.save(tmp_path / "mid.pt")
    torch.manual_seed(123)  # resuming restores every random state
    second = Trainer.load(tmp_path / "mid.pt", device="cpu", progress=False)
    second.fit(data.images, max_steps=6)
    assert full.g_steps == second.g_steps >= 1
    for net in ("generator", "discriminator"):
        for a, b in zip(getattr(full, net).state_dict().values(), getattr(second, net).state_dict().values()):
            assert torch.equal(a, b)
    assert [h["loss_d"] for h in full.history] == [h["loss_d"] for h in first.history + second.history[4:]]
    path = second.export_generator(tmp_path / "g.safetensors")
    g = load_generator(path)
    z = torch.randn(3, 16)
    assert torch.equal(g(z), second.sampling_generator().eval()(z))
    assert second.sample(3, seed=1).shape == (3, 3, 16, 16)


def test_sngan_projection32_trains_on_labelled_data_and_keeps_its_classes(tmp_path):
    data = _images()
    torch.manual_seed(0)
    t = Trainer(get_preset("sngan_projection32", **TINY), device="cpu", progress=False, out_dir=tmp_path / "run")
    t.fit(data, max_steps=5)  # the fifth discriminator step is followed by a generator step
    assert t.class_names == data.classes and len(t.history) == 5 and t.g_steps == 1
    a = t.sample(2, seed=0, labels="bald")
    b = t.sample(2, seed=0, labels=0)
    assert a.shape == (2, 3, 16, 16) and not torch.equal(a, b)  # same latents, other class
    g = load_generator(t.export_generator(tmp_path / "g.safetensors"))
    assert g.num_classes == 10 and g.class_names == data.classes
    assert load_generator(tmp_path / "run" / "checkpoints" / "last.pt").class_names == data.classes
