"""A small renderer in torch: meshes, a PASCAL 3D+ camera, a z-buffer rasteriser, Lambertian shading.

Render for CNN (Su, Qi, Li & Guibas, ICCV 2015, Sec. 3 and Fig. 1) trains viewpoint networks on
images of 3-D models rendered from sampled viewpoints under random lights and pasted over real
background crops. This module is the rendering half of that pipeline, written for our data set.

Conventions (those of PASCAL 3D+, which Render for CNN follows):

- The object frame has z up and the object's front facing −y; objects are normalised to the unit
  sphere (bounding-box centre at the origin, farthest vertex at radius 1).
- The camera sits at C = d (cos φ sin θ, −cos φ cos θ, sin φ) and looks at the origin with the
  world z axis up: azimuth θ = 0 sees the object's front, θ = 90° puts the camera on the +x side
  (θ grows counter-clockwise seen from above, i.e. the object seems to turn clockwise, as in the
  paper's Fig. 10), elevation φ > 0 looks down on the object.
- Camera frame: x to the right of the image, y up, looking along −z; world to camera is
  R = Rx(φ − 90°) Rz(−θ), p = R (X − C). A pinhole with focal length f (pixels) maps p to
  (u, v) = f (x, y) / (−z); the in-plane rotation ψ then turns (u, v) counter-clockwise in the
  image, and the pixel position is (column, row) = (c_x + u', c_y − v'), pixel i covering [i, i+1).

The rasteriser projects every triangle, enumerates the pixels of its bounding box (triangles
grouped by box size, so the work follows the covered area), tests pixel centres with edge
functions, interpolates inverse depth (linear in screen space for a planar triangle) and keeps the
nearest triangle per pixel with one scatter-max over a key that packs (inverse depth, triangle).
Shading is flat Lambertian with a directional light plus ambient light: ρ (k_a + k_d max(0, n·l)),
with n turned towards the camera (two-sided, since mesh files do not agree on orientation).
"""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from ..core.errors import DataError

MESH_SUFFIXES = (".off", ".ply", ".obj")
NEAR_PLANE = 1e-3             # triangles with a vertex closer than this to the camera are dropped
RASTER_CHUNK = 1 << 21        # (triangle, pixel) candidates tested at once (bounds the memory)


@dataclass
class Mesh:
    """A triangle mesh: float32 vertices (V, 3) and int64 faces (F, 3) indexing them."""
    vertices: torch.Tensor
    faces: torch.Tensor

    @property
    def triangles(self) -> torch.Tensor:
        """(F, 3, 3): the corners of each face."""
        return self.vertices[self.faces]


# --- reading mesh files -------------------------------------------------------------------------

