"""Issue 27 item 1: the epoch's data on the training device (data/loader.py). An in-memory split kept on
the device gives, batch for batch, the images and labels of today's per-step fetch and copy — over
epochs, from a resumed step, for every rank of a sharded run —; it is copied once and dropped with the
split; file-backed splits, splits with a resize pending and splits over the memory bound keep the
per-step fetch. The meta device stands in for an accelerator on the CPU (shapes and placement, no
values); the CUDA test checks the values on the card and that drawing a batch never waits for the host.
Evaluation's batches are cut from the same kept copy, each a copy of its own."""
from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
import torch
from PIL import Image

from visionzoo.data import loader
from visionzoo.data.datasets import FolderSplit, TensorSplit
from visionzoo.data.loader import eval_batches, resident_budget, resident_tensors, train_batches

META = torch.device("meta")


def random_split(n: int = 103, seed: int = 0) -> TensorSplit:
    generator = torch.Generator().manual_seed(seed)
    return TensorSplit(torch.randint(0, 256, (n, 1, 5, 5), dtype=torch.uint8, generator=generator),
                       torch.randint(0, 10, (n,), generator=generator))


class FetchCounter:
    """Counts the calls of a split's `fetch` (the per-step path); `refuse` makes each one fail."""

    def __init__(self, split, refuse: bool = False):
        self.calls, original = 0, split.fetch

        def fetch(index):
            self.calls += 1
            if refuse:
                raise AssertionError("the resident path fetched a batch")
            return original(index)
        split.fetch = fetch


def assert_same_batches(batches, expected):
    batches, expected = list(batches), list(expected)
    assert len(batches) == len(expected) > 0
    for (images, labels), (want_images, want_labels) in zip(batches, expected):
        assert images.dtype == want_images.dtype and torch.equal(images, want_images)
        assert torch.equal(labels, want_labels)


@pytest.mark.parametrize("start_step, rank, world", [(0, 0, 1), (3, 0, 1), (0, 1, 2), (2, 2, 3)])
def test_resident_batches_are_todays_batches(start_step, rank, world):
    today, kept = random_split(), random_split()
    FetchCounter(kept, refuse=True)
    for epoch in range(3):
        settings = dict(seed=7, epoch=epoch, start_step=start_step, rank=rank, world=world)
        assert_same_batches(train_batches(kept, 16, **settings, resident=True),
                            train_batches(today, 16, **settings, resident=False))


@pytest.mark.parametrize("rank, world", [(0, 1), (1, 2), (2, 3)])
def test_resident_evaluation_batches_are_todays_and_leave_the_kept_split_unchanged(rank, world):
    today, kept = random_split(), random_split()
    FetchCounter(kept, refuse=True)
    batches = list(eval_batches(kept, 16, rank=rank, world=world, resident=True))
    assert_same_batches(batches, eval_batches(today, 16, rank=rank, world=world, resident=False))
    for images, labels in batches:   # an evaluation that writes into its batch
        images.zero_()
        labels.fill_(-1)
    assert_same_batches(eval_batches(kept, 16, rank=rank, world=world, resident=True),
                        eval_batches(today, 16, rank=rank, world=world, resident=False))


def test_on_the_cpu_nothing_changes_by_default_and_a_forced_resident_split_is_not_copied():
    split = random_split()
    fetches = FetchCounter(split)
    assert len(list(train_batches(split, 16, seed=0, epoch=0))) == fetches.calls == 6
    images, labels = resident_tensors(split, "cpu")
    assert images is split.images and labels is split.labels


def test_off_the_cpu_the_split_is_copied_once_used_by_default_and_dropped_with_the_split():
    split = random_split()
    FetchCounter(split, refuse=True)
    first = [images for images, _ in train_batches(split, 16, seed=0, epoch=0, device=META)]
    assert len(first) == 6 and all(images.device == META and images.shape == (16, 1, 5, 5) for images in first)
    copy = resident_tensors(split, META)
    assert copy[0].device == META and copy[1].device == META
    assert all(len(list(train_batches(split, 16, seed=0, epoch=epoch, device=META))) == 6 for epoch in (1, 2))
    assert resident_tensors(split, META)[0] is copy[0]   # copied once, whatever the epochs
    assert sum(len(images) for images, _ in eval_batches(split, 16, device=META)) == len(split)
    assert resident_tensors(split, META)[0] is copy[0]   # evaluation cuts from the same copy
    released = weakref.ref(copy[0])
    del split, copy
    gc.collect()
    assert released() is None


