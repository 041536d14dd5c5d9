"""3D scans (STL, PLY, OBJ) as triangles, and the small payload the desk draws.

    scan file --load_mesh--> Mesh (n, 3, 3) float32 --preview_payload--> SDM1 bytes

The files come from another practice, so every number in them is hostile
until checked: a triangle count in an STL header, an element count in a PLY
header, a face index in an OBJ file. Each is checked against the bytes that
are really there before anything is allocated for it, and a file that does
not add up raises ``MeshError`` with a sentence a clinician can act on ("this
STL file is cut short: it announces 1,000,000 triangles but holds 12"). The
whole file is read at most once (``max_bytes``, 512 MiB by default); text
formats are parsed in blocks of a few MiB, so the memory on top of the file is
the triangles themselves. Triangles with a corner that is not a finite number
(NaN, infinity, or beyond float32) are dropped and counted in
``Mesh.skipped``: a preview of the rest still tells cases apart.

Formats read:

- STL, binary (80-byte header, uint32 count, 50 bytes per triangle) and
  ASCII (``vertex x y z`` lines, three per facet).
- PLY, ``ascii``, ``binary_little_endian`` and ``binary_big_endian``: a
  ``vertex`` element with ``x``, ``y``, ``z`` of any numeric type, and a
  ``face`` element whose list property (``vertex_indices``) gives each
  polygon; any other element is skipped. Polygons are cut into triangle fans.
- OBJ: ``v`` and ``f`` lines; face corners as ``v``, ``v/vt``, ``v/vt/vn`` or
  ``v//vn``, negative indices counted back from the last vertex read, and
  polygons cut into triangle fans. Everything else is ignored.

The preview payload (``preview_payload``), little endian throughout::

    offset  size    field
    0       4       magic b"SDM1"
    4       4       uint32 n, the number of triangles
    8       36 n    float32 x, y, z of each triangle's 3 corners (9 per triangle)
    8+36n   12 n    float32 unit normal of each triangle (0, 0, 0 if degenerate)

The corners are centred on the origin and scaled so that the mesh's longest
side spans 1 (the unit cube, -0.5 to 0.5); over ``max_triangles`` the
triangles are subsampled evenly through the file. ``static/mesh.js`` draws it.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ..errors import ClientError

MiB = 1024 * 1024
MAX_BYTES = 512 * MiB
MAGIC = b"SDM1"
_MAX_ITEMS = 50_000_000  # vertices or faces one file may announce
_SLOW_ITEMS = 2_000_000  # items of mixed polygon sizes walked one by one in Python
_BLOCK = 4 * MiB  # text is parsed in blocks of about this size
_LINES = 262_144  # ASCII PLY lines converted at a time
_HEADER = 64 * 1024  # a PLY header longer than this is not a scan's

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
AnyArray = npt.NDArray[Any]


class MeshError(ClientError):
    """A scan file cannot be shown as a 3D preview; the message says why."""


@dataclass(frozen=True, slots=True, eq=False)
class Mesh:
    """Triangles, ``(n, 3, 3)`` float32: n triangles of 3 corners of x, y, z."""

    triangles: npt.NDArray[np.float32]
    skipped: int = 0  # triangles dropped: a corner was not a finite number


def load_mesh(path: Path, *, max_bytes: int = MAX_BYTES) -> Mesh:
    """The triangles of the STL, PLY or OBJ file at ``path`` (by its suffix).

    Raises ``MeshError`` for a file that cannot be read, is too large, or does
    not hold a surface.
    """
    kind = path.suffix.lower().lstrip(".")
    if kind not in ("stl", "ply", "obj"):
        raise MeshError(f"{path.name} is not a 3D scan this preview reads (STL, PLY or OBJ)")
    label = kind.upper()
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size > max_bytes:
                raise MeshError(f"this {label} file is {size / MiB:,.0f} MiB, more than the "
                                f"{max_bytes / MiB:,.0f} MiB a preview reads")
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise MeshError(f"this {label} file cannot be read: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:  # it grew while we read it
        raise MeshError(f"this {label} file is larger than the {max_bytes / MiB:,.0f} MiB "
                        "a preview reads")
    try:
        if kind == "stl":
            triangles = _stl(data)
        elif kind == "ply":
            triangles = _ply(data)
        else:
            triangles = _obj(data)
    except MeshError:
        raise
    except (ValueError, IndexError, OverflowError, struct.error, UnicodeError) as exc:
        # A number that does not parse, a type that does not fit: hostile bytes.
        raise MeshError(f"this {label} file is damaged and cannot be previewed") from exc
    return _finish(triangles, label)


def _finish(triangles: Floats, label: str) -> Mesh:
    with np.errstate(over="ignore", invalid="ignore"):
        small = triangles.astype(np.float32)
    finite = np.isfinite(small).all(axis=(1, 2))
    kept = small[finite]
    if len(kept) == 0:
        if len(small):
            raise MeshError(f"this {label} file holds no triangle whose corners are numbers")
        raise MeshError(f"this {label} file holds no triangles")
    return Mesh(np.ascontiguousarray(kept), skipped=int(len(small) - len(kept)))


def preview_payload(mesh: Mesh, *, max_triangles: int = 60_000) -> bytes:
    """The SDM1 payload of ``mesh`` (module text): centred, in the unit cube, at most
    ``max_triangles`` triangles."""
    if max_triangles < 1:
        raise ValueError("max_triangles must be at least 1")
    tris = mesh.triangles.astype(np.float64)
    n = len(tris)
    if n > max_triangles:
        # Evenly through the file, not the first ones: a scan is written region by
        # region, so a prefix would show one corner of the jaw.
        tris = tris[(np.arange(max_triangles, dtype=np.int64) * n) // max_triangles]
    if len(tris):
        low = tris.min(axis=(0, 1))
        high = tris.max(axis=(0, 1))
        extent = float((high - low).max())
        tris = (tris - (low + high) / 2) / (extent if extent > 0 else 1.0)
    normals = np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0])
    length = np.linalg.norm(normals, axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        normals = np.where(length > 1e-12, normals / length, 0.0)
    return b"".join((MAGIC, struct.pack("<I", len(tris)),
                     tris.astype("<f4").tobytes(), normals.astype("<f4").tobytes()))


# ---- STL ---------------------------------------------------------------------------

_STL_VERTEX = re.compile(rb"vertex[ \t]+(\S+)[ \t]+(\S+)[ \t]+(\S+)", re.IGNORECASE)
_STL_RECORD = np.dtype([("normal", "<f4", (3,)), ("corners", "<f4", (3, 3)), ("attr", "<u2")])


def _stl(data: bytes) -> Floats:
    if len(data) >= 84:
        count = struct.unpack_from("<I", data, 80)[0]
        if 84 + 50 * count == len(data):  # binary, even if its header says "solid"
            return _stl_binary(data, count)
    if re.match(rb"\s*solid", data) and b"vertex" in data[:4096].lower():
        return _stl_ascii(data)
    if len(data) < 84:
        raise MeshError("this STL file is cut short: it ends before its triangle count")
    holds = (len(data) - 84) // 50
    if count > holds:
        raise MeshError(f"this STL file is cut short: it announces {count:,} triangles "
                        f"but holds {holds:,}")
    return _stl_binary(data, count)  # bytes after the last triangle are ignored


def _stl_binary(data: bytes, count: int) -> Floats:
    records = np.frombuffer(data, dtype=_STL_RECORD, count=count, offset=84)
    return records["corners"].astype(np.float64)


def _stl_ascii(data: bytes) -> Floats:
    parts = []
    for block in _blocks(data, 0):
        found = _STL_VERTEX.findall(block)
        if found:
            parts.append(_numbers(found, "STL"))
    corners = np.concatenate(parts) if parts else np.zeros((0, 3))
    if len(corners) % 3:
        raise MeshError(f"this STL file is damaged: it holds {len(corners):,} corners, "
                        "not three per triangle")
    return corners.reshape(-1, 3, 3)


# ---- OBJ ---------------------------------------------------------------------------

_OBJ_LINE = re.compile(rb"^[ \t]*([vf])[ \t]+([^\r\n]*)", re.MULTILINE)


def _obj(data: bytes) -> Floats:
    vertex_parts: list[Floats] = []
    face_parts: list[Ints] = []
    vertices = 0
    for block in _blocks(data, 0):
        rows: list[list[bytes]] = []
        fans: list[int] = []
        for kind, rest in _OBJ_LINE.findall(block):
            if kind == b"v":
                rows.append(rest.split()[:3])
                vertices += 1
                continue
            corners = [_obj_index(token, vertices) for token in rest.split()]
            for i in range(1, len(corners) - 1):
                fans += (corners[0], corners[i], corners[i + 1])
        if rows:
            if any(len(row) < 3 for row in rows):
                raise MeshError("this OBJ file is damaged: a vertex has fewer than three "
                                "coordinates")
            vertex_parts.append(_numbers(rows, "OBJ"))
        if fans:
            face_parts.append(np.array(fans, dtype=np.int64).reshape(-1, 3))
        if vertices > _MAX_ITEMS or sum(len(p) for p in face_parts) > _MAX_ITEMS:
            raise MeshError(f"this OBJ file holds more than {_MAX_ITEMS:,} vertices or "
                            "faces: too many for a preview")
    points = np.concatenate(vertex_parts) if vertex_parts else np.zeros((0, 3))
    faces = np.concatenate(face_parts) if face_parts else np.zeros((0, 3), dtype=np.int64)
    return _corners(points, faces, "OBJ")


def _obj_index(token: bytes, vertices: int) -> int:
    """0-based vertex index of a face corner ``v``, ``v/vt``, ``v/vt/vn`` or ``v//vn``."""
    text = token.split(b"/", 1)[0]
    try:
        index = int(text)
    except ValueError:
        raise MeshError("this OBJ file is damaged: a face corner is not a vertex number"
                        ) from None
    if index == 0:
        raise MeshError("this OBJ file is damaged: a face refers to vertex 0 (they count "
                        "from 1)")
    # Negative: counted back from the last vertex read so far (-1 is the last).
    return index - 1 if index > 0 else vertices + index