def read_mesh(path: str | Path) -> Mesh:
    """An OFF, PLY (ASCII or binary) or OBJ file as a triangle mesh (polygons fan-triangulated)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise DataError(f"{path}: cannot read the mesh file ({error.strerror})") from None
    return parse_mesh(data, path.suffix, str(path))


def parse_mesh(data: bytes, suffix: str, name: str) -> Mesh:
    """The mesh in `data`, a file of type `suffix` (.off, .ply, .obj); `name` is used in errors."""
    readers = {".off": _parse_off, ".ply": _parse_ply, ".obj": _parse_obj}
    reader = readers.get(suffix.lower())
    if reader is None:
        raise DataError(f"{name}: not a mesh file (expected {', '.join(MESH_SUFFIXES)})")
    try:
        vertices, polygons = reader(data, name)
    except DataError:
        raise
    except (ValueError, IndexError, UnicodeDecodeError, StopIteration) as error:
        raise DataError(f"{name}: cannot decode the mesh ({type(error).__name__}: {error})") from None
    return _checked(vertices, polygons, name)


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"{name}: not a text file (OFF and OBJ meshes are text)") from None


def _fan(polygon: Sequence[int]) -> list[tuple[int, int, int]]:
    """A polygon (i0, i1, …, ik) as the triangles (i0, i_j, i_j+1)."""
    return [(polygon[0], polygon[j], polygon[j + 1]) for j in range(1, len(polygon) - 1)]


def _parse_off(data: bytes, name: str):
    lines = [line.split("#")[0].split() for line in _text(data, name).splitlines()]
    lines = [tokens for tokens in lines if tokens]
    if not lines or not lines[0][0].endswith("OFF"):
        raise DataError(f"{name}: an OFF file starts with OFF")
    header = lines[0][1:] or lines[1]
    body = lines[1:] if lines[0][1:] else lines[2:]
    n_vertices, n_faces = int(header[0]), int(header[1])
    if len(body) < n_vertices + n_faces:
        raise DataError(f"{name}: the header promises {n_vertices} vertices and {n_faces} faces, "
                        f"the file has {len(body)} lines after it (truncated?)")
    vertices = np.array([tokens[:3] for tokens in body[:n_vertices]], dtype=np.float64)
    polygons = []
    for tokens in body[n_vertices:n_vertices + n_faces]:
        count = int(tokens[0])
        polygons.append([int(t) for t in tokens[1:1 + count]])
        if len(polygons[-1]) != count:
            raise DataError(f"{name}: a face lists {len(polygons[-1])} of its {count} vertices")
    return vertices, polygons


PLY_TYPES = {"char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1", "short": "i2", "int16": "i2",
             "ushort": "u2", "uint16": "u2", "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
             "float": "f4", "float32": "f4", "double": "f8", "float64": "f8"}


def _parse_ply(data: bytes, name: str):
    end = data.find(b"end_header")
    if not data.startswith(b"ply") or end < 0:
        raise DataError(f"{name}: a PLY file starts with 'ply' and has an end_header line")
    header = data[:end].decode("ascii").splitlines()
    body_start = data.index(b"\n", end) + 1
    form, elements = None, []   # elements: [name, count, [(property, type, list count type or None)]]
    for line in header[1:]:
        tokens = line.split()
        if not tokens or tokens[0] in ("comment", "obj_info"):
            continue
        if tokens[0] == "format":
            form = tokens[1]
        elif tokens[0] == "element":
            elements.append([tokens[1], int(tokens[2]), []])
        elif tokens[0] == "property" and tokens[1] == "list":
            elements[-1][2].append((tokens[4], PLY_TYPES[tokens[3]], PLY_TYPES[tokens[2]]))
        elif tokens[0] == "property":
            elements[-1][2].append((tokens[2], PLY_TYPES[tokens[1]], None))
    if form not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise DataError(f"{name}: unknown PLY format {form!r}")
    read = _ply_ascii if form == "ascii" else _ply_binary
    values = read(data[body_start:], elements, "<" if form == "binary_little_endian" else ">", name)
    if "vertex" not in values or "face" not in values:
        raise DataError(f"{name}: a PLY mesh needs vertex and face elements")
    vertex = values["vertex"]
    if not all(axis in vertex for axis in "xyz"):
        raise DataError(f"{name}: the vertex element has no x, y, z properties")
    face = values["face"]
    key = "vertex_indices" if "vertex_indices" in face else "vertex_index"
    if key not in face:
        raise DataError(f"{name}: the face element has no vertex_indices list")
    vertices = np.stack([np.asarray(vertex[axis], dtype=np.float64) for axis in "xyz"], 1)
    return vertices, [list(map(int, polygon)) for polygon in face[key]]


def _ply_ascii(body: bytes, elements, _order: str, name: str) -> dict:
    tokens = iter(body.decode("ascii").split())
    values = {}
    for element, count, properties in elements:
        columns = {prop: [] for prop, _, _ in properties}
        for _ in range(count):
            for prop, _, list_type in properties:
                if list_type is None:
                    columns[prop].append(float(next(tokens)))
                else:
                    columns[prop].append([float(next(tokens)) for _ in range(int(next(tokens)))])
        values[element] = columns
    return values


def _ply_binary(body: bytes, elements, order: str, name: str) -> dict:
    values, offset = {}, 0
    for element, count, properties in elements:
        if all(list_type is None for _, _, list_type in properties):
            dtype = np.dtype([(prop, order + kind) for prop, kind, _ in properties])
            if offset + dtype.itemsize * count > len(body):
                raise DataError(f"{name}: the {element} element runs past the end of the file (truncated?)")
            table = np.frombuffer(body, dtype, count, offset)
            values[element] = {prop: table[prop] for prop, _, _ in properties}
            offset += dtype.itemsize * count
            continue
        columns = {prop: [] for prop, _, _ in properties}
        for _ in range(count):   # lists of varying length: item by item
            for prop, kind, list_type in properties:
                if list_type is None:
                    columns[prop].append(np.frombuffer(body, order + kind, 1, offset)[0])
                    offset += np.dtype(kind).itemsize
                else:
                    length = int(np.frombuffer(body, order + list_type, 1, offset)[0])
                    offset += np.dtype(list_type).itemsize
                    columns[prop].append(np.frombuffer(body, order + kind, length, offset))
                    offset += np.dtype(kind).itemsize * length
        values[element] = columns
    return values


def _parse_obj(data: bytes, name: str):
    vertices, polygons = [], []
    for line in _text(data, name).splitlines():
        tokens = line.split("#")[0].split()
        if not tokens:
            continue
        if tokens[0] == "v":
            vertices.append([float(t) for t in tokens[1:4]])
            if len(vertices[-1]) != 3:
                raise DataError(f"{name}: a vertex line with fewer than 3 coordinates: {line.strip()!r}")
        elif tokens[0] == "f":
            # "i", "i/t", "i//n" or "i/t/n"; negative indices count back from the latest vertex.
            indices = [int(t.split("/")[0]) for t in tokens[1:]]
            polygons.append([i - 1 if i > 0 else len(vertices) + i for i in indices])
    return np.array(vertices, dtype=np.float64).reshape(-1, 3), polygons


def _checked(vertices: np.ndarray, polygons: list, name: str) -> Mesh:
    """The triangulated mesh, after checking that it has faces, finite vertices and valid indices."""
    if len(vertices) == 0 or not np.isfinite(vertices).all():
        raise DataError(f"{name}: no vertices, or a vertex that is not a finite number")
    triangles = [t for polygon in polygons for t in _fan(polygon)]
    if not triangles:
        raise DataError(f"{name}: no faces with 3 or more vertices")
    faces = np.array(triangles, dtype=np.int64)
    if faces.min() < 0 or faces.max() >= len(vertices):
        raise DataError(f"{name}: a face refers to vertex {faces.max() if faces.max() >= len(vertices) else faces.min()}"
                        f" of {len(vertices)} (indices run 0..{len(vertices) - 1})")
    return Mesh(torch.from_numpy(vertices).float(), torch.from_numpy(faces))


def write_off(mesh: Mesh, path: str | Path) -> None:
    """`mesh` as an OFF file (used to build test fixtures and to export procedural shapes)."""
    lines = ["OFF", f"{len(mesh.vertices)} {len(mesh.faces)} 0"]
    lines += [" ".join(f"{c:.9g}" for c in v) for v in mesh.vertices.tolist()]
    lines += ["3 " + " ".join(str(i) for i in f) for f in mesh.faces.tolist()]
    Path(path).write_text("\n".join(lines) + "\n")


# --- procedural shapes ------------------------------------------------------------------------

def normalized(mesh: Mesh) -> Mesh:
    """The mesh centred on its bounding box's centre and scaled so its farthest vertex is at radius 1."""
    centre = (mesh.vertices.amax(0) + mesh.vertices.amin(0)) / 2
    vertices = mesh.vertices - centre
    return Mesh(vertices / vertices.norm(dim=1).amax().clamp_min(1e-12), mesh.faces)


