"""Viewpoint data (`renders`, `renders:PATH`): rendered 3-D models labelled with their viewpoint.

Render for CNN (Su, Qi, Li & Guibas, ICCV 2015, Sec. 3, Fig. 1 and Fig. 3) trains a viewpoint
network on renderings of ShapeNet models whose viewpoints are sampled from PASCAL 3D+ statistics,
lit by random lights and overlaid on SUN397 background crops; each label is (azimuth θ, elevation
φ, in-plane rotation ψ) in 360 one-degree bins per angle. Ours, rendered by data/render.py:

- Images uint8 (N, 3, H, W), 64×64 unless `image_size` asks for another side (rendered at it).
- Labels int64 (N, 4): (category, θ, φ mod 360, ψ mod 360), each angle rounded to whole degrees
  in 0..359 (φ = −5° is 355). Conventions of render.py (PASCAL 3D+): θ = 0 sees the object's
  front, θ grows counter-clockwise seen from above; φ > 0 looks down; ψ turns the image
  counter-clockwise.
- Viewpoints: θ uniform on [0, 360), φ uniform on [−10°, 40°], ψ uniform on [−15°, 15°] — a
  simple stand-in for the paper's kernel-density samples of PASCAL 3D+ viewpoints, which cover
  mostly these elevations and small in-plane rotations; distance uniform in [2.6, 3.4] object
  radii with a 40° field of view; the object's centre moved up to 3 px (at 64 px); one
  directional light per image from a random direction of the camera's hemisphere, random ambient
  and diffuse strengths and a random surface colour.
- Backgrounds: no natural images ship offline, so instead of SUN397 crops each background is a
  random procedural texture (two-colour gradient, smooth colour noise, a grating, a checkerboard);
  a little pixel noise is added to the composite. `background="plain"` puts the training renderings
  over a flat random grey instead (the ablation of the paper's crops); everything else about them —
  meshes, viewpoints, lights, noise — is drawn as with the crops, so the two sets differ only there.
- `renders`: seven procedural categories (render.CATEGORY_BUILDERS: aeroplane, animal, boat, car,
  chair, sofa, tvmonitor), twelve random instances each; none has a rotational symmetry about the
  vertical axis, so every azimuth is identifiable. When Debian's `libcgal-demo` is installed, four
  of its scanned quadrupeds (bull, camel, cow, elephant; CGAL_MESHES) join `animal`: the categories
  stay the same, the images differ. (Its other meshes are heads, mechanical parts or symmetric.)
- `renders:PATH`: the user's meshes (.off, .ply, .obj; z up, front towards −y), one category per
  sub-folder of PATH, or one per file when PATH holds no sub-folders.

Splits: training and test sets are fixed (their own seeds, never the run's); the test set shows
viewpoints, lights and backgrounds never seen in training and, for `renders`, held-out instances
(the last 3 of 12 per category; of the CGAL animals, the elephant). The validation split is carved
from the training set with the run's seed. Generating the 12 000 images takes about a minute on
one CPU core; they are made once per process and setting.

Knobs of the training set only (the test set is always the same 2 000 images over background crops,
so runs with different knobs are scored on the same images): `train_size` renderings (before the
validation split; default RENDER_SIZES[0]), `instances` — only the first K training meshes of each
category (default all; a category with fewer keeps all of its own) — and `background`.
"""
from __future__ import annotations

import functools
import math
import random
import tarfile
from pathlib import Path

import torch
import torch.nn.functional as F

from ..core.errors import DataError, UsageError
from .datasets import DataBundle, TensorSplit, channel_stats, fill_splits
from .render import CATEGORY_BUILDERS, MESH_SUFFIXES, Mesh, normalized, parse_mesh, read_mesh, render, rotated

