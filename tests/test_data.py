"""Data sets: every on-disk format read correctly, every bad file rejected in one line naming it."""
import gzip
import hashlib
import pickle
import struct
import tarfile

import numpy as np
import pytest
import torch

from visionzoo.core.errors import DataError, UsageError
from visionzoo.data import download as dl
from visionzoo.data import formats
from visionzoo.data.augment import random_crop, random_flip
from visionzoo.data.datasets import load_data
from visionzoo.data.download import SOURCES, download, fetch

from conftest import assert_one_line_exit_2, cli_here


def write_idx(path, array, magic_type=0x08, gz=True):
    header = bytes([0, 0, magic_type, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if gz else open)(path, "wb").write(data)


def make_idx_set(folder, n_train=40, n_test=20, gz=True, side=28):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", rng.integers(0, 256, (n, side, side)), gz=gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", np.arange(n) % 10, gz=gz)
    return folder


def make_cifar(folder, n=20):
    sub = folder / "cifar10" / "cifar-10-batches-py"
    sub.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"labels": list(np.arange(n) % 10)}
        pickle.dump(batch, open(sub / name, "wb"), protocol=2)
    pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, open(sub / "batches.meta", "wb"))
    return sub


def make_svhn(folder, n=30):
    from scipy.io import savemat
    sub = folder / "svhn"
    sub.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("train_32x32.mat", "test_32x32.mat"):
        savemat(sub / name, {"X": rng.integers(0, 256, (32, 32, 3, n)).astype(np.uint8),
                             "y": (np.arange(n) % 10 + 1).reshape(-1, 1).astype(np.uint8)})
    return sub


def make_folder(root, per_class=6, classes=("cat", "dog")):
    from PIL import Image
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for i in range(per_class):
            Image.fromarray(rng.integers(0, 256, (20, 24, 3)).astype(np.uint8)).save(root / cls / f"{i}.png")
    return root


@pytest.mark.parametrize("gz", [True, False])
def test_idx_sets_read_gz_and_raw(tmp_path, gz):
    for name in ("mnist", "kmnist", "fashion-mnist"):
        make_idx_set(tmp_path / name, gz=gz)
        bundle = load_data(name, data_dir=tmp_path, val_size=0.25)
        assert bundle.train.images.dtype == torch.uint8 and bundle.input_size == (1, 28, 28)
        assert len(bundle.train) + len(bundle.val) == 40 and len(bundle.test) == 20
        assert len(bundle.classes) == 10
    assert load_data("kmnist", data_dir=tmp_path, val_size=0.25).classes[0] == "o"


def test_validation_split_is_seeded_and_disjoint(tmp_path):
    make_idx_set(tmp_path / "mnist", n_train=100)
    a = load_data("mnist", data_dir=tmp_path, val_size=20, seed=1)
    b = load_data("mnist", data_dir=tmp_path, val_size=20, seed=1)
    c = load_data("mnist", data_dir=tmp_path, val_size=20, seed=2)
    assert torch.equal(a.val.images, b.val.images) and not torch.equal(a.val.images, c.val.images)
    train_rows = {bytes(x.numpy()) for x in a.train.images}
    assert not any(bytes(x.numpy()) in train_rows for x in a.val.images)
    assert len(a.val) == 20


def test_normalisation_comes_from_the_training_split(tmp_path):
    make_idx_set(tmp_path / "mnist", n_train=100)
    bundle = load_data("mnist", data_dir=tmp_path, val_size=20)
    x = bundle.train.images.double() / 255
    assert bundle.mean[0] == pytest.approx(x.mean().item())
    assert bundle.std[0] == pytest.approx(x.std().item())


def test_cifar_and_svhn_and_folder_and_digits(tmp_path):
    make_cifar(tmp_path)
    bundle = load_data("cifar10", data_dir=tmp_path, val_size=10)
    assert bundle.input_size == (3, 32, 32) and len(bundle.train) == 90 and bundle.classes[1] == "c1"
    make_svhn(tmp_path)
    bundle = load_data("svhn", data_dir=tmp_path, val_size=5)
    assert bundle.input_size == (3, 32, 32) and set(bundle.test.labels.tolist()) == set(range(10))
    make_folder(tmp_path / "pics")
    bundle = load_data(f"folder:{tmp_path / 'pics'}", image_size=16, val_size=0.2)
    images, labels = bundle.train.fetch(torch.arange(len(bundle.train)))
    assert images.shape[1:] == (3, 16, 16) and bundle.classes == ["cat", "dog"]
    assert len(bundle.train) + len(bundle.val) + len(bundle.test) == 12
    digits = load_data("digits")
    assert digits.input_size == (1, 8, 8) and digits.train.images.max() <= 255
    assert load_data("digits", image_size=28).input_size == (1, 28, 28)