def merged(parts: Sequence[Mesh]) -> Mesh:
    """One mesh holding all `parts` (a union of surfaces; overlaps are resolved by the z-buffer)."""
    offsets = np.cumsum([0] + [len(p.vertices) for p in parts[:-1]])
    return Mesh(torch.cat([p.vertices for p in parts]),
                torch.cat([p.faces + int(o) for p, o in zip(parts, offsets)]))


def rotated(mesh: Mesh, axis: str, degrees: float) -> Mesh:
    """The mesh turned by `degrees` about the x, y or z axis (right-handed: counter-clockwise seen from +axis)."""
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    i, j = {"x": (1, 2), "y": (2, 0), "z": (0, 1)}[axis]
    rotation = torch.eye(3)
    rotation[i, i], rotation[i, j], rotation[j, i], rotation[j, j] = c, -s, s, c
    return Mesh(mesh.vertices @ rotation.T, mesh.faces)


def moved(mesh: Mesh, offset: Sequence[float]) -> Mesh:
    return Mesh(mesh.vertices + torch.tensor(offset, dtype=torch.float32), mesh.faces)


def box(centre: Sequence[float], size: Sequence[float]) -> Mesh:
    """An axis-aligned box of full extents `size` around `centre`, 12 outward-facing triangles."""
    corners = torch.tensor([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)])
    vertices = corners * torch.tensor(size, dtype=torch.float32) + torch.tensor(centre, dtype=torch.float32)
    # Corner index = 4·[x>0] + 2·[y>0] + [z>0]; each quad listed counter-clockwise seen from outside.
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = [t for quad in quads for t in _fan(quad)]
    return Mesh(vertices, torch.tensor(faces, dtype=torch.int64))


