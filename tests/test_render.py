"""The renderer of data/render.py: camera geometry against a hand-written pinhole, z-buffer,
Lambert's law, mesh readers, Barr's superquadrics and the azimuth convention."""
from __future__ import annotations

import math
import random
import struct

import pytest
import torch

from visionzoo.core.errors import DataError
from visionzoo.data.render import (
    CATEGORY_BUILDERS,
    Mesh,
    box,
    focal_length,
    lambert,
    normalized,
    project,
    rasterize,
    read_mesh,
    render,
    rotated,
    superquadric,
    write_off,
)


def one(value: float) -> torch.Tensor:
    return torch.tensor([float(value)])


def pinhole(point, azimuth, elevation, inplane, distance, focal, size):
    """A look-at camera written out by hand: the camera at distance d, azimuth θ (0 = on −y, 90° = on
    +x), elevation φ; right = forward × z, up = right × forward; the image turned by ψ counter-clockwise."""
    a, e, p = math.radians(azimuth), math.radians(elevation), math.radians(inplane)
    camera = [distance * math.cos(e) * math.sin(a), -distance * math.cos(e) * math.cos(a), distance * math.sin(e)]
    forward = [-c / distance for c in camera]
    right = [forward[1], -forward[0], 0.0]                      # forward × (0, 0, 1)
    norm = math.hypot(*right)
    right = [r / norm for r in right]
    up = [right[1] * forward[2] - right[2] * forward[1], right[2] * forward[0] - right[0] * forward[2],
          right[0] * forward[1] - right[1] * forward[0]]
    relative = [q - c for q, c in zip(point, camera)]
    dot = lambda u, v: sum(x * y for x, y in zip(u, v))
    depth = dot(relative, forward)
    u, v = focal * dot(relative, right) / depth, focal * dot(relative, up) / depth
    u, v = u * math.cos(p) - v * math.sin(p), u * math.sin(p) + v * math.cos(p)
    return size / 2 + u, size / 2 - v, depth


CUBE = box((0, 0, 0), (1, 1, 1))


@pytest.mark.parametrize("azimuth, elevation, inplane, distance", [(0, 0, 0, 3), (30, 20, 10, 3.5),
                                                                  (200, -10, -15, 2.8), (300, 40, 5, 4)])
def test_projection_of_cube_corners_matches_hand_pinhole(azimuth, elevation, inplane, distance):
    size, focal = 64, focal_length(64, 40.0)
    pixels, depth = project(CUBE.vertices, one(azimuth), one(elevation), one(inplane), one(distance), focal, size)
    for corner, (column, row), z in zip(CUBE.vertices.tolist(), pixels[0].tolist(), depth[0].tolist()):
        expected = pinhole(corner, azimuth, elevation, inplane, distance, focal, size)
        assert column == pytest.approx(expected[0], abs=1e-3)
        assert row == pytest.approx(expected[1], abs=1e-3)
        assert z == pytest.approx(expected[2], abs=1e-4)


@pytest.mark.parametrize("azimuth, elevation, inplane", [(30, 20, 10), (135, 35, -12)])
def test_cube_silhouette_extent_matches_projected_corners(azimuth, elevation, inplane):
    size = 64
    focal = focal_length(size, 40.0)
    corners = [pinhole(c, azimuth, elevation, inplane, 3.0, focal, size) for c in CUBE.vertices.tolist()]
    _, alpha = render([CUBE], one(azimuth), one(elevation), one(inplane), one(3.0), size=size, fov=40.0)
    rows, columns = torch.nonzero(alpha[0, 0] > 0, as_tuple=True)
    # Pixel i is lit when its centre i + 0.5 is inside the silhouette: the lit centres lie within the
    # corners' extent and reach to within a pixel and a half of it (a sharp corner can fall between centres).
    for lit, projected in ((columns, [c[0] for c in corners]), (rows, [c[1] for c in corners])):
        first, last = lit.min().item() + 0.5, lit.max().item() + 0.5
        assert min(projected) <= first <= min(projected) + 1.5
        assert max(projected) - 1.5 <= last <= max(projected)


def test_near_triangle_occludes_far_one_whatever_the_order():
    near = torch.tensor([[[10.0, 10.0], [50.0, 12.0], [30.0, 50.0]]])
    far = torch.tensor([[[5.0, 5.0], [60.0, 5.0], [30.0, 60.0]]])
    for order in ((near, far), (far, near)):
        corners = torch.cat(order)
        depths = torch.tensor([[2.0] * 3, [5.0] * 3]) if order[0] is near else torch.tensor([[5.0] * 3, [2.0] * 3])
        winner = rasterize(corners, depths, torch.zeros(2, dtype=torch.int64), 1, 64)[0]
        near_index = 0 if order[0] is near else 1
        assert winner[30, 30] == near_index            # inside both: the near one
        assert winner[7, 30] == 1 - near_index         # only inside the far one
        assert winner[0, 0] == -1