# ---- PLY ---------------------------------------------------------------------------

_PLY_TYPES = {
    "char": "i1", "int8": "i1", "uchar": "u1", "uint8": "u1",
    "short": "i2", "int16": "i2", "ushort": "u2", "uint16": "u2",
    "int": "i4", "int32": "i4", "uint": "u4", "uint32": "u4",
    "float": "f4", "float32": "f4", "double": "f8", "float64": "f8",
}


@dataclass(frozen=True, slots=True)
class _Property:
    name: str
    type: str  # numpy code without byte order: "f4"
    count_type: str | None = None  # a list property: the type of its length


@dataclass(frozen=True, slots=True)
class _Element:
    name: str
    count: int
    properties: tuple[_Property, ...]

    @property
    def plural(self) -> str:
        return {"vertex": "vertices", "face": "faces"}.get(self.name, f"'{self.name}' items")


def _ply(data: bytes) -> Floats:
    fmt, elements, body = _ply_header(data)
    points: AnyArray | None = None
    faces: AnyArray = np.zeros((0, 3), dtype=np.int64)
    at = body
    for element in elements:
        wanted = element.name in ("vertex", "face")
        if fmt == "ascii":
            values, at = _ply_ascii_element(data, at, element, wanted)
        else:
            values, at = _ply_binary_element(data, at, element, "<" if "little" in fmt else ">",
                                             wanted)
        if element.name == "vertex":
            points = values
        elif element.name == "face" and values is not None:
            faces = values
    if points is None:
        raise MeshError("this PLY file has no vertices")
    if not any(e.name == "face" and e.count for e in elements):
        raise MeshError("this PLY file is a point cloud (no faces): it has no surface to "
                        "preview")
    return _corners(points, faces, "PLY")