def _signed_power(x: torch.Tensor, exponent: float) -> torch.Tensor:
    return torch.sign(x) * x.abs() ** exponent


def superquadric(epsilon1: float, epsilon2: float, scales: Sequence[float] = (1.0, 1.0, 1.0),
                 centre: Sequence[float] = (0.0, 0.0, 0.0), rings: int = 12, segments: int = 20) -> Mesh:
    """Barr's superellipsoid (IEEE CG&A 1981), x = a1 c(η)^ε1 c(ω)^ε2, y = a2 c(η)^ε1 s(ω)^ε2,
    z = a3 s(η)^ε1 (signed powers), on a grid of `rings` latitudes η ∈ [−π/2, π/2] (the poles one
    vertex each) and `segments` longitudes ω ∈ [−π, π); faces outward. ε1 = ε2 = 1 is an ellipsoid,
    ε → 0 a box, ε1 → 0 with ε2 = 1 a cylinder along z."""
    eta = torch.linspace(-math.pi / 2, math.pi / 2, rings + 1)[1:-1]
    omega = torch.arange(segments) * (2 * math.pi / segments) - math.pi
    ce, se = torch.cos(eta)[:, None], torch.sin(eta)[:, None]
    co, so = torch.cos(omega)[None], torch.sin(omega)[None]
    ring = torch.stack([_signed_power(ce, epsilon1) * _signed_power(co, epsilon2),
                        _signed_power(ce, epsilon1) * _signed_power(so, epsilon2),
                        _signed_power(se, epsilon1).expand(-1, segments)], -1).reshape(-1, 3)
    vertices = torch.cat([torch.tensor([[0.0, 0.0, -1.0]]), ring, torch.tensor([[0.0, 0.0, 1.0]])])
    vertices = vertices * torch.tensor(scales, dtype=torch.float32) + torch.tensor(centre, dtype=torch.float32)
    south, north = 0, len(vertices) - 1
    index = lambda r, s: 1 + r * segments + s % segments
    faces = []
    for s in range(segments):
        faces.append((south, index(0, s + 1), index(0, s)))
        faces.append((north, index(rings - 2, s), index(rings - 2, s + 1)))
        for r in range(rings - 2):
            faces += _fan((index(r, s), index(r, s + 1), index(r + 1, s + 1), index(r + 1, s)))
    return Mesh(vertices, torch.tensor(faces, dtype=torch.int64))


def cylinder(centre: Sequence[float], radius: float, length: float, axis: str = "z") -> Mesh:
    """A closed round cylinder (a superquadric with ε1 = 0.1, ε2 = 1) along `axis`."""
    shape = superquadric(0.1, 1.0, (radius, radius, length / 2), rings=8, segments=14)
    if axis != "z":
        shape = rotated(shape, "y" if axis == "x" else "x", 90.0)
    return moved(shape, centre)