def test_interpenetrating_triangles_split_by_depth():
    # Two triangles crossing each other: the left part of the image is nearer for one, the right for the other.
    corners = torch.tensor([[[0.0, 0.0], [64.0, 0.0], [32.0, 64.0]]]).repeat(2, 1, 1)
    depths = torch.tensor([[2.0, 4.0, 3.0], [4.0, 2.0, 3.0]])
    winner = rasterize(corners, depths, torch.zeros(2, dtype=torch.int64), 1, 64)[0]
    assert winner[10, 10] == 0 and winner[10, 53] == 1


def test_lambert_law():
    normals = torch.nn.functional.normalize(torch.randn(50, 3), dim=1)
    light = torch.nn.functional.normalize(torch.randn(50, 3), dim=1)
    expected = 0.2 + 0.7 * torch.clamp((normals * light).sum(1), min=0)
    assert torch.allclose(lambert(normals, light, 0.2, 0.7), expected)


def test_face_facing_the_light_is_brighter():
    # Seen from azimuth 45°, the cube shows its −y face on the left and its +x face on the right.
    # Light from the camera's right (+x in the camera frame): the +x face, turned 45° towards it, gets
    # cos 45°; the −y face has n·l = −cos 45° < 0 and keeps only the ambient light.
    light = torch.tensor([[1.0, 0.0, 0.0]])
    image, alpha = render([CUBE], one(45), one(0), one(0), one(3.0), size=64, light=light,
                          albedo=torch.ones(1, 3), ambient=0.1, diffuse=0.9)
    grey = image[0, 0]
    left, right = grey[32, 32 - 5].item(), grey[32, 32 + 5].item()
    assert right == pytest.approx(0.1 + 0.9 * math.cos(math.pi / 4), abs=1e-4)
    assert left == pytest.approx(0.1, abs=1e-4)


def test_superquadric_with_unit_exponents_is_the_unit_sphere():
    sphere = superquadric(1.0, 1.0, rings=10, segments=16)
    assert torch.allclose(sphere.vertices.norm(dim=1), torch.ones(len(sphere.vertices)), atol=1e-5)
    # Closed and outward-facing: the signed volume (divergence theorem) is positive and close to 4π/3.
    t = sphere.triangles
    volume = (t[:, 0] * torch.linalg.cross(t[:, 1], t[:, 2])).sum() / 6
    assert 0.85 * 4 * math.pi / 3 < volume < 4 * math.pi / 3


def test_box_faces_point_outwards():
    t = CUBE.triangles
    normals = torch.linalg.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    assert ((normals * t.mean(1)).sum(1) > 0).all()
    assert (t[:, 0] * torch.linalg.cross(t[:, 1], t[:, 2])).sum() / 6 == pytest.approx(1.0)


def _same_geometry(a: Mesh, b: Mesh):
    assert torch.allclose(a.vertices, b.vertices, atol=1e-6)
    assert torch.equal(a.faces, b.faces)


def test_off_round_trip(tmp_path):
    mesh = superquadric(0.5, 0.7, (1, 2, 0.5), rings=4, segments=6)
    write_off(mesh, tmp_path / "shape.off")
    _same_geometry(read_mesh(tmp_path / "shape.off"), mesh)


def test_off_with_polygons_and_comments_is_fan_triangulated(tmp_path):
    (tmp_path / "quad.off").write_text("OFF # a square\n4 1 0\n0 0 0\n1 0 0\n1 1 0\n0 1 0\n4 0 1 2 3\n")
    mesh = read_mesh(tmp_path / "quad.off")
    assert mesh.faces.tolist() == [[0, 1, 2], [0, 2, 3]]


def test_obj_round_trip_with_texture_normals_and_negative_indices(tmp_path):
    mesh = box((0.5, 0, 1), (1, 2, 3))
    lines = [f"v {x} {y} {z}" for x, y, z in mesh.vertices.tolist()] + ["vt 0 0", "vn 0 0 1"]
    lines += [f"f {a + 1}/1/1 {b + 1}//1 {c - len(mesh.vertices)}" for a, b, c in mesh.faces.tolist()]
    (tmp_path / "box.obj").write_text("\n".join(lines) + "\n")
    _same_geometry(read_mesh(tmp_path / "box.obj"), mesh)