def test_folder_with_train_test_subtrees(tmp_path):
    make_folder(tmp_path / "d" / "train")
    make_folder(tmp_path / "d" / "test", per_class=2)
    bundle = load_data(f"folder:{tmp_path / 'd'}", image_size=8, val_size=0.25)
    assert len(bundle.test) == 4 and len(bundle.train) + len(bundle.val) == 12


BAD_IDX = {
    "bad magic": lambda p: p.write_bytes(b"\x01\x02\x03\x04" + b"\0" * 20),
    "truncated": lambda p: p.write_bytes(open(p, "rb").read()[:-7]),
    "wrong rank": lambda p: write_idx(p, np.zeros((4, 28)), gz=False),
}


@pytest.mark.parametrize("damage", sorted(BAD_IDX))
def test_bad_idx_file_exits_2_naming_it(tmp_path, damage):
    folder = make_idx_set(tmp_path / "mnist", gz=False)
    target = folder / "train-images-idx3-ubyte"
    BAD_IDX[damage](target)
    refused = cli_here("train", "--data", "mnist", "--data-dir", tmp_path, "--model", "lenet", "--epochs", "1", "--quiet")
    assert_one_line_exit_2(refused, str(target))


def test_corrupt_gzip_and_count_mismatch(tmp_path):
    folder = make_idx_set(tmp_path / "mnist")
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="t10k-images"):
        load_data("mnist", data_dir=tmp_path)
    make_idx_set(folder)
    write_idx(folder / "train-labels-idx1-ubyte.gz", np.arange(39) % 10)
    with pytest.raises(DataError, match="train-labels.*39 labels for 40 images"):
        load_data("mnist", data_dir=tmp_path)


def test_idx_payload_longer_than_its_header_is_refused_in_a_gz(tmp_path):
    """A .gz has no size to compare before inflating: one byte past the promised payload is an error."""
    path = tmp_path / "labels-idx1-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 5) + bytes(range(5)) + b"\x00")
    with pytest.raises(DataError, match=r"labels-idx1-ubyte\.gz: IDX payload has 6\+ bytes, the header promises 5"):
        formats.read_idx(path, 1)
    with gzip.open(path, "wb") as f:
        f.write(bytes([0, 0, 0x08, 1]) + struct.pack(">I", 5) + bytes(range(5)))
    assert formats.read_idx(path, 1).tolist() == [0, 1, 2, 3, 4]


def test_idx_labels_of_a_float_type_are_refused(tmp_path):
    """IDX type 0x0D is big-endian float32: labels must be an integer type."""
    path = tmp_path / "labels-idx1-ubyte"
    path.write_bytes(bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 2) + struct.pack(">2f", 1.0, 2.0))
    with pytest.raises(DataError, match="labels must be integers"):
        formats.read_idx(path, 1)