# Categories whose shapes have no rotational symmetry about the vertical axis, so each azimuth in
# 0..359 gives a different image: a tail, a cabin set back, a backrest, a screen's housing or a head
# marks the back from the front. They are mirror-symmetric left–right, like real cars and chairs;
# a mirror image is a different view (θ ↦ −θ), never the same one. (No horizontal-flip augmentation
# may be used on them: it turns θ into −θ.)
def aeroplane(r: random.Random) -> Mesh:
    length, radius = r.uniform(1.6, 2.2), r.uniform(0.09, 0.15)
    wing_y, span, chord = -r.uniform(0.0, 0.15) * length, r.uniform(1.4, 2.0), r.uniform(0.25, 0.4)
    fin_height, fin_chord = r.uniform(0.3, 0.45), r.uniform(0.2, 0.3)
    tail_y = length / 2 - fin_chord / 2
    return merged([
        superquadric(1.0, 1.0, (radius, length / 2, radius)),
        box((0, wing_y, r.uniform(-0.6, 0.4) * radius), (span, chord, 0.04)),
        box((0, tail_y, radius + fin_height / 2 - 0.02), (0.03, fin_chord, fin_height)),
        box((0, tail_y, r.choice([0.0, radius + fin_height - 0.03])), (r.uniform(0.5, 0.8), 0.16, 0.03)),
    ])


def boat(r: random.Random) -> Mesh:
    length, width = r.uniform(1.8, 2.4), r.uniform(0.55, 0.8)
    cabin_length, mast = r.uniform(0.4, 0.6), r.uniform(0.8, 1.2)
    return merged([
        superquadric(r.uniform(0.3, 0.6), r.uniform(0.4, 0.9), (width / 2, length / 2, 0.22)),
        box((0, r.uniform(0.15, 0.3) * length, 0.32), (0.7 * width, cabin_length, 0.3)),
        box((0, -r.uniform(0.1, 0.25) * length, 0.2 + mast / 2), (0.05, 0.05, mast)),
    ])


def car(r: random.Random) -> Mesh:
    length, width, height = r.uniform(1.8, 2.2), r.uniform(0.8, 0.9), r.uniform(0.3, 0.4)
    wheel = r.uniform(0.16, 0.2)
    cabin_length = r.uniform(0.4, 0.55) * length
    parts = [box((0, 0, wheel + height / 2), (width, length, height)),
             box((0, r.uniform(0.05, 0.18) * length, wheel + height + 0.14), (0.9 * width, cabin_length, 0.28))]
    for x in (-width / 2, width / 2):
        for y in (-0.32 * length, 0.32 * length):
            parts.append(cylinder((x, y, wheel), wheel, 0.14, axis="x"))
    if r.random() < 0.5:   # a rear spoiler
        parts.append(box((0, length / 2 - 0.08, wheel + height + 0.1), (width, 0.1, 0.03)))
    return merged(parts)


def chair(r: random.Random) -> Mesh:
    width, depth, seat = r.uniform(0.8, 1.0), r.uniform(0.8, 1.0), r.uniform(0.8, 1.0)
    back = r.uniform(0.8, 1.1)
    parts = [box((0, 0, seat), (width, depth, 0.08)),
             box((0, depth / 2 - 0.04, seat + back / 2), (width, 0.08, back))]
    for x in (-width / 2 + 0.04, width / 2 - 0.04):
        for y in (-depth / 2 + 0.04, depth / 2 - 0.04):
            parts.append(box((x, y, seat / 2), (0.07, 0.07, seat)))
    if r.random() < 0.4:   # armrests
        for x in (-width / 2 + 0.04, width / 2 - 0.04):
            parts.append(box((x, 0, seat + 0.3), (0.07, depth, 0.05)))
    return merged(parts)


def sofa(r: random.Random) -> Mesh:
    width, depth, base = r.uniform(1.8, 2.4), r.uniform(0.8, 1.0), r.uniform(0.35, 0.45)
    back, arm = r.uniform(0.4, 0.6), r.uniform(0.2, 0.35)
    parts = [box((0, 0, base / 2), (width, depth, base)),
             box((0, depth / 2 - 0.1, base + back / 2), (width, 0.2, back))]
    for x in (-width / 2 + 0.1, width / 2 - 0.1):
        parts.append(box((x, 0, base + arm / 2), (0.2, depth, arm)))
    return merged(parts)