def test_ply_ascii_and_binary_round_trip(tmp_path):
    mesh = superquadric(1.0, 0.5, rings=4, segments=5)
    header = ["ply", "format {}", "comment test", f"element vertex {len(mesh.vertices)}", "property float x",
              "property float y", "property float z", "property uchar red", f"element face {len(mesh.faces)}",
              "property list uchar int vertex_indices", "end_header"]
    ascii_body = [f"{x} {y} {z} 7" for x, y, z in mesh.vertices.tolist()]
    ascii_body += ["3 " + " ".join(map(str, f)) for f in mesh.faces.tolist()]
    (tmp_path / "a.ply").write_text("\n".join(header).format("ascii 1.0") + "\n" + "\n".join(ascii_body) + "\n")
    _same_geometry(read_mesh(tmp_path / "a.ply"), mesh)
    binary = b"".join(struct.pack("<fffB", *v, 7) for v in mesh.vertices.tolist())
    binary += b"".join(struct.pack("<Biii", 3, *f) for f in mesh.faces.tolist())
    text = "\n".join(header).format("binary_little_endian 1.0") + "\n"
    (tmp_path / "b.ply").write_bytes(text.encode() + binary)
    _same_geometry(read_mesh(tmp_path / "b.ply"), mesh)


@pytest.mark.parametrize("name, content, words", [
    ("bad.off", "OFF\n3 1 0\n0 0 0\n1 0 0\n0 1 0\n3 0 1 7\n", "vertex 7"),
    ("short.off", "OFF\n8 6 0\n0 0 0\n", "truncated"),
    ("word.off", "OFF\n3 1 0\n0 0 x\n1 0 0\n0 1 0\n3 0 1 2\n", "cannot decode"),
    ("noface.obj", "v 0 0 0\nv 1 0 0\n", "no faces"),
    ("cut.ply", "ply\nformat binary_little_endian 1.0\nelement vertex 9\nproperty float x\nproperty float y\n"
                "property float z\nelement face 1\nproperty list uchar int vertex_indices\nend_header\n\x00\x00",
     "truncated"),
    ("mesh.stl", "solid", "not a mesh file"),
])
def test_bad_mesh_files_raise_one_line_naming_the_file(tmp_path, name, content, words):
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError) as error:
        read_mesh(tmp_path / name)
    message = str(error.value)
    assert str(tmp_path / name) in message and words in message and "\n" not in message


def test_normalized_mesh_fits_the_unit_sphere():
    mesh = normalized(box((3, -2, 5), (4, 1, 2)))
    assert mesh.vertices.norm(dim=1).max().item() == pytest.approx(1.0)
    assert torch.allclose(mesh.vertices.amax(0), -mesh.vertices.amin(0))


def test_turning_the_object_equals_moving_the_camera_the_other_way():
    # Turning the object by α about z (counter-clockwise from above) and looking from θ gives the
    # image that the unturned object gives from θ − α.
    shape = normalized(CATEGORY_BUILDERS["chair"](random.Random(3)))
    turned = rotated(shape, "z", 90.0)
    a, _ = render([turned], one(30), one(20), one(5), one(3.0), size=48)
    b, _ = render([shape], one(300), one(20), one(5), one(3.0), size=48)
    assert (a - b).abs().gt(1e-3).float().mean() < 0.01


def test_azimuth_ninety_shows_the_back_on_the_right():
    # A long bar behind the origin (+y, the object's back): from the front (θ = 0) it is centred; from
    # θ = 90° (camera on +x) the back appears on the image's right, from θ = 270° on its left.
    bar = box((0, 0.6, 0), (0.2, 0.8, 0.2))
    centres = []
    for azimuth in (0, 90, 270):
        _, alpha = render([bar], one(azimuth), one(0), one(0), one(3.0), size=64)
        columns = torch.nonzero(alpha[0, 0] > 0, as_tuple=True)[1].float()
        centres.append(columns.mean().item() + 0.5)
    assert centres[0] == pytest.approx(32, abs=0.5)
    assert centres[1] > 40 and centres[2] < 24


def test_in_plane_rotation_turns_the_image_counter_clockwise():
    # A bar pointing up (+z) seen from the front, turned by ψ = 90°, points to the image's left.
    bar = box((0, 0, 0.5), (0.1, 0.1, 1.0))
    _, alpha = render([bar], one(0), one(0), one(90), one(3.0), size=64)
    columns = torch.nonzero(alpha[0, 0] > 0, as_tuple=True)[1].float()
    assert columns.mean().item() + 0.5 < 28


def test_procedural_categories_have_no_rotational_symmetry_about_the_vertical():
    # Every category's instance looks different from θ and θ + 180° (front and back differ).
    for name, build in CATEGORY_BUILDERS.items():
        shape = normalized(build(random.Random(0)))
        front, _ = render([shape], one(0), one(10), one(0), one(3.0), size=48)
        back, _ = render([shape], one(180), one(10), one(0), one(3.0), size=48)
        assert (front - back).abs().gt(0.05).float().mean() > 0.01, name
