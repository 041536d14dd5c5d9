"""3D scan previews (client/desk/mesh.py): one tetrahedron written in every format and
encoding must give the same triangles; lying headers give a sentence, never a crash."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sealdrop.client.desk.mesh import MAGIC, Mesh, MeshError, load_mesh, preview_payload
from sealdrop.client.errors import ClientError

V = [(0.0, 0.0, 0.0), (2.0, 0.0, 0.0), (0.0, 2.0, 0.0), (0.0, 0.0, 2.0)]
F = [(0, 2, 1), (0, 1, 3), (0, 3, 2), (1, 2, 3)]
EXPECTED = np.array([[V[i] for i in f] for f in F], dtype=np.float32)
PLY_HEAD = ("ply\nformat {fmt} 1.0\ncomment made by hand\nelement vertex 4\n"
            "property {t} x\nproperty {t} y\nproperty {t} z\nproperty uchar red\n"
            "element face {nf}\nproperty list uchar int vertex_indices\nend_header\n")


def _g(values: tuple[float, ...]) -> str:
    return " ".join(f"{v:g}" for v in values)


def stl_binary(faces: list[tuple[int, ...]] = F, count: int | None = None) -> bytes:
    body = b"".join(struct.pack("<12fH", 0, 0, 0, *[c for i in f for c in V[i]], 0)
                    for f in faces)
    return b"solid but binary".ljust(80, b" ") + struct.pack("<I", len(faces)
                                                            if count is None else count) + body


def stl_ascii() -> bytes:
    facets = "".join("  facet normal 0 0 0\n    outer loop\n"
                     + "".join(f"      vertex {_g(V[i])}\n" for i in f)
                     + "    endloop\n  endfacet\n" for f in F)
    return f"solid tetra\n{facets}endsolid tetra\n".encode()


def ply_ascii() -> bytes:
    return (PLY_HEAD.format(fmt="ascii", t="float", nf=4)
            + "".join(f"{_g(v)} 255\n" for v in V)
            + "".join(f"3 {_g(f)}\n" for f in F)).encode()


def ply_binary(order: str, t: str = "double") -> bytes:
    fmt = "binary_little_endian" if order == "<" else "binary_big_endian"
    code = {"double": "d", "float": "f"}[t]
    return (PLY_HEAD.format(fmt=fmt, t=t, nf=4).encode()
            + b"".join(struct.pack(order + 3 * code + "B", *v, 255) for v in V)
            + b"".join(struct.pack(order + "B3i", 3, *f) for f in F))


def obj_text() -> bytes:
    return ("# tetra\no t\n" + "".join(f"v {_g(v)}\n" for v in V) + "vt 0 0\nvn 0 0 1\n"
            "f 1 3 2\nf 1/1 2/1 4/1\nf -4//1 -1//1 -2//1\nf 2/1/1 3/1/1 4/1/1\n").encode()


FILES = {
    "binary.stl": stl_binary,
    "ascii.stl": stl_ascii,
    "ascii.ply": ply_ascii,
    "le.ply": lambda: ply_binary("<"),
    "be.ply": lambda: ply_binary(">", "float"),
    "t.obj": obj_text,
}


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize("name", sorted(FILES))
def test_every_format_gives_the_same_triangles(tmp_path: Path, name: str) -> None:
    mesh = load_mesh(_write(tmp_path, name, FILES[name]()))
    assert mesh.triangles.dtype == np.float32 and mesh.triangles.shape == (4, 3, 3)
    assert np.array_equal(mesh.triangles, EXPECTED)
    assert mesh.skipped == 0


def test_polygons_are_fanned(tmp_path: Path) -> None:
    square = [(0, 0, 0), (1, 0, 0), (1, 1, 0), (0, 1, 0)]
    obj = "".join(f"v {_g(v)}\n" for v in square) + "f 1 2 3 4\n"
    head = ("ply\nformat ascii 1.0\nelement vertex 4\nproperty float x\nproperty float y\n"
            "property float z\nelement face 2\nproperty list uchar int vertex_indices\n"
            "end_header\n")
    ply = head + "".join(f"{_g(v)}\n" for v in square) + "4 0 1 2 3\n3 0 1 2\n"
    fan = [[square[0], square[1], square[2]], [square[0], square[2], square[3]]]
    assert np.array_equal(load_mesh(_write(tmp_path, "q.obj", obj.encode())).triangles, fan)
    got = load_mesh(_write(tmp_path, "q.ply", ply.encode())).triangles
    assert np.array_equal(got, [*fan, fan[0]])  # mixed sizes: the item-by-item walk
    binary = (head.replace("ascii", "binary_little_endian").encode()
              + b"".join(struct.pack("<3f", *v) for v in square)
              + struct.pack("<B4i", 4, 0, 1, 2, 3) + struct.pack("<B3i", 3, 0, 1, 2))
    assert np.array_equal(load_mesh(_write(tmp_path, "b.ply", binary)).triangles,
                          [*fan, fan[0]])


def test_stl_with_a_lying_count(tmp_path: Path) -> None:
    path = _write(tmp_path, "lie.stl", stl_binary(F[:1], count=1_000_000))
    with pytest.raises(MeshError) as caught:
        load_mesh(path)
    assert str(caught.value) == ("this STL file is cut short: it announces 1,000,000 "
                                 "triangles but holds 1")
    assert isinstance(caught.value, ClientError)


def test_ply_with_an_absurd_vertex_count(tmp_path: Path) -> None:
    data = ply_binary("<").replace(b"element vertex 4", b"element vertex 40000000")
    # The file has room for 6 vertices: its 4, and the bytes of the faces after them.
    with pytest.raises(MeshError, match="this PLY file is cut short: it announces "
                                        "40,000,000 vertices but holds 6"):
        load_mesh(_write(tmp_path, "lie.ply", data))
    huge = ply_binary("<").replace(b"element vertex 4", b"element vertex 4000000000")
    with pytest.raises(MeshError, match="4,000,000,000 vertex items: too many"):
        load_mesh(_write(tmp_path, "huge.ply", huge))
    ascii_lie = ply_ascii().replace(b"element vertex 4", b"element vertex 9")
    with pytest.raises(MeshError, match="PLY"):
        load_mesh(_write(tmp_path, "lie2.ply", ascii_lie))


def test_ply_point_cloud_has_no_surface(tmp_path: Path) -> None:
    data = ply_ascii().replace(b"element face 4", b"element face 0")
    data = data[: data.index(b"3 0 2 1")]
    with pytest.raises(MeshError, match="point cloud"):
        load_mesh(_write(tmp_path, "cloud.ply", data))


def test_out_of_range_indices(tmp_path: Path) -> None:
    bad = obj_text().replace(b"f 1 3 2", b"f 1 3 9")
    with pytest.raises(MeshError) as caught:
        load_mesh(_write(tmp_path, "bad.obj", bad))
    assert str(caught.value) == ("this OBJ file is damaged: a face refers to vertex 9, "
                                 "but the file holds 4 vertices")
    with pytest.raises(MeshError, match="vertex 0"):
        load_mesh(_write(tmp_path, "zero.obj", obj_text().replace(b"f 1 3 2", b"f 0 3 2")))
    with pytest.raises(MeshError, match="damaged: a face refers"):
        load_mesh(_write(tmp_path, "neg.obj", obj_text().replace(b"f 1 3 2", b"f -7 3 2")))
    ply = ply_ascii().replace(b"3 1 2 3\n", b"3 1 2 300\n")
    with pytest.raises(MeshError, match="refers to vertex 301, but the file holds 4"):
        load_mesh(_write(tmp_path, "bad.ply", ply))


def test_nan_corners_are_dropped_and_counted(tmp_path: Path) -> None:
    data = stl_ascii().replace(b"vertex 2 0 0", b"vertex nan 0 0", 1)
    mesh = load_mesh(_write(tmp_path, "nan.stl", data))
    assert mesh.skipped == 1 and len(mesh.triangles) == 3
    assert np.isfinite(mesh.triangles).all()
    all_nan = obj_text().replace(b"v 0 0 0", b"v nan 0 0").replace(b"v 2 0 0", b"v 1e39 0 0")
    all_nan = all_nan.replace(b"v 0 2 0", b"v inf 0 0").replace(b"v 0 0 2", b"v -inf 0 0")
    with pytest.raises(MeshError, match="no triangle whose corners are numbers"):
        load_mesh(_write(tmp_path, "nan.obj", all_nan))


def test_words_where_numbers_belong(tmp_path: Path) -> None:
    with pytest.raises(MeshError, match="not a number"):
        load_mesh(_write(tmp_path, "w.stl", stl_ascii().replace(b"vertex 2 0 0",
                                                                b"vertex two 0 0")))
    with pytest.raises(MeshError, match="not a vertex number"):
        load_mesh(_write(tmp_path, "w.obj", obj_text().replace(b"f 1 3 2", b"f a b c")))


def test_limits_and_kinds(tmp_path: Path) -> None:
    path = _write(tmp_path, "big.stl", stl_binary())
    with pytest.raises(MeshError, match="more than the 0 MiB a preview reads"):
        load_mesh(path, max_bytes=100)
    with pytest.raises(MeshError, match="not a 3D scan this preview reads"):
        load_mesh(_write(tmp_path, "t.3mf", b"PK"))
    with pytest.raises(MeshError, match="cannot be read"):
        load_mesh(tmp_path / "missing.stl")
    with pytest.raises(MeshError, match="holds no triangles"):
        load_mesh(_write(tmp_path, "empty.stl", stl_binary([])))


def _parse(payload: bytes) -> tuple[np.ndarray, np.ndarray]:
    """The SDM1 format as docs say it, read back independently of the writer."""
    assert payload[:4] == b"SDM1"
    (n,) = struct.unpack_from("<I", payload, 4)
    assert len(payload) == 8 + 36 * n + 12 * n
    corners = np.frombuffer(payload, "<f4", 9 * n, 8).reshape(n, 3, 3)
    normals = np.frombuffer(payload, "<f4", 3 * n, 8 + 36 * n).reshape(n, 3)
    return corners, normals


def test_payload_round_trip(tmp_path: Path) -> None:
    mesh = load_mesh(_write(tmp_path, "t.stl", stl_binary()))
    corners, normals = _parse(preview_payload(mesh))
    assert MAGIC == b"SDM1"
    # Centred, longest side 1: the tetrahedron's 0..2 becomes -0.5..0.5.
    assert np.allclose(corners, EXPECTED / 2 - 0.5)
    assert np.allclose(np.linalg.norm(normals, axis=1), 1)
    assert np.allclose(normals[0], [0, 0, -1])  # (0, 2, 1) faces down: -z


def test_degenerate_triangles_get_zero_normals() -> None:
    flat = np.array([[[0, 0, 0], [1, 1, 1], [2, 2, 2]], [[0, 0, 0], [1, 0, 0], [0, 1, 0]]],
                    dtype=np.float32)
    _, normals = _parse(preview_payload(Mesh(flat)))
    assert normals[0].tolist() == [0, 0, 0]
    assert normals[1].tolist() == [0, 0, 1]


def test_payload_subsamples_evenly() -> None:
    n = 1000
    tris = np.zeros((n, 3, 3), dtype=np.float32)
    tris[:, 1, 0] = 1
    tris[:, 2, 1] = 1
    tris[:, :, 2] = np.arange(n, dtype=np.float32)[:, None]  # each triangle at its own z
    corners, _ = _parse(preview_payload(Mesh(tris), max_triangles=10))
    assert len(corners) == 10
    z = corners[:, 0, 2]
    assert np.all(np.diff(z) > 0)  # in file order
    assert z[0] == pytest.approx(-0.5) and z[-1] > 0.3  # from the start to near the end
    assert len(_parse(preview_payload(Mesh(tris), max_triangles=n))[0]) == n
    with pytest.raises(ValueError):
        preview_payload(Mesh(tris), max_triangles=0)


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(suffix=st.sampled_from([".stl", ".ply", ".obj"]),
       prefix=st.sampled_from([b"", b"solid x\n", b"ply\nformat ascii 1.0\n",
                               b"ply\nformat binary_little_endian 1.0\nelement vertex 3\n"
                               b"property float x\nproperty float y\nproperty float z\n"
                               b"element face 1\nproperty list uchar int vertex_indices\n"
                               b"end_header\n", b"v 1 2 3\nv 4 5 6\nv 7 8 9\nf "]),
       body=st.binary(max_size=400))
def test_random_bytes_give_a_mesh_or_a_mesh_error(tmp_path: Path, suffix: str, prefix: bytes,
                                                   body: bytes) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(prefix + body)
    try:
        mesh = load_mesh(path)
    except MeshError as exc:
        assert str(exc)
        return
    assert mesh.triangles.ndim == 3 and mesh.triangles.shape[1:] == (3, 3)
    assert np.isfinite(mesh.triangles).all()
    corners, _ = _parse(preview_payload(mesh))
    assert np.all(np.abs(corners) <= 0.5 + 1e-5)
