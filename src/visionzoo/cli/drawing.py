"""What the drawing commands (`detect`, `segment`) share: their arguments, the run of the right task and the
images chosen by `--image` or `--index` (`explain` reads its `--image` here too)."""
from __future__ import annotations

from pathlib import Path

from ..core.errors import UsageError
from .arguments import add_data_dir, add_device, add_json, add_split

FIRST_IMAGES = 8   # the data set images drawn when neither --image nor --index is given


def add_drawing_arguments(parser, outputs: str) -> None:
    """The images to draw (files or, not with them, a split's images by index), the data root, the device,
    `--json`, and `--out`, the folder that receives `outputs`."""
    images = parser.add_mutually_exclusive_group()
    images.add_argument("--image", action="append", metavar="PATH", help="an image file of any size (repeatable)")
    images.add_argument("--index", action="append", type=int, metavar="I",
                        help=f"an image of the run's data set (repeatable; default the first {FIRST_IMAGES})")
    add_split(parser, help="the split --index reads (default test)")
    add_data_dir(parser)
    parser.add_argument("--out", required=True, metavar="DIR", help=f"directory for {outputs}")
    add_device(parser)
    add_json(parser)


def load_run_of_task(path: str, device, task: str, command: str, example: str):
    """The network of a run of `task` (moved to `device` in the layout it was evaluated in) and its meta;
    a run of another task is refused in one line that names `example`, a training command for one."""
    from ..weights import check_task, load_checkpoint
    from .evaluate_cmd import evaluated_layout
    model, meta = load_checkpoint(path)
    check_task(meta, path, task, command, example)
    return model.to(device, memory_format=evaluated_layout(meta)), meta


def read_image_argument(path: Path, channels: int):
    """The uint8 (C, H, W) image of an `--image` file, with `channels` channels."""
    from ..data.formats import read_image
    if not path.is_file():
        raise UsageError(f"--image {path}: no such file")
    return read_image(path, channels)


def chosen_indices(args, split) -> list[int]:
    """The `--index` values, each checked against the split's length (default its first images)."""
    indices = args.index or list(range(min(FIRST_IMAGES, len(split))))
    bad = [i for i in indices if not 0 <= i < len(split)]
    if bad:
        raise UsageError(f"--index {bad[0]}: the {args.split} split has images 0..{len(split) - 1}")
    return indices