def _ply_header(data: bytes) -> tuple[str, list[_Element], int]:
    if not re.match(rb"ply\r?\n", data):
        raise MeshError("this PLY file does not start with 'ply': it is not a PLY file")
    end = re.search(rb"\nend_header[ \t]*\r?\n", data[:_HEADER])
    if end is None:
        raise MeshError("this PLY file has no end to its header")
    fmt = ""
    elements: list[_Element] = []
    for raw in data[: end.start()].split(b"\n")[1:]:
        words = raw.decode("ascii").split()
        if not words or words[0] in ("comment", "obj_info"):
            continue
        if words[0] == "format" and len(words) >= 2:
            fmt = words[1]
        elif words[0] == "element" and len(words) == 3:
            count = int(words[2])
            if not 0 <= count <= _MAX_ITEMS:
                raise MeshError(f"this PLY file announces {count:,} {words[1]} items: "
                                "too many for a preview")
            elements.append(_Element(words[1], count, ()))
        elif words[0] == "property" and elements:
            last = elements[-1]
            elements[-1] = _Element(last.name, last.count, (*last.properties,
                                                            _ply_property(words)))
        else:
            raise MeshError(f"this PLY file's header has a line this preview does not "
                            f"know: {raw[:40].decode('ascii', 'replace')!r}")
    if fmt not in ("ascii", "binary_little_endian", "binary_big_endian"):
        raise MeshError(f"this PLY file is in a format this preview does not read: {fmt!r}")
    return fmt, elements, end.end()


