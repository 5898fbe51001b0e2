"""Region proposals for Fast R-CNN: selective search, or boxes read from a file.

Fast R-CNN (Girshick, ICCV 2015) classifies and refines given regions of interest; the notes'
Table 1/2 rows "SS" use selective search (Uijlings, van de Sande, Gevers & Smeulders, "Selective
Search for Object Recognition", IJCV 2013), implemented here:

- `felzenszwalb_segmentation`: the graph-based segmentation of Felzenszwalb & Huttenlocher
  ("Efficient Graph-Based Image Segmentation", IJCV 2004, Algorithm 1): an 8-connected grid graph
  whose edge weights are the Euclidean colour distances of the Gaussian-smoothed image (σ, in
  0–255 intensity units as in their code); edges in increasing weight (Kruskal order) merge two
  components when w ≤ min(Int(C1) + k/|C1|, Int(C2) + k/|C2|) (Eq. 3–5, Int = the largest edge
  of a component's minimum spanning tree, which is the weight of the edge that last merged it);
  then components smaller than `min_size` are merged along the same order (their Sec. 4.1).
- `selective_search`: hierarchical grouping (Uijlings et al. Algorithm 1): start from the
  segmentation's regions, merge the most similar pair of neighbours until one region is left,
  and keep every region's box. Similarity (Sec. 3.2) = sum of the chosen terms:
  colour = Σ min(c_i, c_j) over L1-normalised 25-bin histograms per channel; texture = Σ min(t_i, t_j)
  over L1-normalised histograms of Gaussian-derivative responses (σ = 1) in 8 orientations × 10
  bins per channel — simplified: the 8 orientations are the positive parts of the directional
  derivatives cos θ·∂x + sin θ·∂y, θ = 0, 45°, …, 315°, each divided by the channel's largest
  response before binning; size = 1 − (|r_i| + |r_j|)/|im|; fill = 1 − (|BB_ij| − |r_i| − |r_j|)/|im|.
  A merged region's histograms are the size-weighted means of its parts' (Eq. 4). Regions are
  neighbours when 8-connected pixels join them. Each strategy (a "+"-joined subset of the four
  terms) and each k (with min_size = k, as in the authors' code) gives a hierarchy; a region at
  position i of its hierarchy (i = 1 the whole image, larger for earlier regions) gets the value
  RND × i with RND uniform in [0, 1) from the seeded stream, all hierarchies' boxes are sorted by
  it, duplicates after the first dropped (Sec. 4.2), and the first `max_boxes` kept.

Boxes are x1 y1 x2 y2 in continuous pixel coordinates (a region over columns c0..c1 has x1 = c0,
x2 = c1 + 1), the convention of data/detection.py.

`load_proposals` reads precomputed boxes: a JSON object {"image name": [[x1, y1, x2, y2], …], …}
or a NumPy .npz whose array names are the image names, each array (N, 4); names as the data
split's `names` (e.g. VOC image ids "000005").
"""
from __future__ import annotations

import heapq
import json
import math
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..core.errors import DataError, UsageError

COLOUR_BINS = 25
TEXTURE_BINS = 10
TEXTURE_ORIENTATIONS = 8
TEXTURE_SIGMA = 1.0
SIMILARITIES = ("colour", "texture", "size", "fill")
ALIASES = {"color": "colour"}


def _pixels(image) -> np.ndarray:
    """(C, H, W) uint8 or float in [0, 1] (tensor or array) → float64 array in [0, 1]."""
    array = image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else np.asarray(image)
    if array.ndim == 2:
        array = array[None]
    if array.ndim != 3:
        raise UsageError(f"an image of shape {tuple(array.shape)}; give one (C, H, W) image")
    return array.astype(np.float64) / 255.0 if array.dtype == np.uint8 else array.astype(np.float64)