RENDER_DATA = ("renders", "renders:PATH")
RENDER_SIZES = (10000, 2000)                 # train (before the validation split), test
TRAIN_SEED, TEST_SEED = 20151207, 20151211   # fixed streams (ICCV 2015): the data never depend on the run's seed
BASE_SIZE = 64
INSTANCES, TEST_INSTANCES = 12, 3            # procedural instances per category; the last ones are for testing
ELEVATION_RANGE = (-10.0, 40.0)              # degrees
INPLANE_RANGE = (-15.0, 15.0)
DISTANCE_RANGE = (2.6, 3.4)                  # in radii of the normalised object
FIELD_OF_VIEW = 40.0                         # degrees
CENTRE_JITTER = 3.0 / 64                     # largest move of the object's centre, as a fraction of the side
GENERATION_CHUNK = 250                       # images rendered per vectorised pass
BACKGROUND_KINDS = ("crops", "plain")        # training backgrounds: textures standing in for the paper's crops, or flat
PLAIN_GREY = (0.2, 0.8)                      # range of a flat background's grey level
PIXEL_NOISE = (0.005, 0.03)                  # range of the standard deviation of the composite's pixel noise
CGAL_DATA = Path("/usr/share/doc/libcgal-dev/data.tar.gz")
# Meshes of Debian's libcgal-demo (data/meshes/NAME.off): category and the turns (axis, degrees) that
# bring each to our frame (z up, front towards −y).
CGAL_MESHES = {"animal": {"bull": (("x", 90.0), ("z", -90.0)), "camel": (("x", 90.0),),
                          "cow": (("x", 90.0), ("z", -90.0)), "elephant": (("x", 90.0),)}}


def is_render_data(spec: str) -> bool:
    return spec == "renders" or spec.startswith("renders:")


# --- meshes -------------------------------------------------------------------------------------

def procedural_pools() -> tuple[list[str], list[list[Mesh]], list[list[Mesh]]]:
    """(categories, training instances, test instances) of the procedural shapes."""
    categories = sorted(CATEGORY_BUILDERS)
    train, test = [], []
    for index, name in enumerate(categories):
        meshes = [normalized(CATEGORY_BUILDERS[name](random.Random(1000 * index + i))) for i in range(INSTANCES)]
        train.append(meshes[:INSTANCES - TEST_INSTANCES])
        test.append(meshes[INSTANCES - TEST_INSTANCES:])
    return categories, train, test


def cgal_meshes(archive: Path = CGAL_DATA) -> dict[str, list[Mesh]]:
    """CGAL_MESHES read from libcgal-demo's data archive, by category; empty if it is not installed."""
    if not archive.exists():
        return {}
    wanted = {f"data/meshes/{name}.off": (category, turns)
              for category, meshes in CGAL_MESHES.items() for name, turns in meshes.items()}
    found: dict[str, list[Mesh]] = {}
    try:
        with tarfile.open(archive) as tar:
            for member in tar:
                if member.name in wanted:
                    category, turns = wanted[member.name]
                    mesh = parse_mesh(tar.extractfile(member).read(), ".off", f"{archive}:{member.name}")
                    for axis, degrees in turns:
                        mesh = rotated(mesh, axis, degrees)
                    found.setdefault(category, []).append(normalized(mesh))
    except (tarfile.TarError, OSError, EOFError) as error:
        raise DataError(f"{archive}: cannot read the CGAL data archive ({error}); reinstall libcgal-demo") from None
    return found


def builtin_pools():
    """The `renders` categories and their training and test meshes (procedural, plus CGAL's if installed)."""
    categories, train, test = procedural_pools()
    for category, meshes in cgal_meshes().items():
        index = categories.index(category)
        test[index] += meshes[3::4]
        train[index] += [m for i, m in enumerate(meshes) if i % 4 != 3]
    return categories, train, test


def folder_pools(root: Path) -> tuple[list[str], list[list[Mesh]]]:
    """`renders:PATH`: categories (sub-folders, or files when there are none) and their meshes."""
    if not root.is_dir():
        raise UsageError(f"renders:{root} is not a directory; give a folder of mesh files "
                         f"({', '.join(MESH_SUFFIXES)}), one sub-folder per category")
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    if folders:
        groups = [(f.name, sorted(m for m in f.iterdir() if m.suffix.lower() in MESH_SUFFIXES)) for f in folders]
    else:
        groups = [(m.stem, [m]) for m in sorted(root.iterdir()) if m.suffix.lower() in MESH_SUFFIXES]
    groups = [(name, files) for name, files in groups if files]
    if not groups:
        raise UsageError(f"{root}: no mesh files ({', '.join(MESH_SUFFIXES)}) in it or in its sub-folders")
    return [name for name, _ in groups], [[normalized(read_mesh(f)) for f in files] for _, files in groups]