def _ply_property(words: list[str]) -> _Property:
    if len(words) == 5 and words[1] == "list":
        count_type, item_type = _ply_type(words[2]), _ply_type(words[3])
        if count_type[0] == "f":
            raise MeshError("this PLY file gives a list length as a fraction")
        return _Property(words[4], item_type, count_type)
    if len(words) == 3:
        return _Property(words[2], _ply_type(words[1]))
    raise MeshError("this PLY file's header has a property line this preview does not know")


def _ply_type(name: str) -> str:
    try:
        return _PLY_TYPES[name]
    except KeyError:
        raise MeshError(f"this PLY file uses a number type this preview does not know: "
                        f"{name[:20]!r}") from None


def _ply_xyz(element: _Element) -> list[int]:
    names = [p.name for p in element.properties]
    if not all(axis in names for axis in "xyz"):
        raise MeshError("this PLY file's vertices have no x, y and z")
    if any(p.count_type for p in element.properties):
        raise MeshError("this PLY file's vertices hold lists, which this preview does not read")
    return [names.index(axis) for axis in "xyz"]


def _ply_list(element: _Element) -> int:
    """Index of the face's vertex list among its properties."""
    lists = [i for i, p in enumerate(element.properties) if p.count_type]
    named = [i for i in lists if element.properties[i].name in ("vertex_indices",
                                                                "vertex_index")]
    if named or len(lists) == 1:
        return (named or lists)[0]
    raise MeshError("this PLY file's faces have no list of vertices")


def _cut_short(element: _Element, holds: int) -> MeshError:
    return MeshError(f"this PLY file is cut short: it announces {element.count:,} "
                     f"{element.plural} but holds {holds:,}")


def _ply_binary_element(data: bytes, at: int, element: _Element, order: str, wanted: bool
                        ) -> tuple[AnyArray | None, int]:
    props = element.properties
    if not any(p.count_type for p in props):
        dtype = np.dtype([(f"p{i}", order + p.type) for i, p in enumerate(props)])
        holds = (len(data) - at) // dtype.itemsize if dtype.itemsize else element.count
        if element.count > holds:
            raise _cut_short(element, holds)
        end = at + dtype.itemsize * element.count
        if element.name != "vertex":
            return None, end
        xyz = _ply_xyz(element)
        rows = np.frombuffer(data, dtype=dtype, count=element.count, offset=at)
        points = np.stack([rows[f"p{i}"].astype(np.float64) for i in xyz], axis=1)
        return points, end
    if element.name == "vertex":
        _ply_xyz(element)  # raises: vertices with lists
    listed = _ply_list(element) if element.name == "face" else -1
    uniform = _ply_uniform(data, at, element, order)
    if uniform is not None:
        polygons, end = uniform
        return (_fans(polygons) if wanted and listed >= 0 else None), end
    return _ply_walk(data, at, element, order, listed)


