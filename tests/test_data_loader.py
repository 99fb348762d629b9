"""BatchLoader: exact epochs, reproducible order, resumable, independent of the global RNG."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torchvision import transforms

from gankit.data import BatchLoader, ImageTensorDataset, denormalize, normalize_uint8
from gankit.errors import DataError


def numbered(n: int) -> torch.Tensor:
    """uint8 images (n, 3, 2, 2) whose first two pixels spell their index."""
    images = torch.zeros(n, 3, 2, 2, dtype=torch.uint8)
    index = torch.arange(n)
    images[:, 0, 0, 0] = (index // 256).to(torch.uint8)
    images[:, 0, 0, 1] = (index % 256).to(torch.uint8)
    return images


def ids(batch: torch.Tensor) -> list[int]:
    pixels = denormalize(batch.cpu()).long()
    return (pixels[:, 0, 0, 0] * 256 + pixels[:, 0, 0, 1]).tolist()


def epoch_ids(loader) -> list[int]:
    return [i for batch in loader for i in ids(batch)]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 600), batch_size=st.integers(1, 70), drop_last=st.booleans(),
       shuffle=st.booleans(), seed=st.integers(0, 2**40), epoch=st.integers(0, 1000))
def test_each_image_exactly_once_per_epoch(n, batch_size, drop_last, shuffle, seed, epoch):
    if drop_last and batch_size > n:
        with pytest.raises(DataError):
            BatchLoader(numbered(n), batch_size, drop_last=drop_last)
        return
    loader = BatchLoader(numbered(n), batch_size, shuffle=shuffle, seed=seed,
                         drop_last=drop_last)
    loader.set_epoch(epoch)
    batches = list(loader)
    assert len(batches) == len(loader)
    assert all(b.shape[0] == batch_size for b in batches[:-1])
    seen = [i for b in batches for i in ids(b)]
    assert len(seen) == len(set(seen))
    if drop_last:
        assert len(seen) == (n // batch_size) * batch_size
    else:
        assert sorted(seen) == list(range(n))
    if not shuffle:
        assert seen == list(range(len(seen)))


def test_same_seed_and_epoch_same_order_other_epochs_differ():
    a, b = BatchLoader(numbered(50), 8, seed=3), BatchLoader(numbered(50), 8, seed=3)
    orders = {}
    for epoch in range(4):
        a.set_epoch(epoch)
        b.set_epoch(epoch)
        orders[epoch] = epoch_ids(a)
        assert orders[epoch] == epoch_ids(b)
    assert len({tuple(o) for o in orders.values()}) == 4
    other_seed = BatchLoader(numbered(50), 8, seed=4)
    assert epoch_ids(other_seed) != orders[0]


def test_iteration_moves_on_to_the_next_epoch():
    loader = BatchLoader(numbered(30), 7, seed=1)
    first, second = epoch_ids(loader), epoch_ids(loader)
    loader.set_epoch(1)
    assert epoch_ids(loader) == second and first != second
    assert loader.epoch == 2 and loader.batch_index == 0


@pytest.mark.parametrize("start", [0, 1, 4, 5])
def test_iter_from_is_the_tail_of_the_epoch(start):
    loader = BatchLoader(numbered(37), 8, seed=11)
    loader.set_epoch(6)
    full = [ids(b) for b in loader]
    assert [ids(b) for b in loader.iter_from(start, epoch=6)] == full[start:]
    loader.set_epoch(6, start_batch=start)
    assert [ids(b) for b in loader] == full[start:]


def test_state_dict_resumes_mid_epoch():
    loader = BatchLoader(numbered(40), 6, seed=2)
    loader.set_epoch(3)
    full = [ids(b) for b in loader]
    loader.set_epoch(3)
    iterator = iter(loader)
    for _ in range(2):
        next(iterator)
    state = loader.state_dict()
    assert (state["epoch"], state["batch"]) == (3, 2)
    resumed = BatchLoader(numbered(40), 6)
    resumed.load_state_dict(state)
    assert [ids(b) for b in resumed] == full[2:]
    with pytest.raises(DataError, match="batch size"):
        BatchLoader(numbered(40), 5).load_state_dict(state)


def test_global_rng_is_neither_used_nor_changed():
    loader = BatchLoader(numbered(64), 16, seed=0)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    order = epoch_ids(loader)
    assert torch.equal(state, torch.get_rng_state())
    torch.manual_seed(999)
    loader.set_epoch(0)
    assert epoch_ids(loader) == order


def test_batches_equal_torchvision_normalisation(device):
    images = torch.randint(0, 256, (9, 3, 5, 5), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    dataset = ImageTensorDataset(images)
    loader = BatchLoader(dataset, 4, shuffle=False, device=device)
    batches = list(loader)
    assert [b.device.type for b in batches] == [device.type] * 3
    normalize = transforms.Normalize((0.5,) * 3, (0.5,) * 3)
    expected = torch.stack([normalize(transforms.functional.to_tensor(
        img.permute(1, 2, 0).numpy())) for img in images])
    assert torch.equal(torch.cat(batches).cpu(), expected)
    assert torch.equal(torch.stack([dataset[i] for i in range(9)]), expected)


def test_every_byte_value_normalises_exactly(device):
    values = torch.arange(256, dtype=torch.uint8)
    expected = transforms.Normalize((0.5,), (0.5,))(
        values.float().div(255).view(1, 16, 16)).view(-1)
    assert torch.equal(normalize_uint8(values.to(device)).cpu(), expected)
    assert torch.equal(denormalize(expected), values)


def test_float_images_are_served_as_they_are():
    images = torch.linspace(-1, 1, 4 * 3 * 2 * 2).view(4, 3, 2, 2)
    batches = list(BatchLoader(images, 2, shuffle=False))
    assert torch.equal(torch.cat(batches), images)


def test_rejects_bad_input():
    with pytest.raises(TypeError):
        BatchLoader(torch.zeros(4, 3, 2, 2, dtype=torch.int32), 2)
    with pytest.raises(TypeError):
        BatchLoader(torch.zeros(3, 2, 2), 2)
    with pytest.raises(ValueError):
        BatchLoader(numbered(4), 0)
    with pytest.raises(DataError, match="fewer than batch_size"):
        BatchLoader(numbered(4), 5, drop_last=True)
    with pytest.raises(DataError, match="no images"):
        BatchLoader(numbered(0), 1)


def test_lookup_table_path_equals_the_cpu_operations():
    # Off the CPU, batches are converted through a table; check it on every byte value.
    from gankit.data.convert import _lut_normalize

    values = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(1))
    assert torch.equal(_lut_normalize(values), normalize_uint8(values))
    every = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(_lut_normalize(every), normalize_uint8(every))
