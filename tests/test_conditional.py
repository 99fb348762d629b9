"""Labels end to end: data with labels, the step that receives them, ACGAN, and conditional metrics."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from torch import nn

from gankit import ConfigError, Trainer
from gankit.conditional import AuxClassifierHead
from gankit.data import BatchLoader, ImageTensorDataset, load_images
from gankit.data.cache import load_cache, save_cache
from gankit.data.standard import standard_targets
from gankit.data.toyfaces import TOY_FACES_CLASSES, toy_faces_labels
from gankit.errors import DataError
from gankit.metrics import conditional_accuracy, per_class_evaluate, train_label_classifier
from gankit.models import Discriminator
from gankit.presets import Recipe, get_preset
from gankit.resblocks import DBlock
from gankit.train import ACGANStep, GANStep

TINY = dict(image_size=16, base_channels=4, batch_size=8, z_dim=16)


def test_toy_faces_labels_are_ten_stable_classes():
    labels = toy_faces_labels(600, seed=0)
    counts = torch.bincount(labels, minlength=10)
    assert len(TOY_FACES_CLASSES) == 10 and labels.max() < 10
    assert (counts > 600 * 0.04).all()  # every class present, none dominating
    assert torch.equal(toy_faces_labels(100, seed=0), labels[:100])
    assert not torch.equal(toy_faces_labels(100, seed=1), labels[:100])
    ds = load_images("toy-faces", num_images=40, image_size=8, labels=True)
    assert torch.equal(ds.labels, labels[:40]) and ds.classes == list(TOY_FACES_CLASSES)
    assert load_images("toy-faces", num_images=4, image_size=8).labels is None  # unlabeled by default


def _folder(root, classes, per_class=3, loose=False):
    colours = {"blue": (0, 0, 255), "red": (255, 0, 0), "green": (0, 255, 0)}
    for name in classes:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            Image.new("RGB", (8, 8), colours[name]).save(root / name / f"{i}.png")
    if loose:
        Image.new("RGB", (8, 8), (9, 9, 9)).save(root / "loose.png")
    return root


def test_image_folder_classes_become_labels_and_are_cached(tmp_path):
    root = _folder(tmp_path / "data", ["red", "blue"])
    for _ in range(2):  # decoded, then read from the cache
        ds = load_images(f"imagefolder:{root}", image_size=8)
        assert ds.classes == ["blue", "red"] and ds.num_classes == 2
        red = ds.images[:, 0].float().mean(dim=(1, 2)) > 128
        assert torch.equal(ds.labels, red.long())  # label 1 ("red") exactly for the red images
    plain = load_images(root, image_size=8, labels=True)
    assert torch.equal(plain.labels, ds.labels)
    assert load_images(root, image_size=8, recursive=True).labels is None


def test_loose_files_have_no_class(tmp_path):
    root = _folder(tmp_path / "data", ["red"], loose=True)
    assert load_images(f"imagefolder:{root}", image_size=8).labels is None  # as before: unlabeled
    with pytest.raises(DataError, match="class sub-folder"):
        load_images(f"imagefolder:{root}", image_size=8, labels=True)


def test_cache_keeps_labels_and_class_names(tmp_path):
    images = torch.zeros(3, 3, 2, 2, dtype=torch.uint8)
    save_cache(tmp_path / "c.safetensors", images, "fp", files=[], skipped=[], source="x",
               labels=torch.tensor([2, 0, 1]), classes=["a", "b", "c"])
    entry = load_cache(tmp_path / "c.safetensors", "fp")
    assert entry.labels.tolist() == [2, 0, 1] and entry.classes == ["a", "b", "c"]


def test_standard_dataset_targets_are_read_without_decoding():
    class FakeCifar(torch.utils.data.Dataset):
        targets = [3, 1, 4, 1, 5]
        classes = [str(i) for i in range(6)]

    labels, names = standard_targets(FakeCifar(), 3)
    assert labels.tolist() == [3, 1, 4] and names[5] == "5"

    class NoTargets(torch.utils.data.Dataset):
        pass

    assert standard_targets(NoTargets(), 3) is None


def test_batch_loader_yields_labels_with_their_images():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    ds = ImageTensorDataset(images, labels=torch.arange(10) % 3)
    for x, y in BatchLoader(ds, 4, seed=1, labels=True):
        index = ((x[:, 0, 0, 0] + 1) * 127.5).round().long()
        assert torch.equal(y, index % 3)
    assert isinstance(next(iter(BatchLoader(ds, 4))), torch.Tensor)  # no labels unless asked
    with pytest.raises(DataError, match="no labels"):
        BatchLoader(images, 4, labels=True)


class Recording(GANStep):
    """A step that records the labels it is given (the public d_loss seam)."""

    def __init__(self):
        super().__init__("hinge")
        self.seen = []

    def d_loss(self, ctx):
        self.seen.append((ctx.labels, ctx.fake_labels))
        return super().d_loss(ctx)


@pytest.mark.parametrize("form", ["dataset", "tensors", "iterable"])
def test_fit_passes_labels_to_the_step(form):
    data = load_images("toy-faces", num_images=16, image_size=16, labels=True)
    given = {"dataset": data, "tensors": torch.utils.data.TensorDataset(data.images.float() / 127.5 - 1, data.labels),
             "iterable": [(data.images[:8].float() / 127.5 - 1, data.labels[:8])]}[form]
    torch.manual_seed(0)
    step = Recording()
    t = Trainer(get_preset("sngan_projection32", **TINY), step=step, device="cpu", progress=False)
    t.fit(given, max_steps=1)
    real, fake = step.seen[0]
    assert real is not None and torch.equal(fake, real)  # fakes made for the batch's classes
    if form == "iterable":
        assert torch.equal(real, data.labels[:8])


def test_uniform_fake_labels_and_unconditional_models_ignore_labels():
    data = load_images("toy-faces", num_images=16, image_size=16, labels=True)
    step = GANStep("hinge", fake_labels="uniform")
    seen = []
    step.d_loss = lambda ctx, f=step.d_loss: (seen.append(ctx.fake_labels), f(ctx))[1]
    torch.manual_seed(0)
    Trainer(get_preset("sngan_projection32", **TINY), step=step, device="cpu", progress=False).fit(data, max_steps=1)
    assert seen[0].shape == (8,) and seen[0].max() < 10
    # an unconditional recipe trains on labelled data as before (the labels are not used)
    torch.manual_seed(0)
    t = Trainer(get_preset("sngan_resnet32", **TINY), device="cpu", progress=False)
    t.fit(data, max_steps=1)
    assert t.num_classes == 0 and len(t.history) == 1


def test_a_conditional_recipe_refuses_unlabeled_data_and_wrong_class_counts():
    unlabeled = load_images("toy-faces", num_images=16, image_size=16)
    t = Trainer(get_preset("sngan_projection32", **TINY), device="cpu", progress=False)
    with pytest.raises(ConfigError, match="no labels"):
        t.fit(unlabeled, max_steps=1)
    with pytest.raises(ConfigError, match="no labels"):
        t.fit(unlabeled.images.float() / 127.5 - 1, max_steps=1)
    labelled = load_images("toy-faces", num_images=16, image_size=16, labels=True)
    few = Trainer(get_preset("sngan_projection32", **TINY, num_classes=3), device="cpu", progress=False)
    with pytest.raises(ConfigError, match="num_classes=10"):
        few.fit(labelled, max_steps=1)


def test_acgan_step_trains_with_an_auxiliary_classifier():
    base = get_preset("sngan_projection32", **TINY)
    d = Discriminator(nn.Sequential(DBlock(3, 8, preactivation=False), DBlock(8, 8)), AuxClassifierHead(8, 10),
                      image_shape=(3, 16, 16))
    recipe = Recipe("acgan_tiny", base.generator, d, base.settings)
    data = load_images("toy-faces", num_images=16, image_size=16, labels=True)
    torch.manual_seed(0)
    t = Trainer(recipe, step=ACGANStep("hinge", class_weight=1.0), device="cpu", progress=False)
    t.fit(data, max_steps=5)
    assert "class_d" in t.history[0] and "class_g" in t.history[4]
    assert all(h["class_d"] > 0 for h in t.history)
    with pytest.raises(ConfigError, match="AuxClassifierHead"):
        Trainer(get_preset("sngan_projection32", **TINY), step=ACGANStep("hinge"), device="cpu",
                progress=False).fit(data, max_steps=1)


class ColourGenerator(nn.Module):
    """A 'perfect' conditional generator: class k is a flat 16x16 image of its own grey level."""

    z_dim, num_classes, class_names = 2, 3, ["a", "b", "c"]

    def forward(self, z, labels):
        level = (labels.float() - 1.0) * 0.8  # -0.8, 0, 0.8
        return level.view(-1, 1, 1, 1).expand(len(z), 3, 16, 16) + 0.01 * z[:, :1, None, None]


def test_conditional_accuracy_of_a_perfect_and_a_label_blind_generator():
    labels = torch.arange(60) % 3
    offsets = torch.randint(-6, 7, (60,), generator=torch.Generator().manual_seed(0))  # images differ a little
    images = ((labels.float() - 1) * 0.8 + 1).mul(127.5).round().add(offsets).clamp(0, 255).to(torch.uint8)
    images = images.view(-1, 1, 1, 1).expand(60, 3, 16, 16).contiguous()
    clf = train_label_classifier(images, labels, epochs=30, batch_size=16, seed=0)
    assert clf.heldout_accuracy >= 0.9 and clf.num_heldout == 12
    good = conditional_accuracy(ColourGenerator(), clf, num_per_class=10)
    assert good.accuracy >= 0.9 and abs(good.chance - 1 / 3) < 1e-9

    class Blind(ColourGenerator):
        def forward(self, z, labels):
            return super().forward(z, torch.zeros_like(labels))

    blind = conditional_accuracy(Blind(), clf, num_per_class=10)
    assert blind.accuracy <= 0.4 and blind.per_class[1:] == [0.0, 0.0]  # every image looks like class 0
    result = per_class_evaluate(ColourGenerator(), images, labels, metrics=("swd",), num_per_class=16)
    assert set(result.values) == {"a", "b", "c"} and result.num_real == {"a": 20, "b": 20, "c": 20}
    assert all(v["swd"] >= 0 for v in result.values.values()) and "swd" in result.mean
    assert result.results["b"].reference == "class b"


def test_conditional_cpu_run_figures_in_the_docs_are_the_committed_run():
    """docs/conditional.rst quotes benchmarks/results-conditional-cpu.json, not other numbers."""
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    run = json.loads((root / "benchmarks" / "results-conditional-cpu.json").read_text())
    page = (root / "docs" / "conditional.rst").read_text()
    final = run["final_conditional_accuracy"]
    assert f"conditional accuracy of {final:.3f}" in page.replace("**", "")
    assert f"{run['classifier']['heldout_accuracy']:.3f}" in page
    assert f"chance level of {run['chance']:.3f}" in page.replace("**", "")
    curve = ", ".join(f"{c['accuracy']:.3f}" for c in run["curve"])
    assert curve in " ".join(page.split())
    assert run["curve"][-1]["step"] == 20000 and final == run["curve"][-1]["accuracy"]