def _ply_uniform(data: bytes, at: int, element: _Element, order: str
                 ) -> tuple[Ints, int] | None:
    """The element read at numpy speed when it has one list and every item's list has
    the same length (all triangles, say); None when that does not hold."""
    props = element.properties
    lists = [i for i, p in enumerate(props) if p.count_type]
    if len(lists) != 1 or element.count == 0:
        return None
    li = lists[0]
    head = sum(np.dtype(p.type).itemsize for p in props[:li])
    count_type = order + str(props[li].count_type)
    if at + head + np.dtype(count_type).itemsize > len(data):
        raise _cut_short(element, 0)
    k = int(np.frombuffer(data, dtype=count_type, count=1, offset=at + head)[0])
    if not 0 < k <= 1024:
        return None
    fields: list[tuple[str, str] | tuple[str, str, tuple[int]]] = [
        (f"p{i}", order + p.type) for i, p in enumerate(props[:li])]
    fields += [("count", count_type), ("items", order + props[li].type, (k,))]
    fields += [(f"q{i}", order + p.type) for i, p in enumerate(props[li + 1:])]
    dtype = np.dtype(fields)
    if at + dtype.itemsize * element.count > len(data):
        return None  # maybe mixed sizes with smaller polygons later: the walk decides
    rows = np.frombuffer(data, dtype=dtype, count=element.count, offset=at)
    if not (rows["count"] == k).all():
        return None
    return rows["items"].astype(np.int64), at + dtype.itemsize * element.count


def _ply_walk(data: bytes, at: int, element: _Element, order: str, listed: int
              ) -> tuple[Ints, int]:
    """Item by item, in Python, for lists of mixed lengths: bounded by ``_SLOW_ITEMS``."""
    if element.count > _SLOW_ITEMS:
        raise MeshError(f"this PLY file mixes polygon sizes over {element.count:,} "
                        f"{element.plural}: too many for a preview")
    fans: list[int] = []
    for done in range(element.count):
        for i, p in enumerate(element.properties):
            if p.count_type is None:
                at += np.dtype(p.type).itemsize
                continue
            count_type = np.dtype(order + p.count_type)
            if at + count_type.itemsize > len(data):
                raise _cut_short(element, done)
            n = int(np.frombuffer(data, dtype=count_type, count=1, offset=at)[0])
            at += count_type.itemsize
            item = np.dtype(order + p.type)
            if n < 0 or at + n * item.itemsize > len(data):
                raise _cut_short(element, done)
            if i == listed and n >= 3:
                fans += _fan_list(np.frombuffer(data, dtype=item, count=n, offset=at))
            at += n * item.itemsize
        if at > len(data):
            raise _cut_short(element, done)
    return np.array(fans, dtype=np.int64).reshape(-1, 3), at


def _ply_ascii_element(data: bytes, at: int, element: _Element, wanted: bool
                       ) -> tuple[AnyArray | None, int]:
    if not wanted:
        return None, _skip_lines(data, at, element.count, element)
    parts: list[AnyArray] = []
    xyz = _ply_xyz(element) if element.name == "vertex" else []
    listed = _ply_list(element) if element.name == "face" else -1
    width = len(element.properties)
    done = 0
    while done < element.count:
        lines = min(_LINES, element.count - done)
        try:
            end = _skip_lines(data, at, lines, element)
        except MeshError:
            raise _cut_short(element, done) from None
        tokens = data[at:end].split()
        if element.name == "vertex":
            if len(tokens) != lines * width:
                raise MeshError(f"this PLY file is damaged: a vertex line does not hold "
                                f"{width} numbers")
            parts.append(_numbers(tokens, "PLY").reshape(lines, width)[:, xyz])
        else:
            parts.append(_ply_ascii_faces(data[at:end], tokens, element, listed))
        done += lines
        at = end
    if element.name == "vertex":
        return (np.concatenate(parts) if parts else np.zeros((0, 3))), at
    return (np.concatenate(parts) if parts else np.zeros((0, 3), dtype=np.int64)), at