def tvmonitor(r: random.Random) -> Mesh:
    width, height, thickness = r.uniform(1.2, 1.6), r.uniform(0.7, 1.0), r.uniform(0.06, 0.1)
    stand, housing = r.uniform(0.2, 0.3), r.uniform(0.2, 0.4)
    return merged([
        box((0, 0, stand + height / 2), (width, thickness, height)),
        box((0, thickness / 2 + housing / 2, stand + height / 2), (0.6 * width, housing, 0.6 * height)),
        box((0, 0, stand / 2), (0.1, 0.1, stand)),
        box((0, -0.08, 0.02), (0.5 * width, 0.4, 0.04)),
    ])


def animal(r: random.Random) -> Mesh:
    body_length, leg = r.uniform(0.8, 1.1), r.uniform(0.5, 0.7)
    body_z = leg + 0.2
    head_y, head_z = -body_length / 2 - r.uniform(0.05, 0.15), body_z + r.uniform(0.1, 0.35)
    parts = [superquadric(r.uniform(0.6, 1.0), 1.0, (0.28, body_length / 2, 0.25), (0, 0, body_z)),
             superquadric(1.0, 1.0, (0.15, 0.22, 0.15), (0, head_y, head_z)),
             box((0, body_length / 2 + 0.15, body_z + r.uniform(0.0, 0.15)), (0.05, 0.4, 0.05))]   # tail
    for x in (-0.15, 0.15):
        for y in (-0.35 * body_length, 0.35 * body_length):
            parts.append(cylinder((x, y, leg / 2), 0.06, leg))
    return merged(parts)


CATEGORY_BUILDERS = {"aeroplane": aeroplane, "animal": animal, "boat": boat, "car": car, "chair": chair,
                     "sofa": sofa, "tvmonitor": tvmonitor}


# --- camera -----------------------------------------------------------------------------------

def focal_length(size: int, fov_degrees: float) -> float:
    """Focal length in pixels of a square image of side `size` with field of view `fov_degrees`."""
    return size / 2 / math.tan(math.radians(fov_degrees) / 2)


def world_to_camera(azimuth: torch.Tensor, elevation: torch.Tensor, distance: torch.Tensor):
    """Rotations R (B, 3, 3) and camera centres C (B, 3) for angles in degrees: p = R (X − C)."""
    a, e = torch.deg2rad(azimuth.float()), torch.deg2rad(elevation.float())
    ca, sa, ce, se = torch.cos(a), torch.sin(a), torch.cos(e), torch.sin(e)
    zero, one = torch.zeros_like(a), torch.ones_like(a)
    rz = torch.stack([ca, sa, zero, -sa, ca, zero, zero, zero, one], -1).view(-1, 3, 3)        # Rz(−θ)
    rx = torch.stack([one, zero, zero, zero, se, ce, zero, -ce, se], -1).view(-1, 3, 3)         # Rx(φ − 90°)
    centre = distance.float()[:, None] * torch.stack([ce * sa, -ce * ca, se], -1)
    return rx @ rz, centre


def project(points: torch.Tensor, azimuth: torch.Tensor, elevation: torch.Tensor, inplane: torch.Tensor,
            distance: torch.Tensor, focal: float, size: int, offset: torch.Tensor | None = None):
    """Pixel positions (B, N, 2) as (column, row) and depths (B, N) of object points (B, N, 3) or (N, 3).

    Angles in degrees, `distance` in object units, `focal` in pixels, a square image of side `size`
    whose principal point is its centre moved by `offset` (B, 2) pixels (column, row).
    """
    rotation, centre = world_to_camera(azimuth, elevation, distance)
    camera = (points.expand(len(rotation), -1, -1) - centre[:, None]) @ rotation.transpose(1, 2)
    depth = -camera[..., 2]
    u = focal * camera[..., 0] / depth
    v = focal * camera[..., 1] / depth
    psi = torch.deg2rad(inplane.float())[:, None]
    u, v = u * torch.cos(psi) - v * torch.sin(psi), u * torch.sin(psi) + v * torch.cos(psi)
    principal = torch.full((len(rotation), 2), size / 2) + (0 if offset is None else offset)
    return torch.stack([principal[:, None, 0] + u, principal[:, None, 1] - v], -1), depth