# --- backgrounds --------------------------------------------------------------------------------

def backgrounds(generator: torch.Generator, n: int, size: int) -> torch.Tensor:
    """(n, 3, size, size) procedural textures in [0, 1]: gradient + smooth colour noise + grating + checkers."""
    def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
        return low + (high - low) * torch.rand((n, *shape), generator=generator)
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    y, x = coords.view(1, 1, -1, 1), coords.view(1, 1, 1, -1)
    angle = uniform(0, 2 * math.pi, 1, 1, 1)
    along = x * torch.cos(angle) + y * torch.sin(angle)
    start, end = uniform(0.1, 0.9, 3, 1, 1), uniform(0.1, 0.9, 3, 1, 1)
    image = start + (end - start) * (along - along.amin((2, 3), keepdim=True)) / 1.5
    grid = int(torch.randint(3, 9, (1,), generator=generator))
    noise = F.interpolate(torch.randn((n, 3, grid, grid), generator=generator), size=(size, size),
                          mode="bicubic", align_corners=True)
    image = image + uniform(0.0, 0.2, 1, 1, 1) * noise
    direction, cycles = uniform(0, math.pi, 1, 1, 1), uniform(2, 12, 1, 1, 1)
    grating = torch.sin(2 * math.pi * cycles * (x * torch.cos(direction) + y * torch.sin(direction))
                        + uniform(0, 2 * math.pi, 1, 1, 1))
    image = image + uniform(0.0, 0.15, 3, 1, 1) * grating * (uniform(0, 1, 1, 1, 1) < 0.6)
    squares = uniform(3, 10, 1, 1, 1)
    checkers = ((torch.floor(x * squares) + torch.floor(y * squares)) % 2) * 2 - 1
    image = image + uniform(0.0, 0.12, 3, 1, 1) * checkers * (uniform(0, 1, 1, 1, 1) < 0.3)
    return image.clamp(0, 1)


# --- rendering a set ----------------------------------------------------------------------------