def _ply_ascii_faces(block: bytes, tokens: list[bytes], element: _Element, listed: int
                     ) -> Ints:
    lines = block.splitlines()
    if len(element.properties) == 1 and tokens:
        k = int(tokens[0])
        if k >= 3 and len(tokens) == len(lines) * (1 + k):
            table = np.array(tokens, dtype=np.bytes_).astype(np.int64).reshape(-1, 1 + k)
            if (table[:, 0] == k).all():
                return _fans(table[:, 1:])
    fans: list[int] = []
    for line in lines:
        words = line.split()
        pos = 0
        for i, p in enumerate(element.properties):
            if p.count_type is None:
                pos += 1
                continue
            n = int(words[pos])
            items = words[pos + 1: pos + 1 + n]
            if n < 0 or len(items) != n:
                raise MeshError("this PLY file is damaged: a face line is shorter than its "
                                "list of vertices")
            if i == listed and n >= 3:
                fans += _fan_list([int(w) for w in items])
            pos += 1 + n
    return np.array(fans, dtype=np.int64).reshape(-1, 3)


# ---- shared ------------------------------------------------------------------------

def _blocks(data: bytes, start: int) -> Iterator[bytes]:
    """``data`` from ``start`` in blocks of about ``_BLOCK`` bytes, cut after a newline."""
    while start < len(data):
        end = data.find(b"\n", min(start + _BLOCK, len(data)) - 1)
        end = len(data) if end < 0 else end + 1
        yield data[start:end]
        start = end


def _skip_lines(data: bytes, at: int, lines: int, element: _Element) -> int:
    """The offset just past the next ``lines`` lines from ``at``."""
    while lines > 0:
        window = data[at: at + _BLOCK]
        if not window:
            raise _cut_short(element, 0)
        ends = np.flatnonzero(np.frombuffer(window, dtype=np.uint8) == 0x0A)
        if len(ends) >= lines:
            return at + int(ends[lines - 1]) + 1
        if at + len(window) >= len(data):
            if len(ends) == lines - 1 and window[-1:] != b"\n":
                return len(data)  # the last line has no newline
            raise _cut_short(element, 0)
        lines -= len(ends)
        at += len(window)
    return at


def _numbers(rows: list[tuple[bytes, ...]] | list[list[bytes]] | list[bytes], label: str
             ) -> Floats:
    try:
        return np.array(rows, dtype=np.bytes_).astype(np.float64)
    except ValueError:
        raise MeshError(f"this {label} file holds a coordinate that is not a number") from None


def _fan_list(corners: npt.ArrayLike) -> list[int]:
    c = [int(v) for v in np.asarray(corners).tolist()]
    out: list[int] = []
    for i in range(1, len(c) - 1):
        out += (c[0], c[i], c[i + 1])
    return out


def _fans(polygons: Ints) -> Ints:
    """Triangle fans (0, i, i+1) of polygons of equal size, ``(n, k)`` -> ``(n*(k-2), 3)``."""
    k = polygons.shape[1]
    if k < 3:
        return np.zeros((0, 3), dtype=np.int64)
    fans = [np.stack([polygons[:, 0], polygons[:, i], polygons[:, i + 1]], axis=1)
            for i in range(1, k - 1)]
    # Interleaved so each polygon's triangles stay together, in file order.
    return np.stack(fans, axis=1).reshape(-1, 3).astype(np.int64)


def _corners(points: Floats, faces: Ints, label: str) -> Floats:
    if len(faces) and (faces.min() < 0 or faces.max() >= len(points)):
        bad = int(faces.max() if faces.max() >= len(points) else faces.min())
        raise MeshError(f"this {label} file is damaged: a face refers to vertex "
                        f"{bad + 1:,}, but the file holds {len(points):,} vertices")
    return points[faces]