# --- rasteriser and shading -------------------------------------------------------------------

def rasterize(corners: torch.Tensor, depths: torch.Tensor, owner: torch.Tensor, count: int, size: int):
    """The nearest triangle at each pixel centre: int64 (count, size, size), −1 where none.

    `corners` (T, 3, 2) pixel positions, `depths` (T, 3) depths, `owner` (T,) the image of each
    triangle. Each triangle's bounding box is enumerated in a window of 2^i × 2^j pixels covering it.
    """
    keep = (depths > NEAR_PLANE).all(1)
    corners, depths, owner = corners[keep], depths[keep], owner[keep]
    triangle_ids = torch.nonzero(keep)[:, 0]
    low = torch.ceil(corners.amin(1) - 0.5).clamp(0, size).long()          # first pixel column/row inside
    high = torch.floor(corners.amax(1) - 0.5).clamp(-1, size - 1).long()   # last one
    extent = high - low + 1
    a, b, c = corners[:, 0], corners[:, 1], corners[:, 2]
    area = _edge(a, b, c)
    visible = (extent > 0).all(1) & (area.abs() > 1e-9)
    # Each edge function and the inverse depth are affine in the pixel centre (x, y): A x + B y + C.
    sign = torch.sign(area)[:, None]
    first, second = torch.stack([b, c, a], 1), torch.stack([c, a, b], 1)    # the edge opposite each corner
    edge_a = (first[..., 1] - second[..., 1]) * sign
    edge_b = (second[..., 0] - first[..., 0]) * sign
    edge_c = (second[..., 1] - first[..., 1]) * first[..., 0] * sign - (second[..., 0] - first[..., 0]) * first[..., 1] * sign
    # Inverse depth is linear in screen space over a planar triangle: Σ b_i / z_i, b_i = w_i / |area|.
    weight = 1 / (depths * area.abs()[:, None].clamp_min(1e-12))
    planes = torch.stack([edge_a, edge_b, edge_c], -1)                      # (T, 3 edges, 3 coefficients)
    depth_plane = (planes * weight[..., None]).sum(1)                        # (T, 3)
    buffer = torch.full((count * size * size,), -1, dtype=torch.int64)
    window = torch.ceil(torch.log2(extent.clamp_min(1).float())).long()     # (T, 2): log2 of the window's sides
    code = torch.where(visible, window[:, 0] * 64 + window[:, 1], -1)
    for value in torch.unique(code[code >= 0]).tolist():
        width, height = 1 << (value // 64), 1 << (value % 64)
        chosen = torch.nonzero(code == value)[:, 0]
        step = max(1, RASTER_CHUNK // (width * height))
        for start in range(0, len(chosen), step):
            batch = chosen[start:start + step]
            _raster_window(batch, width, height, planes, depth_plane, owner, triangle_ids, low, high, size, buffer)
    winner = torch.where(buffer >= 0, buffer & 0xFFFFFFFF, -1)
    return winner.view(count, size, size)


def _edge(a: torch.Tensor, b: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """Twice the signed area of (a, b, p); its sign tells the side of the line ab that p is on."""
    return (b[..., 0] - a[..., 0]) * (p[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (p[..., 0] - a[..., 0])


def _raster_window(batch, width, height, planes, depth_plane, owner, triangle_ids, low, high, size, buffer):
    columns = low[batch, 0, None] + torch.arange(width)                     # (n, width)
    rows = low[batch, 1, None] + torch.arange(height)                       # (n, height)
    x, y = (columns + 0.5)[:, None, :], (rows + 0.5)[:, :, None]
    covered = (columns <= high[batch, 0, None])[:, None, :] & (rows <= high[batch, 1, None])[:, :, None]
    plane = planes[batch]
    for i in range(3):
        covered &= plane[:, i, 0, None, None] * x + (plane[:, i, 1, None, None] * y + plane[:, i, 2, None, None]) >= 0
    depth = depth_plane[batch]
    inverse = depth[:, 0, None, None] * x + (depth[:, 1, None, None] * y + depth[:, 2, None, None])
    flat = (owner[batch, None, None] * size + rows[:, :, None]) * size + columns[:, None, :]
    where = covered.nonzero(as_tuple=True)
    # Positive float32 bit patterns sort like the numbers: (bits << 32 | triangle) orders by inverse depth.
    key = (inverse[where].float().view(torch.int32).long() << 32) | triangle_ids[batch[where[0]]]
    buffer.scatter_reduce_(0, flat[where], key, "amax")


def lambert(normals: torch.Tensor, light: torch.Tensor, ambient: float | torch.Tensor,
            diffuse: float | torch.Tensor) -> torch.Tensor:
    """Lambert's law with ambient light: k_a + k_d max(0, n·l) for unit normals and light directions (…, 3)."""
    return ambient + diffuse * (normals * light).sum(-1).clamp_min(0)


def render(meshes: Sequence[Mesh], azimuth: torch.Tensor, elevation: torch.Tensor, inplane: torch.Tensor,
           distance: torch.Tensor, *, size: int = 64, fov: float = 40.0, light: torch.Tensor | None = None,
           albedo: torch.Tensor | None = None, ambient: float | torch.Tensor = 0.35,
           diffuse: float | torch.Tensor = 0.65, offset: torch.Tensor | None = None, supersample: int = 1):
    """Images of meshes[b] seen from the viewpoint b: RGB float (B, 3, size, size) in [0, 1],
    premultiplied by the coverage alpha (B, 1, size, size) (composite: rgb + (1 − alpha)·background).

    `light` (B, 3): unit directions towards the light in the camera frame (default: from the
    camera); `albedo` (B, 3) the surface colours (default grey); `ambient`, `diffuse` scalars or (B,).
    `supersample` s renders at s·size and averages s×s blocks (antialiased edges, fractional alpha).
    """
    count = len(meshes)
    render_size = size * supersample
    focal = focal_length(render_size, fov)
    light = torch.tensor([[0.0, 0.0, 1.0]]).expand(count, 3) if light is None else light
    albedo = torch.full((count, 3), 0.8) if albedo is None else albedo
    triangles = [m.triangles for m in meshes]
    owner = torch.cat([torch.full((len(t),), b, dtype=torch.int64) for b, t in enumerate(triangles)])
    rotation, centre = world_to_camera(azimuth, elevation, distance)
    camera = torch.einsum("tij,tkj->tki", rotation[owner], torch.cat(triangles) - centre[owner, None])
    depth = -camera[..., 2]
    corners = focal * camera[..., :2] / depth[..., None]
    psi = torch.deg2rad(inplane.float())[owner, None]
    u, v = corners[..., 0], corners[..., 1]
    u, v = u * torch.cos(psi) - v * torch.sin(psi), u * torch.sin(psi) + v * torch.cos(psi)
    principal = torch.full((count, 2), render_size / 2)
    if offset is not None:
        principal = principal + offset * supersample
    pixels = torch.stack([principal[owner, None, 0] + u, principal[owner, None, 1] - v], -1)
    winner = rasterize(pixels, depth, owner, count, render_size)

    normal = torch.linalg.cross(camera[:, 1] - camera[:, 0], camera[:, 2] - camera[:, 0])
    normal = normal / normal.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    towards_camera = (normal * -camera.mean(1)).sum(-1, keepdim=True) >= 0
    normal = torch.where(towards_camera, normal, -normal)
    as_tensor = lambda k: (k if torch.is_tensor(k) else torch.tensor(float(k))).expand(count)
    shade = lambert(normal, light[owner], as_tensor(ambient)[owner], as_tensor(diffuse)[owner])
    colour = albedo[owner] * shade[:, None]                                     # (T, 3)
    hit = winner >= 0
    image = torch.where(hit[..., None], colour[winner.clamp_min(0)], 0.0).permute(0, 3, 1, 2)
    alpha = hit[:, None].float()
    if supersample > 1:
        image = torch.nn.functional.avg_pool2d(image, supersample)
        alpha = torch.nn.functional.avg_pool2d(alpha, supersample)
    return image.clamp(0, 1), alpha
