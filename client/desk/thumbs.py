"""A thumbnail of each DICOM series in a received case folder: its middle slice, as PNG.

    folder --walk--> headers --group by series, sort--> middle instance
           --decode one frame--> rescale, window --> 8-bit PNG, long side <= size

For the inbox, so a lab tells cases apart without opening another viewer.
The files come from another practice, so everything in them is hostile until
checked, and a series that cannot be shown gets ``png=None`` and a short
``problem`` instead of an exception:

- The walk never follows a symbolic link and never leaves the folder; it
  stops after ``max_files`` files (or as many folders, or ``_MAX_DEPTH``
  levels down), and then says so in one last entry whose ``series_uid`` is
  empty.
- Only headers are read to group and sort (``stop_before_pixels``, large
  values deferred); files that are not DICOM (no ``DICM`` prefix), or have
  no Series Instance UID, are skipped.
- Only one file's pixel data is decoded, and of a multi-frame file only its
  middle frame (``pydicom.pixels.pixel_array(..., index=)`` reads that frame
  alone). A frame of more than ``MAX_VALUES`` values (rows x columns x
  samples) is refused before anything is allocated, as is compressed pixel
  data that no installed decoder reads.
- The frame is thinned by striding before any arithmetic, so windowing costs
  a few hundred kilobytes whatever the image size.

The window is the file's own (Window Center / Width), else the 1st to 99th
percentile of the frame; MONOCHROME1 is inverted, RGB passes through.
"""

from __future__ import annotations

import io
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

MAX_VALUES = 64 * 1024 * 1024  # values in the one frame decoded
MAX_FRAMES = 100_000
_MAX_DEPTH = 16
_DEFER = 16 * 1024  # header values larger than this are seeked past, not read
_TEXT = 128


@dataclass(frozen=True, slots=True)
class SeriesThumb:
    """One series of the folder: its thumbnail, or why it has none."""

    series_uid: str
    modality: str
    description: str
    images: int  # instances (files) in the series
    png: bytes | None
    problem: str | None  # why there is no thumbnail


@dataclass(frozen=True, slots=True)
class _Instance:
    path: Path
    series_uid: str
    modality: str
    description: str
    number: float  # InstanceNumber, or +inf
    position: float  # along the slice normal, or 0
    is_image: bool


def series_thumbnails(folder: Path, *, max_files: int = 5000, size: int = 192
                      ) -> list[SeriesThumb]:
    """One ``SeriesThumb`` per DICOM series under ``folder`` (module text), in the order
    of their UIDs; a last entry with an empty UID if the walk stopped early."""
    series: dict[str, list[_Instance]] = {}
    walked = _walk(folder, max_files)
    stopped = False
    for path in walked:
        if path is None:
            stopped = True
            break
        instance = _instance(path)
        if instance is not None:
            series.setdefault(instance.series_uid, []).append(instance)
    out = [_thumb(uid, members, size) for uid, members in sorted(series.items())]
    if stopped:
        out.append(SeriesThumb("", "", "", 0, None,
                               f"this folder holds more than {max_files:,} files: only the "
                               f"first {max_files:,} were looked at"))
    return out


def _walk(folder: Path, max_files: int) -> Iterator[Path | None]:
    """Regular files under ``folder``, sorted, depth first; None once a bound is hit."""
    seen = 0
    stack: list[tuple[Path, int]] = [(folder, 0)]
    while stack:
        here, depth = stack.pop()
        try:
            with os.scandir(here) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            continue
        folders = []
        for entry in entries:
            if entry.is_symlink():
                continue  # never followed: it could lead out of the folder
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append(Path(entry.path))
                    continue
                if not entry.is_file(follow_symlinks=False):
                    continue  # a device, a pipe, a socket
            except OSError:
                continue
            seen += 1
            if seen > max_files:
                yield None
                return
            yield Path(entry.path)
        for sub in reversed(folders):
            seen += 1
            if seen > max_files or depth + 1 > _MAX_DEPTH:
                yield None
                return
            stack.append((sub, depth + 1))


def _open(path: Path) -> io.BufferedReader:
    # O_NOFOLLOW: a file swapped for a link after the walk is not followed either.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    return os.fdopen(fd, "rb")


def _instance(path: Path) -> _Instance | None:
    import pydicom

    try:
        with _open(path) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(f, stop_before_pixels=True, defer_size=_DEFER, force=False)
            if not _text(ds, "SeriesInstanceUID"):
                return None  # Type 1 in every image: without it, not a series member
            return _Instance(
                path=path,
                series_uid=_text(ds, "SeriesInstanceUID"),
                modality=_text(ds, "Modality"),
                description=_text(ds, "SeriesDescription"),
                number=_float(ds.get("InstanceNumber"), math.inf),
                position=_position(ds),
                is_image="Rows" in ds and "Columns" in ds,
            )
    except Exception:  # noqa: BLE001 - not DICOM, or hostile bytes: not a series member
        return None


def _text(ds: Any, keyword: str) -> str:
    try:
        return str(ds.get(keyword) or "")[:_TEXT]
    except Exception:  # noqa: BLE001 - a value pydicom cannot decode
        return ""


def _float(value: Any, default: float) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return default
    return number if math.isfinite(number) else default


