"""A safety number as a QR code (SVG), for comparing it with a phone's camera.

The code holds ``sealdrop:<handle>:<60 digits>``: the same digits the page
shows and ``sealdrop whoami`` prints, so a colleague can read either. Made by
segno (BSD-3-Clause, pure Python, no image library needed).
"""

from __future__ import annotations

import io

import segno


def safety_qr_svg(handle: str, safety_number: str) -> bytes:
    digits = "".join(ch for ch in safety_number if ch.isdigit())
    code = segno.make(f"sealdrop:{handle}:{digits}", error="m")
    out = io.BytesIO()
    # The page puts it in an <img> with its own alt text; the title inside an
    # image is not read by screen readers.
    code.save(out, kind="svg", scale=4, border=2, xmldecl=False, svgns=True,
              title=f"Safety number of {handle}")
    return out.getvalue()
