"""Issue 29, family by family: every option validated (4), one line and exit 2 for bad input (5),
integrity of what we write (2), bounded work for untrusted input (3), a run directory belongs to
one run (1), signals and disks (6), data that is what it claims (7). docs/reliability.md holds the
table of cases with these tests' names."""
import json
import math
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from visionzoo.cli.main import build_parser
from visionzoo.core.errors import DataError, UsageError
from visionzoo.core.io import json_text, read_torch, write_torch
from visionzoo.engine.trainer import TrainConfig

from conftest import assert_one_line_exit_2, cli_here, cli_process

FAKE = ["train", "--model", "lenet", "--data", "fake", "--batch-size", "16", "--seed", "3", "--quiet",
        "--amp", "off", "--label-smoothing", "0"]


# ---- family 4: every option validated ---------------------------------------------------------------

@pytest.mark.parametrize("values", [
    dict(clip_grad=-1.0), dict(lr=math.inf), dict(lr=math.nan), dict(weight_decay=-1.0), dict(crop=-1),
    dict(warmup_epochs=-1.0), dict(gamma=-1.0), dict(checkpoint_every=-1), dict(train_limit=0),
    dict(train_limit=-5), dict(test_limit=0), dict(step_size=0), dict(image_size=0), dict(momentum=-1.0),
    dict(momentum=math.nan), dict(adv_eps=math.inf), dict(model_args={"width": math.nan}),
])
def test_meaningless_option_values_are_refused_naming_the_option(values):
    (name, value), = values.items()
    with pytest.raises(UsageError, match="--" + name.replace("_", "-").replace("model-args", "model-arg")):
        TrainConfig(**values).validate()


def test_the_defaults_and_boundary_values_still_pass():
    TrainConfig().validate()
    TrainConfig(weight_decay=0.0, crop=0, warmup_epochs=0.0, checkpoint_every=0, momentum=0.0).validate()


@pytest.mark.parametrize("argv", [
    ["eval", "run", "--batch-size", "-1"], ["eval", "run", "--batch-size", "0"],
    ["attack", "run", "--method", "fgsm", "--eps", "nan"], ["attack", "run", "--method", "pgd", "--n", "0"],
    ["compress", "run", "--method", "prune", "--out", "o", "--sparsity", "1.5"],
    ["compress", "run", "--method", "prune", "--out", "o", "--lr", "inf"],
    ["explain", "run", "--method", "cam", "--out", "o", "--limit", "-3"],
])
def test_other_commands_refuse_meaningless_numbers_while_parsing(argv):
    with pytest.raises(UsageError, match=argv[-2]):
        build_parser().parse_args(argv)


def test_json_output_never_holds_nan_or_infinity():
    text = json_text({"loss": math.nan, "rows": [math.inf, -math.inf, 0.5], "n": 3})

    def refuse(constant):
        raise AssertionError(f"{constant} in {text}")
    assert json.loads(text, parse_constant=refuse) == {"loss": None, "rows": [None, None, 0.5], "n": 3}


def test_non_finite_weights_after_the_last_step_stop_the_run(tmp_path):
    # one step of one image at a constant, huge rate: its loss (computed before the step) is finite, the
    # weights after it are not
    run = tmp_path / "run"
    result = cli_process(*FAKE, "--batch-size", "1", "--train-limit", "1", "--epochs", "1", "--lr", "3e38",
                         "--schedule", "constant", "--out", run)
    assert result.returncode == 1, result.stderr
    assert "non-finite" in result.stderr
    assert not (run / "model.safetensors").exists() and not (run / "summary.json").exists()


# ---- family 2: integrity of what we write -----------------------------------------------------------

VZC_META = {"name": "lenet", "kwargs": {"num_classes": 10, "in_chans": 1}, "input_size": [1, 28, 28],
            "mean": [0.5], "std": [0.25], "classes": [str(i) for i in range(10)]}