def _grid_edges(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """Both ends (flat pixel indices) of the 8-connected grid's edges: right, down, down-right, down-left."""
    index = np.arange(height * width).reshape(height, width)
    pairs = [(index[:, :-1], index[:, 1:]), (index[:-1, :], index[1:, :]),
             (index[:-1, :-1], index[1:, 1:]), (index[:-1, 1:], index[1:, :-1])]
    return (np.concatenate([a.ravel() for a, _ in pairs]), np.concatenate([b.ravel() for _, b in pairs]))


def felzenszwalb_segmentation(image, k: float = 100, sigma: float = 0.8, min_size: int = 20) -> torch.Tensor:
    """Region ids (H, W) int64, consecutive from 0, of Felzenszwalb & Huttenlocher's segmentation of a
    (C, H, W) image (uint8, or float in [0, 1]); `k` and `sigma` in their units (0–255 intensities)."""
    from scipy.ndimage import gaussian_filter
    if k <= 0 or sigma < 0 or min_size < 1:
        raise UsageError(f"felzenszwalb_segmentation: k={k}, sigma={sigma}, min_size={min_size}; "
                         "k > 0, sigma ≥ 0 and min_size ≥ 1")
    pixels = _pixels(image) * 255.0
    channels, height, width = pixels.shape
    if sigma > 0:
        pixels = np.stack([gaussian_filter(channel, sigma, mode="nearest", truncate=4.0) for channel in pixels])
    flat = pixels.reshape(channels, -1)
    ends_a, ends_b = _grid_edges(height, width)
    weights = np.sqrt(((flat[:, ends_a] - flat[:, ends_b]) ** 2).sum(0))
    order = np.argsort(weights, kind="stable")
    ends_a, ends_b, weights = ends_a[order].tolist(), ends_b[order].tolist(), weights[order].tolist()

    parent = list(range(height * width))
    size = [1] * (height * width)
    threshold = [float(k)] * (height * width)   # Int(C) + k/|C|, with Int of a single pixel 0

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]   # path halving
            x = parent[x]
        return x

    def union(a: int, b: int) -> int:
        if size[a] < size[b]:
            a, b = b, a
        parent[b] = a
        size[a] += size[b]
        return a

    for a, b, w in zip(ends_a, ends_b, weights):
        a, b = find(a), find(b)
        if a != b and w <= threshold[a] and w <= threshold[b]:
            root = union(a, b)
            threshold[root] = w + k / size[root]   # w is now the largest edge of the merged MST
    for a, b in zip(ends_a, ends_b):
        a, b = find(a), find(b)
        if a != b and (size[a] < min_size or size[b] < min_size):
            union(a, b)
    roots = np.array([find(x) for x in range(height * width)])
    _, labels = np.unique(roots, return_inverse=True)
    return torch.from_numpy(labels.reshape(height, width).astype(np.int64))


def _histograms(values: np.ndarray, labels: np.ndarray, count: int, bins: int) -> np.ndarray:
    """(count, F·bins) L1-normalised histograms per region of `values` (F, H·W) in [0, 1]."""
    features = values.shape[0]
    binned = np.minimum((values * bins).astype(np.int64), bins - 1)
    index = labels[None] * (features * bins) + np.arange(features)[:, None] * bins + binned
    histograms = np.bincount(index.ravel(), minlength=count * features * bins).reshape(count, -1).astype(np.float64)
    return histograms / histograms.sum(1, keepdims=True)


def _texture_responses(pixels: np.ndarray) -> np.ndarray:
    """(C·8, H·W) positive parts of the σ = 1 Gaussian directional derivatives, each channel's scaled to [0, 1]."""
    from scipy.ndimage import gaussian_filter
    responses = []
    for channel in pixels:
        dx = gaussian_filter(channel, TEXTURE_SIGMA, order=(0, 1), mode="nearest")
        dy = gaussian_filter(channel, TEXTURE_SIGMA, order=(1, 0), mode="nearest")
        angles = np.arange(TEXTURE_ORIENTATIONS) * (2 * math.pi / TEXTURE_ORIENTATIONS)
        oriented = np.maximum(0.0, np.cos(angles)[:, None, None] * dx + np.sin(angles)[:, None, None] * dy)
        responses.append(oriented.reshape(TEXTURE_ORIENTATIONS, -1) / max(oriented.max(), 1e-12))
    return np.concatenate(responses)