def render_set(pools: list[list[Mesh]], count: int, seed: int, size: int = BASE_SIZE, background: str = "crops"
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` renderings from the stream `seed` of meshes drawn from `pools` (one list per category):
    uint8 images (count, 3, size, size) and int64 labels (count, 4) = (category, θ, φ, ψ) in degrees.
    `background` "plain" replaces each texture by a flat grey from a stream of its own, so that every
    other draw, and so every other property of the images, stays the same as with "crops"."""
    generator = torch.Generator().manual_seed(seed)
    greys = torch.Generator().manual_seed(seed + 1)
    images, labels = [], []
    for start in range(0, count, GENERATION_CHUNK):
        n = min(GENERATION_CHUNK, count - start)

        def uniform(low: float, high: float, *shape: int) -> torch.Tensor:
            return low + (high - low) * torch.rand((n, *shape), generator=generator)
        category = torch.randint(len(pools), (n,), generator=generator)
        pick = torch.rand(n, generator=generator)
        meshes = [pools[c][int(p * len(pools[c]))] for c, p in zip(category.tolist(), pick.tolist())]
        azimuth, elevation = uniform(0, 360), uniform(*ELEVATION_RANGE)
        inplane, distance = uniform(*INPLANE_RANGE), uniform(*DISTANCE_RANGE)
        light = torch.randn((n, 3), generator=generator)
        light[:, 2] = light[:, 2].abs() + 0.3          # from the camera's side of the object
        light = light / light.norm(dim=1, keepdim=True)
        colour, alpha = render(meshes, azimuth, elevation, inplane, distance, size=size, fov=FIELD_OF_VIEW,
                               light=light, albedo=uniform(0.2, 1.0, 3), ambient=uniform(0.2, 0.45),
                               diffuse=uniform(0.5, 0.8), offset=uniform(-1, 1, 2) * CENTRE_JITTER * size)
        scene = backgrounds(generator, n, size)   # drawn for plain ones too: the stream stays that of the crops
        if background == "plain":
            grey = PLAIN_GREY[0] + (PLAIN_GREY[1] - PLAIN_GREY[0]) * torch.rand((n, 1, 1, 1), generator=greys)
            scene = grey.expand_as(scene)
        image = colour + (1 - alpha) * scene
        image = image + uniform(*PIXEL_NOISE, 1, 1, 1) * torch.randn(image.shape, generator=generator)
        images.append((image * 255).round().clamp(0, 255).to(torch.uint8))
        degrees = lambda angle: torch.round(angle).long() % 360
        labels.append(torch.stack([category, degrees(azimuth), degrees(elevation), degrees(inplane)], 1))
    return torch.cat(images), torch.cat(labels)


def first_instances(pools: list[list[Mesh]], instances: int | None) -> list[list[Mesh]]:
    """The first `instances` meshes of each category (None: all of them)."""
    return pools if instances is None else [meshes[:instances] for meshes in pools]


@functools.lru_cache(maxsize=1)
def _builtin_pools():
    """builtin_pools(), read once per process (the CGAL archive takes seconds); never modified."""
    return builtin_pools()


@functools.lru_cache(maxsize=2)
def _builtin_test(count: int, size: int):
    """The `renders` test set, made once per process, size and side whatever the training set's knobs."""
    _, _, test = _builtin_pools()
    return render_set(test, count, TEST_SEED, size)


@functools.lru_cache(maxsize=2)
def _builtin(sizes: tuple[int, int], size: int, instances: int | None = None, background: str = "crops"):
    """The `renders` set, made once per process and setting (set sizes, image side, training knobs)."""
    categories, train, _ = _builtin_pools()
    train_set = render_set(first_instances(train, instances), sizes[0], TRAIN_SEED, size, background)
    return train_set, _builtin_test(sizes[1], size), categories


def check_render_knobs(train_size: int, instances: int | None, background: str) -> None:
    """UsageError, in one line, for a training-set knob that cannot be used."""
    if not isinstance(train_size, int) or train_size < 1:
        raise UsageError(f"--render-train-size {train_size}: give a whole number of renderings ≥ 1")
    if instances is not None and (not isinstance(instances, int) or instances < 1):
        raise UsageError(f"--render-instances {instances}: give a whole number of meshes per category ≥ 1")
    if background not in BACKGROUND_KINDS:
        raise UsageError(f"--render-backgrounds {background!r}: choose one of {', '.join(BACKGROUND_KINDS)}")


def load_render_data(spec: str, *, data_dir=None, val_size: float | int = 0.1, seed: int = 0,
                     image_size: int | None = None, train_size: int | None = None, instances: int | None = None,
                     background: str = "crops") -> DataBundle:
    """A viewpoint data set by its spec (RENDER_DATA): fixed train and test sets, a validation split
    carved from train with `seed` (`val_size`: a fraction or a count); labels (N, 4) as above.
    `data_dir` is unused (the sets are generated); `image_size` is the rendered side (default 64).
    The training set's knobs: `train_size` renderings (default RENDER_SIZES[0]), the first `instances`
    meshes of each category (default all), `background` "crops" (default) or "plain"."""
    size = image_size or BASE_SIZE
    train_size = RENDER_SIZES[0] if train_size is None else train_size
    check_render_knobs(train_size, instances, background)
    if spec == "renders":
        (x_train, y_train), (x_test, y_test), classes = _builtin((train_size, RENDER_SIZES[1]), size, instances,
                                                                 background)
    elif spec.startswith("renders:"):
        classes, pools = folder_pools(Path(spec[len("renders:"):]).expanduser())
        x_train, y_train = render_set(first_instances(pools, instances), train_size, TRAIN_SEED, size, background)
        x_test, y_test = render_set(pools, RENDER_SIZES[1], TEST_SEED, size)
    else:
        raise UsageError(f"unknown viewpoint data set {spec!r}; choose one of {', '.join(RENDER_DATA)}")
    splits = fill_splits({"train": TensorSplit(x_train, y_train), "test": TensorSplit(x_test, y_test)},
                         val_size, seed)
    bundle = DataBundle(spec, splits["train"], splits["val"], splits["test"], list(classes))
    bundle.mean, bundle.std = channel_stats(bundle.train)
    return bundle
