"""Issue 29, family 8: memory that follows the work. `--train-limit`/`--test-limit` are applied before
anything is resized (and keep the same images), channel statistics are read a chunk at a time,
evaluation batches are bounded in pixels, and `eval`/`explain`/`attack` resize only the images they
read. docs/reliability.md holds the table of cases with these tests' names."""
import subprocess
import sys

import pytest
import torch
from torchvision.transforms.v2 import functional
from torchvision.transforms.v2.functional import resize

from visionzoo.cli.main import main
from visionzoo.data import datasets, loader
from visionzoo.data.datasets import STATS_CHUNK, TensorSplit, channel_stats, load_data


@pytest.fixture
def resized_counts(monkeypatch):
    """The number of images of every call of datasets._resize (the one place in-memory sets are resized)."""
    counts = []
    original = datasets._resize

    def counting(images, size):
        if size is not None and tuple(images.shape[-2:]) != (size, size):
            counts.append(len(images))
        return original(images, size)
    monkeypatch.setattr(datasets, "_resize", counting)
    return counts


def test_the_training_and_test_subsets_are_taken_before_resizing_and_are_the_same_images(resized_counts):
    seed, side, limit, test_limit = 5, 12, 20, 7
    bundle = load_data("digits", val_size=0.1, seed=seed, image_size=side, train_limit=limit, test_limit=test_limit)
    # memory: no call resizes more than a chunk of the statistics or the (whole) validation split
    assert max(resized_counts) <= max(STATS_CHUNK, len(bundle.val))
    assert limit in resized_counts and test_limit in resized_counts
    # the same images as before: the whole set resized, the validation split carved, then the seeded subset
    (x_train, _), (x_test, _), _ = datasets._load_digits("digits", None, False)
    whole = resize(torch.from_numpy(x_train), [side, side], antialias=True)
    order = torch.randperm(len(whole), generator=torch.Generator().manual_seed(seed))
    train = whole[order[datasets._val_count(len(whole), 0.1):]]
    subset = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))[:limit]
    assert torch.equal(bundle.train.images, train[subset])
    assert torch.equal(bundle.test.images, resize(torch.from_numpy(x_test[:test_limit]), [side, side], antialias=True))
    # and the normalisation is still that of the whole training split
    x = train.double() / 255
    assert bundle.mean == pytest.approx(x.mean((0, 2, 3)).tolist(), abs=1e-6)
    assert bundle.std == pytest.approx(x.std((0, 2, 3)).tolist(), abs=1e-6)


class RecordingSplit:
    def __init__(self, split: TensorSplit):
        self.split, self.fetched = split, []

    def __len__(self):
        return len(self.split)

    def fetch(self, index):
        self.fetched.append(len(index))
        return self.split.fetch(index)


def test_channel_statistics_are_read_a_chunk_at_a_time_and_match_float64():
    images = torch.randint(0, 256, (700, 3, 5, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    images[:, 1] //= 4   # channels of other means and spreads
    split = RecordingSplit(TensorSplit(images, torch.zeros(700, dtype=torch.int64)))
    mean, std = channel_stats(split, limit=500, chunk=64)
    assert max(split.fetched) <= 64 and sum(split.fetched) == 500
    x = images[:500].double() / 255
    assert mean == pytest.approx(x.mean((0, 2, 3)).tolist(), abs=1e-6)
    assert std == pytest.approx(x.std((0, 2, 3)).tolist(), abs=1e-6)


@pytest.mark.parametrize("world", [1, 2])
def test_evaluation_batches_are_bounded_in_pixels_and_cover_every_image_once_in_order(monkeypatch, world):
    monkeypatch.setattr(loader, "EVAL_BATCH_VALUES", 3 * 8 * 8 * 5)
    split = TensorSplit(torch.zeros(23, 3, 8, 8, dtype=torch.uint8), torch.arange(23))
    seen = []
    for rank in range(world):
        batches = list(loader.eval_batches(split, 100, rank=rank, world=world))
        assert all(len(labels) <= 5 for _, labels in batches)
        seen += [labels for _, labels in batches]
    assert torch.equal(torch.cat(seen), torch.arange(23))


@pytest.fixture(scope="module")
def resized_run(tmp_path_factory):
    """lenet trained for one epoch on `fake` (600 + 200 images of 28 px) resized to 16 px."""
    run = tmp_path_factory.mktemp("memory") / "run"
    result = subprocess.run([sys.executable, "-m", "visionzoo", "train", "--model", "lenet", "--data", "fake",
                             "--image-size", "16", "--epochs", "1", "--train-limit", "32", "--batch-size", "16",
                             "--quiet", "--out", str(run)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    return run


def test_attack_explain_and_eval_resize_only_the_images_they_read(resized_run, resized_counts, tmp_path, capsys):
    assert main(["attack", str(resized_run), "--method", "fgsm", "--eps", "0.1", "--n", "4"]) == 0
    assert sum(resized_counts) <= 4 + 1   # the four attacked, and one that tells the input size
    resized_counts.clear()
    assert main(["explain", str(resized_run), "--method", "saliency", "--index", "2", "--out", str(tmp_path)]) == 0
    assert sum(resized_counts) <= 1 + 1
    resized_counts.clear()
    assert main(["eval", str(resized_run), "--json"]) == 0
    assert sum(resized_counts) <= 200 + 2   # the test split, not the 600 training images
    capsys.readouterr()


def test_a_whole_split_is_resized_a_chunk_at_a_time_to_the_same_pixels(monkeypatch):
    images = torch.randint(0, 256, (10, 3, 9, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    monkeypatch.setattr(datasets, "RESIZE_CHUNK", 3)
    calls = []
    monkeypatch.setattr(functional, "resize", lambda x, *a, **k: calls.append(len(x)) or resize(x, *a, **k))
    resized = datasets._resize(images, 5)
    assert calls == [3, 3, 3, 1]
    assert torch.equal(resized, resize(images, [5, 5], antialias=True))