def test_16_bit_grey_images_are_scaled_by_256_not_clipped(tmp_path):
    """0..65535 maps to 0..255 by dropping the low byte (v >> 8), so 65535 is white and 32768 mid-grey."""
    from PIL import Image
    values = np.array([[0, 255, 256, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    grey = formats.read_image(tmp_path / "deep.png", 1)
    assert grey.shape == (1, 1, 5) and grey[0, 0].tolist() == [0, 0, 1, 128, 255]
    assert formats.read_image(tmp_path / "deep.png", 3)[:, 0, 4].tolist() == [255, 255, 255]


def test_cifar_rows_are_1024_red_then_green_then_blue_values_row_major(tmp_path):
    """Krizhevsky's layout: each 3072-value row holds the red plane, then green, then blue, each 32×32 row-major."""
    row = np.concatenate([np.full(1024, 10), np.full(1024, 20), np.full(1024, 30)]).astype(np.uint8)
    row[1] = 99                     # red plane, image row 0, column 1
    row[1024 + 32] = 77             # green plane, image row 1, column 0
    pickle.dump({b"data": row[None], b"labels": [3]}, open(tmp_path / "batch", "wb"), protocol=2)
    images, labels = formats.read_cifar_batch(tmp_path / "batch", "labels")
    assert images.shape == (1, 3, 32, 32) and labels.tolist() == [3]
    assert images[0, 0, 0, 1] == 99 and images[0, 1, 1, 0] == 77
    assert (images[0, 2] == 30).all() and images[0, 0].sum() == 10 * 1023 + 99


def test_svhn_images_are_n_c_h_w_and_label_10_is_the_digit_0(tmp_path):
    """SVHN's X is (H, W, C, N) and its y is 1..10, 10 standing for 0: X[y, x, c, n] becomes [n, c, y, x]."""
    from scipy.io import savemat
    x = np.zeros((32, 32, 3, 3), np.uint8)
    x[2, 5, 1, 0] = 200             # image 0, green, row 2, column 5
    x[7, 0, 2, 2] = 100             # image 2, blue, row 7, column 0
    savemat(tmp_path / "s.mat", {"X": x, "y": np.array([[10], [1], [9]], np.uint8)})
    images, labels = formats.read_svhn_mat(tmp_path / "s.mat")
    assert images.shape == (3, 3, 32, 32) and labels.tolist() == [0, 1, 9]
    assert images[0, 1, 2, 5] == 200 and images[2, 2, 7, 0] == 100 and images.sum() == 300


def test_cifar_pickle_with_foreign_objects_is_refused(tmp_path):
    sub = make_cifar(tmp_path)

    class Evil:
        def __reduce__(self):
            return (print, ("this must never run",))
    pickle.dump({b"data": Evil(), b"labels": [0]}, open(sub / "data_batch_3", "wb"))
    refused = cli_here("train", "--data", "cifar10", "--data-dir", tmp_path, "--quiet")
    assert_one_line_exit_2(refused, "data_batch_3", "refusing")
    assert "this must never run" not in refused.stdout


def test_cifar_shape_and_label_problems(tmp_path):
    sub = make_cifar(tmp_path)
    pickle.dump({b"data": np.zeros((5, 100), np.uint8), b"labels": [0] * 5}, open(sub / "test_batch", "wb"))
    with pytest.raises(DataError, match="test_batch.*3072"):
        load_data("cifar10", data_dir=tmp_path)
    pickle.dump({b"data": np.zeros((5, 3072), np.uint8), b"labels": [0] * 4}, open(sub / "test_batch", "wb"))
    with pytest.raises(DataError, match="5 images but 4 labels"):
        load_data("cifar10", data_dir=tmp_path)


def test_svhn_problems(tmp_path):
    from scipy.io import savemat
    sub = make_svhn(tmp_path)
    (sub / "test_32x32.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match="test_32x32.mat"):
        load_data("svhn", data_dir=tmp_path)
    savemat(sub / "test_32x32.mat", {"X": np.zeros((32, 32, 3, 4), np.uint8), "y": np.ones((3, 1))})
    with pytest.raises(DataError, match="4 images but 3 labels"):
        load_data("svhn", data_dir=tmp_path)


def test_folder_problems(tmp_path):
    with pytest.raises(UsageError, match="not a directory"):
        load_data(f"folder:{tmp_path / 'absent'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="no class sub-folders"):
        load_data(f"folder:{tmp_path / 'empty'}")
    make_folder(tmp_path / "split" / "val")    # val/ and test/ but no train/: not a class named "val"
    with pytest.raises(UsageError, match="no train/"):
        load_data(f"folder:{tmp_path / 'split'}")
    root = make_folder(tmp_path / "pics")
    (root / "cat" / "broken.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DataError, match="broken.png"):
        bundle = load_data(f"folder:{root}", image_size=8, val_size=0.2)
        for split in (bundle.train, bundle.val, bundle.test):
            split.fetch(torch.arange(len(split)))


def test_missing_data_set_says_where_it_looked(tmp_path):
    assert_one_line_exit_2(cli_here("train", "--data", "cifar100", "--data-dir", tmp_path, "--quiet"),
                           str(tmp_path), "--download")
    assert_one_line_exit_2(cli_here("train", "--data", "imagenet", "--quiet"), "unknown data set")


def _md5_of(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_download_from_a_mirror_is_atomic_and_checked(tmp_path, monkeypatch):
    mirror = make_idx_set(tmp_path / "mirror")
    base, files, archive = SOURCES["kmnist"]
    # The real KMNIST checksums reject the generated stand-ins ...
    with pytest.raises(DataError, match="checksum"):
        download("kmnist", tmp_path / "root0", base_url=mirror.as_uri() + "/")
    assert not list((tmp_path / "root0").iterdir())  # nothing half-written is left, no .part either
    # ... and with the stand-ins' own checksums the download goes through.
    monkeypatch.setitem(SOURCES, "kmnist", (base, [(f, _md5_of(mirror / f)) for f, _ in files], archive))
    download("kmnist", tmp_path / "root" / "kmnist", base_url=mirror.as_uri() + "/")
    assert sorted(p.name for p in (tmp_path / "root" / "kmnist").iterdir()) == sorted(f for f, _ in files)
    assert len(load_data("kmnist", data_dir=tmp_path / "root", val_size=0.25).test) == 20
    with pytest.raises(DataError, match="checksum"):
        download("mnist", tmp_path / "root2", base_url=mirror.as_uri() + "/")
    assert not list((tmp_path / "root2").iterdir())
    with pytest.raises(UsageError, match="cannot download"):
        download("kmnist", tmp_path / "root3", base_url=(tmp_path / "nothing").as_uri() + "/")
    assert not list((tmp_path / "root3").iterdir())


def test_mirror_variable_names_spell_dashes_as_underscores(tmp_path, monkeypatch):
    """fashion-mnist's mirror comes from VISIONZOO_MIRROR_FASHION_MNIST (a dash cannot be in a shell variable)."""
    mirror = make_idx_set(tmp_path / "mirror")
    _, files, archive = SOURCES["fashion-mnist"]
    unreachable = (tmp_path / "nowhere").as_uri() + "/"
    monkeypatch.setitem(SOURCES, "fashion-mnist", (unreachable, [(f, _md5_of(mirror / f)) for f, _ in files], archive))
    monkeypatch.setenv("VISIONZOO_MIRROR_FASHION_MNIST", mirror.as_uri() + "/")
    download("fashion-mnist", tmp_path / "root")
    assert sorted(p.name for p in (tmp_path / "root").iterdir()) == sorted(f for f, _ in files)


@pytest.mark.parametrize("filters", [True, False])
def test_archive_members_escaping_the_folder_are_refused(tmp_path, monkeypatch, filters):
    """A member named ../x (a path traversal) is never unpacked, with or without tarfile's extraction filters."""
    import io
    if not filters:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        for name in ("fine/a.txt", "../escaped.txt"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"hi"))
    folder = tmp_path / "root" / "data"
    with pytest.raises(DataError, match="evil.tar"):
        dl.extract(archive, folder)
    assert not (tmp_path / "root" / "escaped.txt").exists() and list(folder.iterdir()) == []


def test_every_source_has_a_published_checksum():
    for name, (_, files, _) in SOURCES.items():
        for file, md5 in files:
            assert md5 is not None and len(md5) == 32 and int(md5, 16) >= 0, (name, file)


def test_checksum_mismatch_keeps_neither_target_nor_temp_file(tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(b"not what was published")
    out = tmp_path / "out"
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(src.as_uri(), out / "file.bin", md5="0" * 32)
    assert list(out.iterdir()) == []
    fetch(src.as_uri(), out / "file.bin", md5=_md5_of(src))
    assert [p.name for p in out.iterdir()] == ["file.bin"]
    assert (out / "file.bin").read_bytes() == src.read_bytes()


class _InterruptedResponse:
    """Stands in for urlopen's answer: one chunk arrives, then the user presses Ctrl-C."""
    def __init__(self):
        self.calls = 0

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read(self, size=-1):
        self.calls += 1
        if self.calls == 1:
            return b"x" * 1000
        raise KeyboardInterrupt


def test_ctrl_c_during_download_leaves_no_part_file(tmp_path, monkeypatch):
    monkeypatch.setattr(dl.urllib.request, "urlopen", lambda url, timeout=None: _InterruptedResponse())
    with pytest.raises(KeyboardInterrupt):
        fetch("https://example.invalid/train_32x32.mat", tmp_path / "svhn" / "train_32x32.mat", md5=None)
    assert list((tmp_path / "svhn").iterdir()) == []


def _cifar_archive(tmp_path):
    """A small stand-in for cifar-10-python.tar.gz (incompressible, so truncating it bites mid-way)."""
    make_cifar(tmp_path / "src", n=200)
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "src" / "cifar10" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return archive


def _stage(archive, folder, data=None):
    folder.mkdir(parents=True)
    (folder / archive.name).write_bytes(archive.read_bytes() if data is None else data)
    return folder


def test_download_unpacks_cifar_atomically(tmp_path, monkeypatch):
    archive = _cifar_archive(tmp_path)
    base, _, name = SOURCES["cifar10"]
    monkeypatch.setitem(SOURCES, "cifar10", (base, [(name, _md5_of(archive))], name))
    monkeypatch.setenv("VISIONZOO_MIRROR_CIFAR10", tmp_path.as_uri() + "/")
    bundle = load_data("cifar10", data_dir=tmp_path / "root", download=True, val_size=100)
    assert len(bundle.train) == 900 and len(bundle.test) == 200
    root = tmp_path / "root" / "cifar10"
    assert sorted(p.name for p in root.iterdir()) == ["cifar-10-batches-py", "cifar-10-python.tar.gz"]


def test_truncated_archive_leaves_no_folder_behind(tmp_path):
    archive = _cifar_archive(tmp_path)
    data = archive.read_bytes()
    folder = _stage(archive, tmp_path / "root" / "cifar10", data[: len(data) * 2 // 3])
    with pytest.raises(DataError, match="cifar-10-python.tar.gz.*cannot unpack"):
        download("cifar10", folder)        # the archive is there already: no fetch, only unpacking
    assert [p.name for p in folder.iterdir()] == ["cifar-10-python.tar.gz"]
    with pytest.raises(UsageError, match="not found"):   # and the data set does not look present
        load_data("cifar10", data_dir=tmp_path / "root")


def test_ctrl_c_while_unpacking_leaves_no_folder_behind(tmp_path, monkeypatch):
    archive = _cifar_archive(tmp_path)
    folder = _stage(archive, tmp_path / "root" / "cifar10")
    real_makefile = tarfile.TarFile.makefile
    written = []

    def makefile(self, tarinfo, targetpath):
        if len(written) == 3:
            raise KeyboardInterrupt
        real_makefile(self, tarinfo, targetpath)
        written.append(targetpath)
    monkeypatch.setattr(tarfile.TarFile, "makefile", makefile)
    with pytest.raises(KeyboardInterrupt):
        download("cifar10", folder)
    assert len(written) == 3                # some members really were written before the interrupt
    assert [p.name for p in folder.iterdir()] == ["cifar-10-python.tar.gz"]


def test_random_crop_and_flip_are_batched_and_seeded():
    x = torch.arange(2 * 1 * 5 * 5, dtype=torch.float32).view(2, 1, 5, 5)
    crops = [random_crop(x, 2, torch.Generator().manual_seed(3)) for _ in range(2)]
    assert torch.equal(crops[0], crops[1]) and crops[0].shape == x.shape
    # Every crop is a window of the zero-padded image.
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    for i in range(2):
        windows = padded[i, 0].unfold(0, 5, 1).unfold(1, 5, 1).reshape(-1, 5, 5)
        assert any(torch.equal(w, crops[0][i, 0]) for w in windows)
    flipped = random_flip(x, torch.Generator().manual_seed(0), p=1.0)
    assert torch.equal(flipped, x.flip(3))
    assert torch.equal(random_flip(x, torch.Generator().manual_seed(0), p=0.0), x)


def _data_classes():
    from visionzoo.data.cloze import ClozeData
    from visionzoo.data.datasets import DataBundle
    from visionzoo.data.detection import DetectionData
    from visionzoo.data.synthetic_sequences import SequenceData
    from visionzoo.data.text import TextData
    from visionzoo.data.translation import ParallelData
    return [DataBundle, DetectionData, SequenceData, TextData, ParallelData, ClozeData]


@pytest.mark.parametrize("data_class", _data_classes(), ids=lambda cls: cls.__name__)
def test_every_data_set_gives_its_splits_by_name_and_refuses_another_name(data_class):
    from visionzoo.data.datasets import SPLITS
    data = object.__new__(data_class)
    data.train, data.val, data.test = "train images", "val images", "test images"
    assert [data.split(name) for name in SPLITS] == ["train images", "val images", "test images"]
    with pytest.raises(UsageError, match="unknown split 'valid'; use train, val or test$"):
        data.split("valid")
