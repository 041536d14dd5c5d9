"""Previews of a received case, for the inbox: a middle slice of each DICOM
series (``thumbs``) and the STL/PLY/OBJ scans it holds (``mesh``).

Only cases this profile received (verified and placed) are previewed, from
the folder the receipt names: never the relay's data, never a path the page
chose. A mesh is named by its path relative to that folder, checked to stay
inside it (no ``..``, no symlink out).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ClientError
from ..profile.session import Session

MESH_SUFFIXES = (".stl", ".ply", ".obj")
MAX_MESHES = 50


class PreviewError(ClientError):
    """Nothing to preview: not received here, or the folder is gone."""


def received_folder(session: Session, relay_id: str) -> Path:
    entry = session.receipts.load().get(relay_id)
    folder = None if entry is None else entry.get("folder")
    if not isinstance(folder, str):
        raise PreviewError("this case was not received on this computer yet")
    path = Path(folder)
    if not path.is_dir():
        raise PreviewError(f"the case folder {path} is gone (moved or deleted)")
    return path


def _meshes(folder: Path) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for root, dirs, files in os.walk(folder):  # os.walk does not follow symlinks
        dirs.sort()
        for name in sorted(files):
            path = Path(root) / name
            if name.lower().endswith(MESH_SUFFIXES) and not path.is_symlink():
                found.append({"path": path.relative_to(folder).as_posix(),
                              "size": path.stat().st_size})
                if len(found) >= MAX_MESHES:
                    return found
    return found


def describe(folder: Path) -> dict[str, Any]:
    from .thumbs import series_thumbnails

    series = [{"series_uid": t.series_uid, "modality": t.modality,
               "description": t.description, "images": t.images, "png": t.png,
               "problem": t.problem} for t in series_thumbnails(folder)]
    return {"folder": str(folder), "series": series, "meshes": _meshes(folder)}


def mesh_payload(folder: Path, name: str) -> bytes:
    from .mesh import load_mesh, preview_payload
    from .outgoing import safe_relative

    parts = safe_relative(name)
    path = folder.joinpath(*parts)
    if (not name.lower().endswith(MESH_SUFFIXES) or path.is_symlink()
            or not path.resolve().is_relative_to(folder.resolve()) or not path.is_file()):
        raise PreviewError(f"{name[:80]!r} is not a scan of this case")
    return preview_payload(load_mesh(path))