def _strategy(text: str) -> frozenset[str]:
    terms = frozenset(ALIASES.get(term.strip(), term.strip()) for term in text.split("+"))
    unknown = sorted(terms - set(SIMILARITIES))
    if unknown or not terms:
        raise UsageError(f"selective search strategy {text!r}: unknown term {unknown[0] if unknown else ''!r}; "
                         f"join some of {', '.join(SIMILARITIES)} with '+'")
    return terms


class _Regions:
    """The initial regions of one segmentation: sizes, boxes, histograms and neighbour pairs."""

    def __init__(self, pixels: np.ndarray, labels: np.ndarray, texture: np.ndarray):
        channels, height, width = pixels.shape
        flat = labels.ravel()
        self.count = int(flat.max()) + 1
        self.sizes = np.bincount(flat, minlength=self.count).astype(np.float64)
        rows, cols = np.divmod(np.arange(height * width), width)
        x1 = np.full(self.count, width)
        y1 = np.full(self.count, height)
        x2 = np.zeros(self.count, dtype=np.int64)
        y2 = np.zeros(self.count, dtype=np.int64)
        np.minimum.at(x1, flat, cols)
        np.minimum.at(y1, flat, rows)
        np.maximum.at(x2, flat, cols + 1)
        np.maximum.at(y2, flat, rows + 1)
        self.boxes = np.stack([x1, y1, x2, y2], 1)
        self.colour = _histograms(np.clip(pixels.reshape(channels, -1), 0, 1), flat, self.count, COLOUR_BINS)
        self.texture = _histograms(texture, flat, self.count, TEXTURE_BINS)
        ends_a, ends_b = _grid_edges(height, width)
        a, b = flat[ends_a], flat[ends_b]
        differ = a != b
        pairs = np.unique(np.stack([np.minimum(a[differ], b[differ]), np.maximum(a[differ], b[differ])], 1), axis=0)
        self.pairs = [tuple(p) for p in pairs.tolist()]
        self.area = float(height * width)


def _group(regions: _Regions, terms: frozenset[str]) -> list[tuple[int, int, int, int]]:
    """Uijlings et al.'s Algorithm 1: every region's box, the initial regions first, then each merge."""
    sizes = regions.sizes.tolist()
    boxes = [tuple(b) for b in regions.boxes.tolist()]
    colour = list(regions.colour)
    texture = list(regions.texture)
    area = regions.area
    neighbours: list[set[int]] = [set() for _ in range(regions.count)]
    for a, b in regions.pairs:
        neighbours[a].add(b)
        neighbours[b].add(a)

    def similarity(i: int, j: int) -> float:
        score = 0.0
        if "colour" in terms:
            score += float(np.minimum(colour[i], colour[j]).sum())
        if "texture" in terms:
            score += float(np.minimum(texture[i], texture[j]).sum())
        if "size" in terms:
            score += 1.0 - (sizes[i] + sizes[j]) / area
        if "fill" in terms:
            bi, bj = boxes[i], boxes[j]
            joint = (max(bi[2], bj[2]) - min(bi[0], bj[0])) * (max(bi[3], bj[3]) - min(bi[1], bj[1]))
            score += 1.0 - (joint - sizes[i] - sizes[j]) / area
        return score

    heap = [(-similarity(a, b), a, b) for a, b in regions.pairs]
    heapq.heapify(heap)
    alive = [True] * regions.count
    while heap:
        _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue   # a pair whose region was merged away since
        t = len(sizes)
        total = sizes[i] + sizes[j]
        colour.append((sizes[i] * colour[i] + sizes[j] * colour[j]) / total)
        texture.append((sizes[i] * texture[i] + sizes[j] * texture[j]) / total)
        sizes.append(total)
        bi, bj = boxes[i], boxes[j]
        boxes.append((min(bi[0], bj[0]), min(bi[1], bj[1]), max(bi[2], bj[2]), max(bi[3], bj[3])))
        alive[i] = alive[j] = False
        alive.append(True)
        joined = (neighbours[i] | neighbours[j]) - {i, j}
        neighbours.append(joined)
        for n in joined:
            neighbours[n] -= {i, j}
            neighbours[n].add(t)
            heapq.heappush(heap, (-similarity(t, n), t, n))
    return boxes