def test_file_backed_splits_and_pending_resizes_keep_the_per_step_fetch(tmp_path):
    rng = np.random.default_rng(0)
    files = []
    for i in range(8):
        files.append(tmp_path / f"{i}.png")
        Image.fromarray(rng.integers(0, 256, (6, 6)).astype(np.uint8), "L").save(files[-1])
    folder = FolderSplit(files, torch.arange(8) % 2, image_size=6, channels=1)
    stored = random_split()
    pending = TensorSplit(stored.images, stored.labels, image_size=3)   # resized as it is fetched
    for split, batch_size in ((folder, 4), (pending, 16)):
        assert resident_tensors(split, META) is None and resident_tensors(split, "cpu") is None
        fetches = FetchCounter(split)
        batches = list(train_batches(split, batch_size, seed=1, epoch=0, resident=True))
        assert fetches.calls == len(batches) > 0
        assert_same_batches(batches, train_batches(split, batch_size, seed=1, epoch=0, resident=False))
    assert batches[0][0].shape[-2:] == (3, 3)


def test_a_split_over_the_memory_bound_keeps_the_per_step_fetch(monkeypatch):
    split = random_split()
    size = split.images.nbytes + split.labels.nbytes
    monkeypatch.setattr(loader, "RESIDENT_CAP", size - 1)
    assert resident_tensors(split, META) is None
    fetches = FetchCounter(split)
    assert len(list(train_batches(split, 16, seed=0, epoch=0, device=META))) == fetches.calls == 6
    monkeypatch.setattr(loader, "RESIDENT_CAP", size)
    assert len(list(train_batches(split, 16, seed=0, epoch=1, device=META))) == 6 and fetches.calls == 6


def test_on_cuda_the_bound_is_a_share_of_the_free_memory(monkeypatch):
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: (8_000_000, 80_000_000))
    assert resident_budget(torch.device("cuda")) == int(8_000_000 * loader.RESIDENT_SHARE)
    assert resident_budget(META) == loader.RESIDENT_CAP


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_batches_are_gathered_on_the_card_and_equal_the_copied_ones():
    split, cuda = random_split(1000, 1), torch.device("cuda")
    for epoch in range(2):
        copied = list(train_batches(split, 64, seed=3, epoch=epoch, start_step=1, rank=1, world=2, device=cuda,
                                    resident=False))
        batches = train_batches(split, 64, seed=3, epoch=epoch, start_step=1, rank=1, world=2, device=cuda)
        first = next(batches)   # the split's copy and the epoch's order reach the card here
        torch.cuda.set_sync_debug_mode("error")   # from here on, a batch that waits for the host raises
        try:
            rest = list(batches)
        finally:
            torch.cuda.set_sync_debug_mode(0)
        assert all(images.device.type == labels.device.type == "cuda" for images, labels in [first, *rest])
        assert_same_batches([first, *rest], copied)
    torch.cuda.set_sync_debug_mode("error")
    try:
        evaluated = list(eval_batches(split, 64, rank=1, world=2, device=cuda))
    finally:
        torch.cuda.set_sync_debug_mode(0)
    assert_same_batches(evaluated, eval_batches(split, 64, rank=1, world=2, device=cuda, resident=False))
    assert resident_tensors(split, cuda)[0].device.type == "cuda"


def test_each_epoch_has_its_own_seeded_order_and_ranks_take_every_world_th_image_of_a_global_batch():
    # data/loader.py: a permutation per (seed, epoch); batch i is the same set of images for any number of
    # processes, rank r of W taking every W-th of it; evaluation gives every image once over the ranks
    orders = [loader.epoch_order(50, seed, epoch) for seed, epoch in ((0, 0), (0, 1), (1, 0))]
    assert torch.equal(orders[0], loader.epoch_order(50, 0, 0))
    assert not torch.equal(orders[0], orders[1]) and not torch.equal(orders[0], orders[2])
    split = TensorSplit(torch.zeros(40, 1, 1, 1, dtype=torch.uint8), torch.arange(40))
    whole = [labels for _, labels in train_batches(split, 12, seed=3, epoch=1, resident=False)]
    for world in (2, 3):
        for rank in range(world):
            shards = [labels for _, labels in train_batches(split, 12, seed=3, epoch=1, rank=rank, world=world,
                                                            resident=False)]
            assert all(torch.equal(shard, batch[rank::world]) for shard, batch in zip(shards, whole))
        seen = torch.cat([labels for rank in range(world)
                          for _, labels in eval_batches(split, 7, rank=rank, world=world, resident=False)])
        assert torch.equal(seen, torch.arange(40))