def small_vzc(path):
    """A deep-compressed LeNet (sparse shared Huffman-coded weights, raw biases) written to `path`."""
    from visionzoo.compress import quantize
    from visionzoo.compress.fileformat import LayerCoding, save_compressed
    from visionzoo.compress.prune import prune, resolve_targets
    from visionzoo.registry import create_model
    torch.manual_seed(0)
    model = create_model("lenet", num_classes=10, in_chans=1)
    masks = prune(model, resolve_targets(model, 0.8))
    quantize.share_weights(model, conv_bits=4, fc_bits=3, init="linear", masks=masks)
    codings = {name: LayerCoding("shared", sparse=True, bits=4, index_bits=4)
               for name, module in model.named_modules() if isinstance(module, (nn.Conv2d, nn.Linear))}
    save_compressed(path, model, VZC_META, codings)
    return model


def test_every_single_bit_flip_of_a_vzc_file_is_refused(tmp_path):
    from visionzoo.compress.fileformat import load_compressed
    path = tmp_path / "model.vzc"
    small_vzc(path)
    blob = path.read_bytes()
    positions = sorted({*range(0, 48), *np.linspace(48, len(blob) - 1, 40).astype(int).tolist()})
    for position in positions:
        flipped = bytearray(blob)
        flipped[position] ^= 1 << (position % 8)
        path.write_bytes(bytes(flipped))
        with pytest.raises(DataError, match="model.vzc"):
            load_compressed(path)
    path.write_bytes(blob)
    load_compressed(path)   # the intact file still loads