def _position(ds: Any) -> float:
    """Where the slice lies along its normal (PS3.3 C.7.6.2.1.1), 0 if it does not say."""
    try:
        position = [float(v) for v in ds.get("ImagePositionPatient") or ()]
        cosines = [float(v) for v in ds.get("ImageOrientationPatient") or ()]
    except Exception:  # noqa: BLE001 - text where numbers belong
        return 0.0
    if len(position) != 3:
        return 0.0
    if len(cosines) != 6:
        return position[2]
    normal = np.cross(cosines[:3], cosines[3:])
    return _float(np.dot(normal, position), 0.0)


def _thumb(uid: str, members: list[_Instance], size: int) -> SeriesThumb:
    first = members[0]
    images = [m for m in members if m.is_image]
    png: bytes | None = None
    problem: str | None = None
    if not images:
        problem = "this series holds no image"
    else:
        images.sort(key=lambda m: (m.number, m.position, m.path.name))
        try:
            png = _render(images[len(images) // 2].path, size)
        except _NoPreview as exc:
            problem = str(exc)
    return SeriesThumb(uid, first.modality, first.description, len(members), png, problem)


class _NoPreview(Exception):
    """Why the chosen file gives no thumbnail (one short sentence)."""


def _render(path: Path, size: int) -> bytes:
    import pydicom
    from pydicom.pixels.decoders.base import get_decoder
    from pydicom.pixels.utils import pixel_array

    try:
        with _open(path) as f, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ds = pydicom.dcmread(f, stop_before_pixels=True, defer_size=_DEFER, force=False)
            rows, cols = int(ds.get("Rows") or 0), int(ds.get("Columns") or 0)
            samples = int(ds.get("SamplesPerPixel") or 1)
            frames = int(_float(ds.get("NumberOfFrames"), 1))
            if rows < 1 or cols < 1 or samples not in (1, 3):
                raise _NoPreview("its image size is not valid")
            if rows * cols * samples > MAX_VALUES or not 1 <= frames <= MAX_FRAMES:
                raise _NoPreview(f"its image is too large to preview ({cols:,} x {rows:,} "
                                 f"x {frames:,} frames)")
            syntax = ds.file_meta.get("TransferSyntaxUID")
            try:
                available = bool(syntax) and get_decoder(syntax).is_available
            except NotImplementedError:
                available = False
            if not available:
                raise _NoPreview("compressed pixel data this computer cannot decode "
                                 f"({getattr(syntax, 'name', '') or 'unknown encoding'})")
            f.seek(0)
            frame = pixel_array(f, index=frames // 2)
            return _png(_to_8bit(frame, ds, samples, size), size)
    except _NoPreview:
        raise
    except Exception as exc:  # noqa: BLE001 - pydicom and its plugins meet hostile bytes
        raise _NoPreview(f"its pixel data cannot be read ({type(exc).__name__})") from exc


def _lookup(ds: Any, keyword: str, group: str) -> Any:
    """``keyword`` from the data set, else from its shared functional groups (enhanced
    multi-frame files keep rescale and window there)."""
    if keyword in ds:
        return ds.get(keyword)
    try:
        return ds.SharedFunctionalGroupsSequence[0][group][0].get(keyword)
    except Exception:  # noqa: BLE001 - absent or malformed: no value
        return None


def _first(value: Any) -> Any:
    """The first of a multi-valued element (Window Center may hold several)."""
    if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue":
        return value[0] if len(value) else None
    return value


def _to_8bit(frame: npt.NDArray[Any], ds: Any, samples: int, size: int
             ) -> npt.NDArray[np.uint8]:
    # Thin first: every step below then costs the thumbnail's size, not the image's.
    step = max(1, max(frame.shape[:2]) // (2 * size))
    frame = frame[::step, ::step]
    if samples == 3:
        if frame.dtype == np.uint8:
            return np.ascontiguousarray(frame)
        top = float(frame.max()) or 1.0
        return (np.clip(frame.astype(np.float64) / top, 0, 1) * 255).astype(np.uint8)
    values = frame.astype(np.float64)
    slope = _float(_first(_lookup(ds, "RescaleSlope", "PixelValueTransformationSequence")), 1.0)
    intercept = _float(_first(_lookup(ds, "RescaleIntercept",
                                      "PixelValueTransformationSequence")), 0.0)
    values = values * slope + intercept
    centre = _float(_first(_lookup(ds, "WindowCenter", "FrameVOILUTSequence")), math.nan)
    width = _float(_first(_lookup(ds, "WindowWidth", "FrameVOILUTSequence")), math.nan)
    finite = values[np.isfinite(values)]
    if math.isfinite(centre) and math.isfinite(width) and width > 1:
        low, high = centre - width / 2, centre + width / 2
    elif finite.size:
        low, high = (float(v) for v in np.percentile(finite, [1, 99]))
    else:
        low, high = 0.0, 1.0
    if high <= low:
        high = low + 1.0
    out = np.clip((np.nan_to_num(values, nan=low) - low) / (high - low), 0, 1)
    if str(ds.get("PhotometricInterpretation", "")).strip() == "MONOCHROME1":
        out = 1.0 - out  # low values are white in MONOCHROME1
    return (out * 255).round().astype(np.uint8)


def _png(pixels: npt.NDArray[np.uint8], size: int) -> bytes:
    from PIL import Image

    image = Image.fromarray(pixels, mode="RGB" if pixels.ndim == 3 else "L")
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