def selective_search(image, strategies=("colour+size+fill+texture",), ks=(100,), max_boxes: int = 2000,
                     seed: int = 0, sigma: float = 0.8) -> torch.Tensor:
    """Selective search boxes (N ≤ max_boxes, 4) float32 x1 y1 x2 y2 of a (C, H, W) image (uint8, or
    float in [0, 1]), ranked as in Uijlings et al. Sec. 4.2 with the seeded stream `seed`."""
    terms = [_strategy(text) for text in strategies]
    if not terms or not ks or max_boxes < 1:
        raise UsageError("selective_search needs at least one strategy, one k and max_boxes ≥ 1")
    pixels = _pixels(image)
    texture = _texture_responses(pixels)
    rng = np.random.default_rng(seed)
    ranked = []
    for k in ks:
        labels = felzenszwalb_segmentation(pixels, k=k, sigma=sigma, min_size=int(k)).numpy()
        regions = _Regions(pixels, labels, texture)
        for strategy in terms:
            hierarchy = _group(regions, strategy)
            positions = np.arange(len(hierarchy), 0, -1)   # the last merge (whole image) is position 1
            values = rng.random(len(hierarchy)) * positions
            ranked += zip(values.tolist(), hierarchy)
    ranked.sort(key=lambda pair: pair[0])
    boxes = list(dict.fromkeys(box for _, box in ranked))[:max_boxes]   # first occurrence of each box
    return torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)


# --- boxes from a file ------------------------------------------------------------------------

def _checked_proposals(path: Path, name: str, rows) -> torch.Tensor:
    try:
        boxes = np.asarray(rows, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{path}: the proposals of {name!r} are not a list of [x1, y1, x2, y2] numbers") from None
    if boxes.size == 0:
        return torch.zeros((0, 4))
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise DataError(f"{path}: the proposals of {name!r} have shape {boxes.shape}; give N rows of [x1, y1, x2, y2]")
    for number, (x1, y1, x2, y2) in enumerate(boxes.tolist(), 1):
        written = f"({x1:g}, {y1:g}, {x2:g}, {y2:g})"
        problem = ("is not finite" if not all(map(math.isfinite, (x1, y1, x2, y2))) else
                   "has zero or negative width" if x2 <= x1 else "has zero or negative height" if y2 <= y1 else
                   "starts at a negative coordinate" if min(x1, y1) < 0 else None)
        if problem:
            raise DataError(f"{path}: image {name!r} proposal {number} {written} {problem}; fix or drop it")
    return torch.from_numpy(boxes.astype(np.float32))


def load_proposals(path) -> dict[str, torch.Tensor]:
    """Precomputed proposals per image name (JSON or .npz, see the module docstring), each (N, 4) float32,
    checked: finite, x2 > x1, y2 > y1, no negative coordinate (DataError naming the file, image and box)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UsageError(f"{path}: no such proposals file; give a .json or .npz of boxes per image name")
    if path.suffix.lower() == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                raw = {name: archive[name] for name in archive.files}
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise DataError(f"{path}: cannot read the .npz ({exc})") from None
    else:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path}: cannot read proposals JSON ({exc})") from None
        if not isinstance(raw, dict):
            raise DataError(f"{path}: proposals JSON must be an object {{\"image name\": [[x1, y1, x2, y2], ...]}}")
    return {str(name): _checked_proposals(path, str(name), rows) for name, rows in raw.items()}