def test_a_cut_vzc_or_checkpoint_is_reported_as_truncated(tmp_path):
    from visionzoo.compress.fileformat import load_compressed
    path = tmp_path / "model.vzc"
    small_vzc(path)
    blob = path.read_bytes()
    for length in (10, 60, len(blob) // 2, len(blob) - 1):
        path.write_bytes(blob[:length])
        with pytest.raises(DataError, match="truncated"):
            load_compressed(path)
    checkpoint = tmp_path / "checkpoint.pt"
    write_torch(checkpoint, {"model": {"w": torch.zeros(1000)}, "epoch": 1})
    checkpoint.write_bytes(checkpoint.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated"):
        read_torch(checkpoint)


def run_dir_with(tmp_path, meta: dict, state: dict | None = None):
    from visionzoo.registry import create_model
    run = tmp_path / "run"
    run.mkdir(exist_ok=True)
    (run / "model.json").write_text(json.dumps(meta))
    save_file(state if state is not None else create_model("lenet", num_classes=10, in_chans=1).state_dict(),
              str(run / "model.safetensors"))
    return run


def test_the_tasks_whose_model_json_must_hold_the_image_keys_are_the_image_tasks():
    # weights.py sits below tasks and cannot ask them: its list is kept equal to theirs here
    from visionzoo.engine.trainer import TASK_CLASSES
    from visionzoo.tasks.base import ImageTask
    from visionzoo.weights import IMAGE_TASKS
    assert set(IMAGE_TASKS) == {name for name, task in TASK_CLASSES.items() if issubclass(task, ImageTask)}


@pytest.mark.parametrize("change, fragment", [
    (dict(classes=["a", "b"]), "2 class names for num_classes 10"),
    (dict(std=[0.0]), "std"),
    (dict(std=[-1.0]), "std"),
    (dict(mean=[0.5, 0.5, 0.5]), "3 mean values for 1 input channels"),
    (dict(mean=["x"]), "mean"),
    (dict(kwargs={"num_classes": "10", "in_chans": 1}), "num_classes"),
    (dict(kwargs=[1, 2]), "kwargs"),
    (dict(input_size=[0, 0, 0]), "input_size"),
    (dict(name=7), "name"),
    (dict(data=5), '"data" 5 is not a name'),
    (dict(data_args=[1]), '"data_args"'),
    (dict(data_args={"val_size": "x"}), '"data_args"'),
    (dict(eval={"batch_size": -5}), '"eval"'),
    (dict(eval="x"), '"eval"'),
    (dict(task="classification"), 'no "data" for its classification network'),   # a run's model.json has all four
])
def test_model_json_fields_are_validated(tmp_path, change, fragment):
    from visionzoo.weights import load_checkpoint
    run = run_dir_with(tmp_path, {**VZC_META, **change})
    with pytest.raises(DataError, match=fragment):
        load_checkpoint(run)


def test_weights_of_another_shape_are_refused_naming_the_tensor(tmp_path):
    from visionzoo.registry import create_model
    from visionzoo.weights import load_checkpoint
    run = run_dir_with(tmp_path, VZC_META, create_model("lenet", num_classes=7, in_chans=1).state_dict())
    with pytest.raises(DataError, match="fc2.weight has shape"):
        load_checkpoint(run)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_weights_holding_nan_or_infinity_are_refused_naming_the_tensor(tmp_path, value):
    from visionzoo.registry import create_model
    from visionzoo.weights import load_checkpoint
    state = create_model("lenet", num_classes=10, in_chans=1).state_dict()
    state["fc2.bias"][3] = value
    run = run_dir_with(tmp_path, VZC_META, state)
    with pytest.raises(DataError, match="fc2.bias holds NaN or infinite values, so the network was saved after it "
                                        "diverged"):
        load_checkpoint(run)
    assert_one_line_exit_2(cli_here("eval", run, "--data", "fake"), "fc2.bias holds NaN or infinite values")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_a_refused_pickle_is_one_line_of_ours_without_torchs_advice(tmp_path):
    from visionzoo.weights import read_state_dict
    path = tmp_path / "weights.pt"
    torch.save({"w": torch.zeros(2), "x": _Payload()}, path)
    for read in (read_state_dict, read_torch):
        with pytest.raises(DataError) as caught:
            read(path)
        message = str(caught.value)
        assert "refused" in message and "weights_only" not in message and "\n" not in message


# ---- family 3: bounded work for untrusted input -------------------------------------------------------

def repacked_vzc(path, edit) -> None:
    """Rewrite the header of the .vzc at `path` with `edit(header)`, with a valid length and digest, as an
    attacker could."""
    import hashlib
    import struct
    import zlib

    from visionzoo.compress.fileformat import _PREAMBLE
    blob = path.read_bytes()
    _, _, _, header_length = _PREAMBLE.unpack_from(blob)
    header = json.loads(zlib.decompress(blob[_PREAMBLE.size:_PREAMBLE.size + header_length]))
    payload = blob[_PREAMBLE.size + header_length:]
    new_header = edit(header)
    new_header = new_header if isinstance(new_header, bytes) else zlib.compress(json.dumps(header).encode())
    checked = struct.pack("<QI", _PREAMBLE.size + len(new_header) + len(payload), len(new_header)) \
        + new_header + payload
    path.write_bytes(b"VZC2" + hashlib.sha256(checked).digest() + checked)


def _first_shared(header):
    return next(d for d in header["tensors"] if d["kind"] == "shared")


@pytest.mark.parametrize("edit", [
    lambda h: _first_shared(h).update(shape=[1 << 20, 1 << 20]),              # a 2^40-element tensor
    lambda h: _first_shared(h).update(codes_count=10 ** 12),                  # symbols beyond the part's bits
    lambda h: _first_shared(h).update(codes_lengths=[1] * 70000),             # a Huffman table too large
    lambda h: _first_shared(h).update(codes_lengths=[1, 1, 1, 1]),            # no prefix code has these lengths
    lambda h: _first_shared(h)["parts"].update(codebook=10 ** 9),             # a part past the end of the file
    lambda h: _first_shared(h).update(bits=40),
    lambda h: zlib_bomb(),
])
def test_sizes_declared_in_a_vzc_are_bounded_before_allocation(tmp_path, edit):
    from visionzoo.compress.fileformat import load_compressed
    path = tmp_path / "model.vzc"
    small_vzc(path)
    repacked_vzc(path, edit)
    with pytest.raises(DataError, match="model.vzc"):
        load_compressed(path)


def zlib_bomb() -> bytes:
    import zlib
    return zlib.compress(b"[" * (65 << 20), 9)   # 65 MB of header from ~65 KB


def test_a_model_json_asking_for_a_huge_network_is_refused_before_building_it(tmp_path):
    from visionzoo.weights import load_checkpoint
    run = run_dir_with(tmp_path, {**VZC_META, "kwargs": {"num_classes": 100_000, "in_chans": 1},
                                  "classes": [str(i) for i in range(100_000)]})
    with pytest.raises(DataError, match="fc2.weight has shape"):
        load_checkpoint(run)
    run = run_dir_with(tmp_path, {**VZC_META, "kwargs": {"num_classes": 10 ** 9, "in_chans": 1}, "classes": None})
    with pytest.raises(DataError, match="num_classes"):
        load_checkpoint(run)


def idx_header(dtype_code: int, shape) -> bytes:
    import struct
    return bytes([0, 0, dtype_code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


@pytest.mark.parametrize("header, fragment", [
    (idx_header(0x08, [4_000_000_000, 4_000_000_000, 4_000_000_000]), "promises"),   # overflows int64
    (idx_header(0x08, [60_000, 28, 28]), "promises"),                                   # far more than is there
    (idx_header(0x0D, [2, 2, 2]), "8-bit images"),                                      # float images
])
def test_idx_headers_are_checked_against_the_file_and_a_ceiling(tmp_path, header, fragment):
    from visionzoo.data.formats import read_idx
    path = tmp_path / "images.idx"
    path.write_bytes(header + bytes(32))
    with pytest.raises(DataError, match=fragment):
        read_idx(path, 3)


def test_a_gzipped_idx_bomb_is_read_only_as_far_as_its_header_promises(tmp_path):
    import gzip
    import resource

    from visionzoo.data.formats import read_idx
    path = tmp_path / "images.idx.gz"
    with gzip.open(path, "wb") as f:    # 10 images promised, 200 MB of zeros behind them
        f.write(idx_header(0x08, [10, 28, 28]))
        for _ in range(200):
            f.write(bytes(1 << 20))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(DataError, match="promises"):
        read_idx(path, 3)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50_000   # KiB: nothing near 200 MB
    path.write_bytes(b"\x1f\x8b" + bytes(30))
    with pytest.raises(DataError, match="images.idx.gz"):
        read_idx(path, 3)


def test_an_image_above_pils_pixel_limit_is_an_error_not_a_warning(tmp_path, monkeypatch):
    from PIL import Image

    from visionzoo.data.formats import read_image
    path = tmp_path / "big.png"
    Image.new("L", (64, 64)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match="big.png"):
        read_image(path, 1)


# ---- family 5: one line, exit 2, for every bad input ------------------------------------------------

@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("small") / "run"
    result = cli_process(*FAKE, "--epochs", "2", "--train-limit", "32", "--out", run)
    assert result.returncode == 0, result.stderr
    return run


@pytest.mark.slow
def test_a_damaged_checkpoint_resumes_with_one_line_and_exit_2(tmp_path, small_run):
    import shutil
    for damage in (lambda state: state.update(epoch=99), lambda state: state.pop("running"),
                   lambda state: state["model"].update({"fc2.weight": torch.zeros(3, 3)})):
        run = tmp_path / "run"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(small_run, run)
        state = read_torch(run / "checkpoint.pt")
        damage(state)
        write_torch(run / "checkpoint.pt", state)
        assert_one_line_exit_2(cli_here("train", "--resume", run, "--quiet"), "--resume", "damaged")


def test_a_damaged_config_json_resumes_with_one_line_and_exit_2(tmp_path, small_run):
    import shutil
    saved = json.loads((small_run / "config.json").read_text())
    for text, fragment in (("{bad", "damaged"), ("[1]", 'no "model"'), (b"\xff\xfe", "damaged"),
                           (json.dumps({**saved, "epochs": "x"}), "--epochs 'x': not a int"),
                           (json.dumps({**saved, "lr": -1.0}), "--lr -1.0: must be positive")):
        run = tmp_path / "run"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(small_run, run)
        (run / "config.json").write_bytes(text if isinstance(text, bytes) else text.encode())
        assert_one_line_exit_2(cli_here("train", "--resume", run, "--quiet"), "config.json", fragment)


def test_the_classifier_commands_refuse_a_run_of_another_task_in_one_line(tmp_path, small_run):
    import shutil
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    meta = json.loads((run / "model.json").read_text())
    (run / "model.json").write_text(json.dumps({**meta, "task": "segmentation"}))
    for command, name in ((["attack", run, "--method", "fgsm", "--eps", "0.1"], "attack"),
                          (["explain", run, "--method", "filters", "--out", tmp_path / "x"], "explain"),
                          (["compress", run, "--method", "prune", "--out", tmp_path / "y"], "compress"),
                          ([*FAKE, "--epochs", "1", "--teacher", run, "--out", tmp_path / "z"], "train --teacher")):
        assert_one_line_exit_2(cli_here(*command), "holds a segmentation network",
                               f"`visionzoo {name}` needs a classification run")
    (tmp_path / "notes.txt").write_text("not weights")
    assert_one_line_exit_2(cli_here("eval", tmp_path / "notes.txt"), "model.json is missing beside", "give a run")


def test_bad_inputs_are_one_line_and_exit_2(tmp_path):
    assert_one_line_exit_2(cli_here("info", "lenet", "--input-size", "0", "0", "0"), "--input-size")
    a_file = tmp_path / "file"
    a_file.write_text("x")
    assert_one_line_exit_2(cli_here(*FAKE, "--epochs", "1", "--train-limit", "16", "--out", a_file), "is a file")
    out = tmp_path / "run"
    for options, fragments in ((["--model", "lenet5", "--image-size", "64"], ("--image-size 64", "does not take",
                                                                              "give --image-size 32")),
                               (["--seed", "-1"], ("--seed -1", "0 .. 2³² − 1")),
                               (["--val-size", "1.5"], ("--val-size 1.5", "a whole number")),
                               (["--model-arg", "num_classes=-3"], ("--model-arg for lenet", "negative dimension"))):
        assert_one_line_exit_2(cli_here(*FAKE, "--epochs", "1", "--train-limit", "16", *options, "--out", out),
                               *fragments)
    assert not out.exists()   # refused before anything is written
    assert_one_line_exit_2(cli_here("reproduce", "receptive-field", "--budget", "smoke", "--resume", "--overwrite",
                                    "--out", out), "give one of them")


def test_a_data_set_of_other_channels_than_the_network_is_refused():
    from types import SimpleNamespace

    from visionzoo.weights import check_data_fits
    colour = SimpleNamespace(input_size=(3, 32, 32), classes=list(range(10)))
    with pytest.raises(UsageError, match="--data cifar10: its images have 3 channel"):
        check_data_fits(VZC_META, colour, "cifar10")
    check_data_fits(VZC_META, SimpleNamespace(input_size=(1, 28, 28), classes=list(range(10))), "mnist")


# ---- family 1: a run directory belongs to one run ---------------------------------------------------

def test_train_refuses_an_existing_run_unless_overwrite_and_overwrite_removes_it_first(tmp_path, small_run):
    from visionzoo.core.rundir import claim_output
    from visionzoo.engine.trainer import Trainer
    assert_one_line_exit_2(cli_here(*FAKE, "--epochs", "1", "--out", small_run), "already holds a run", "--overwrite")
    run = tmp_path / "run"
    run.mkdir()
    for name in ("config.json", "checkpoint.pt", "model.safetensors"):
        (run / name).write_text("old")
    with claim_output(run, Trainer.RUN_PRODUCTS, overwrite=True):
        # nothing of the old run is left when the new one starts writing: a kill now leaves no mixture
        assert not any((run / name).exists() for name in ("config.json", "checkpoint.pt", "model.safetensors"))
    with claim_output(run, Trainer.RUN_PRODUCTS, resume=True):
        pass


def test_compress_refuses_to_mix_into_an_earlier_compression(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "compress.json").write_text('{"method": "prune"}')
    assert_one_line_exit_2(cli_here("compress", tmp_path / "missing", "--method", "binarize", "--out", out), "already holds")
    assert json.loads((out / "compress.json").read_text()) == {"method": "prune"}


def test_a_live_owner_keeps_others_out_and_a_dead_ones_lock_and_temporary_files_are_cleaned(tmp_path):
    import os
    import socket

    from visionzoo.core.rundir import claim_output
    out = tmp_path / "out"
    out.mkdir()
    (out / ".lock").write_text(f"{os.getppid()} {socket.gethostname()}\n")   # our parent: alive
    with pytest.raises(UsageError, match=f"in use by process {os.getppid()}"):
        with claim_output(out, ("attack.json",)):
            pass
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (out / ".lock").write_text(f"{finished.stdout.strip()} {socket.gethostname()}\n")   # gone: stale
    (out / ".checkpoint.pt.k2j4h5g6").write_bytes(b"half")
    (out / ".attack.png.abc_1234").write_bytes(b"half")
    (out / "notes.txt").write_text("mine")
    with claim_output(out, ("attack.json",)):
        assert sorted(p.name for p in out.iterdir()) == [".lock", "notes.txt"]
        other = cli_process("attack", "x", "--method", "fgsm", "--eps", "0.1", "--out", out)   # another process
        assert_one_line_exit_2(other, "in use by process")
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# ---- family 6: signals and disks ---------------------------------------------------------------------

def test_sigterm_checkpoints_and_exits_143(tmp_path):
    import signal
    import time
    run = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "visionzoo", *FAKE, "--epochs", "50", "--out", str(run)],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "metrics.jsonl").exists():
        assert process.poll() is None and time.time() < deadline
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 143, err
    assert "interrupted: checkpoint saved" in err
    assert read_torch(run / "checkpoint.pt")["epoch"] >= 1


def test_a_full_disk_is_one_line_naming_the_directory(tmp_path, monkeypatch):
    import errno

    from visionzoo.engine.trainer import Trainer
    trainer = Trainer.__new__(Trainer)   # only the run directory part of run() is exercised
    trainer.is_main, trainer.out, trainer.resume_from = True, tmp_path / "run", None
    trainer.cfg = TrainConfig(overwrite=False)

    def full(self):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(Trainer, "_run_held", full)
    with pytest.raises(UsageError, match=f"no space left on {tmp_path / 'run'}"):
        trainer.run()


def image_folder(root, layout: dict) -> None:
    from PIL import Image
    for relative, value in layout.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", (8, 8), value).save(path)


def test_a_corrupt_image_in_a_folder_data_set_is_found_at_load_naming_it(tmp_path):
    from visionzoo.data.datasets import load_data
    image_folder(tmp_path, {f"train/{c}/{i}.png": 10 * i for c in "ab" for i in range(6)})
    image_folder(tmp_path, {f"test/{c}/{i}.png": 10 * i for c in "ab" for i in range(2)})
    broken = tmp_path / "test/b/1.png"
    broken.write_bytes(broken.read_bytes()[:40])
    with pytest.raises(DataError, match="test/b/1.png"):
        load_data(f"folder:{tmp_path}", val_size=2)


# ---- family 7: data that is what it claims ------------------------------------------------------------

def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    from PIL import Image

    from visionzoo.data.formats import read_image
    path = tmp_path / "wide.png"
    Image.fromarray(np.array([[0, 256, 32768, 65535]], dtype=np.uint16)).save(path)
    assert read_image(path, 1).flatten().tolist() == [0, 1, 128, 255]


def test_folder_classes_must_come_from_train_be_printable_and_stay_inside(tmp_path):
    from visionzoo.data.datasets import load_data
    image_folder(tmp_path / "a", {f"train/{c}/{i}.png": i for c in "xy" for i in range(6)})
    image_folder(tmp_path / "a", {"test/z/0.png": 1, "test/x/0.png": 1})
    with pytest.raises(DataError, match="classes z are not in"):
        load_data(f"folder:{tmp_path / 'a'}", val_size=2)
    image_folder(tmp_path / "b", {f"train/{c}/{i}.png": i for c in ("x", "y\nz") for i in range(6)})
    with pytest.raises(DataError, match="newline"):
        load_data(f"folder:{tmp_path / 'b'}", val_size=2)
    image_folder(tmp_path / "c", {f"train/{c}/{i}.png": i for c in "xy" for i in range(6)})
    image_folder(tmp_path, {"secret.png": 7})
    (tmp_path / "c/train/x/link.png").symlink_to(tmp_path / "secret.png")
    with pytest.raises(DataError, match="outside"):
        load_data(f"folder:{tmp_path / 'c'}", val_size=2)
    image_folder(tmp_path / "d", {f"train/x/{i}.png": i for i in range(6)})
    with pytest.raises(UsageError, match="one class folder"):
        load_data(f"folder:{tmp_path / 'd'}", val_size=2)
    (tmp_path / "d/train/y").mkdir()
    with pytest.raises(DataError, match="train/y: a class folder without images"):
        load_data(f"folder:{tmp_path / 'd'}", val_size=2)


# ---- family 5 (continued): images smaller than the network takes --------------------------------------

def test_the_smallest_side_found_on_the_meta_device_is_the_one_a_real_forward_pass_finds():
    from visionzoo.core.probe import runs_on, smallest_side
    network = nn.Sequential(nn.Conv2d(1, 2, 5), nn.MaxPool2d(2), nn.Conv2d(2, 2, 3, padding=1), nn.Conv2d(2, 2, 4),
                            nn.AdaptiveAvgPool2d(1))
    before = [p.clone() for p in network.parameters()]

    def really_runs(side):
        try:
            network(torch.zeros(1, 1, side, side))
        except RuntimeError:
            return False
        return True
    with torch.no_grad():
        first = next(side for side in range(1, 40) if really_runs(side))
    assert smallest_side(lambda side: runs_on(network, (1, side, side)), 32) == first
    assert all(torch.equal(a, b) and b.device.type == "cpu" for a, b in zip(before, network.parameters()))


def image_of_side(path, side: int) -> None:
    from PIL import Image
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (side, side), (40, 90, 200)).save(path)


def test_training_on_images_smaller_than_the_network_takes_is_one_line_naming_both_sizes(tmp_path):
    import re

    from visionzoo.registry import create_model
    for c in "ab":
        for i in range(6):
            image_of_side(tmp_path / "tree" / c / f"{i}.png", 1)
    result = cli_here("train", "--model", "lenet", "--data", f"folder:{tmp_path / 'tree'}", "--image-size", "1",
                      "--epochs", "1", "--quiet", "--out", tmp_path / "run")
    assert_one_line_exit_2(result, "--image-size 1", "1×1 pixels")
    side = int(re.search(r"the (\d+)×\1 the network takes at least", result.stderr).group(1))
    with torch.no_grad():   # the minimum named is the real one: built at that side it runs, one less it does not
        create_model("lenet", num_classes=2, in_chans=3, image_size=side).eval()(torch.zeros(1, 3, side, side))
        with pytest.raises(RuntimeError):
            create_model("lenet", num_classes=2, in_chans=3, image_size=side - 1).eval()(
                torch.zeros(1, 3, side - 1, side - 1))
    assert not (tmp_path / "run" / "model.safetensors").exists()


def test_eval_and_attack_of_images_smaller_than_the_network_takes_are_one_line(small_run):
    import re

    from visionzoo.weights import load_checkpoint
    model, _ = load_checkpoint(small_run)   # lenet on 28×28 images; digits are 8×8
    for command in (["eval", small_run, "--data", "digits"],
                    ["attack", small_run, "--data", "digits", "--method", "fgsm", "--eps", "0.1", "--n", "4"]):
        result = cli_here(*command)
        assert_one_line_exit_2(result, "--data digits", "8×8 pixels", "trained on 28×28")
        side = int(re.search(r"the (\d+)×\1 the network takes at least", result.stderr).group(1))
        with torch.no_grad():
            model.eval()(torch.zeros(1, 1, side, side))
            with pytest.raises(RuntimeError):
                model(torch.zeros(1, 1, side - 1, side - 1))


def test_a_reader_that_stops_early_ends_the_command_silently_with_sigpipes_status():
    # a command printing 1 MB (more than a pipe holds) into `| head -c 10`
    script = ("import sys; from visionzoo.cli import main, models_cmd; "
              "models_cmd.run_models = lambda args: print('x' * (1 << 20)); sys.exit(main.main(['models']))")
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stdout.read(10) == b"x" * 10
    process.stdout.close()
    assert process.wait(timeout=120) == 128 + signal.SIGPIPE
    assert process.stderr.read() == b""



def test_an_atomic_write_that_fails_halfway_leaves_the_old_file_and_no_temporary_one(tmp_path):
    # write to a temporary file beside the target, then rename it over the target (rename is atomic): a writer
    # that dies halfway leaves the old content, and neither path leaves a temporary file behind
    from visionzoo.core.io import write_atomic, write_json
    path = tmp_path / "metrics.json"
    write_json(path, {"epoch": 1})
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]

    def dies_halfway(tmp):
        with open(tmp, "w") as f:
            f.write('{"epo')
        raise OSError("disk gone")
    with pytest.raises(OSError, match="disk gone"):
        write_atomic(path, dies_halfway)
    assert json.loads(path.read_text()) == {"epoch": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
    write_json(path, {"epoch": 2})
    assert json.loads(path.read_text()) == {"epoch": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]
