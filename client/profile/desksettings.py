"""The desk's settings (``layout.DESK_FILE``): where received cases go, in which
layout, whether the desk keeps receiving by itself (``watch``), and the PACS
each received study is then stored into (``pacs``: ``AET@HOST:PORT``, as
``receive --to-pacs``).

The CLI takes these as options on each run (``--into``, ``--layout``); the
desk has no command line to repeat them on, so it keeps them in the profile.
A folder is stored absolute; a layout is checked as ``receive --layout``
checks it. Nothing here reaches the relay.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ClientError
from ..receive.layout import Layout, LayoutError
from .jsonstore import read_section, write_section
from .layout import DESK_FILE

_SECTION = "desk"


@dataclass(frozen=True, slots=True)
class DeskSettings:
    receive_folder: str | None = None  # absolute; None until the user picks one
    layout: str | None = None  # a --layout pattern; None: the default case folders
    watch: bool = False
    pacs: str | None = None  # AET@HOST:PORT; None: received cases stay in the folder

    def to_json(self) -> dict[str, Any]:
        return {"receive_folder": self.receive_folder, "layout": self.layout,
                "watch": self.watch, "pacs": self.pacs}


def load_settings(home: Path) -> DeskSettings:
    obj = read_section(Path(home) / DESK_FILE, _SECTION, what="the desk settings",
                       max_bytes=64 * 1024)
    folder, layout, watch = obj.get("receive_folder"), obj.get("layout"), obj.get("watch")
    pacs = obj.get("pacs")
    ok = (folder is None or (isinstance(folder, str) and Path(folder).is_absolute())) and (
        layout is None or isinstance(layout, str)) and isinstance(watch, bool | None) and (
        pacs is None or isinstance(pacs, str))
    if not ok:
        raise ClientError(f"the desk settings {Path(home) / DESK_FILE} are damaged",
                          hint="set the receive folder again in the desk's settings")
    return DeskSettings(folder, layout, bool(watch), pacs)


def update_settings(home: Path, **changes: Any) -> DeskSettings:
    """Check and save ``changes`` (receive_folder, layout, watch); the new settings."""
    current = load_settings(home)
    if "receive_folder" in changes and changes["receive_folder"] is not None:
        folder = Path(str(changes["receive_folder"])).expanduser()
        if not folder.is_absolute():
            raise ClientError(f"the receive folder must be a full path, not {str(folder)!r}",
                              hint="e.g. /home/lab/Cases")
        if not folder.is_dir():
            raise ClientError(f"the receive folder {folder} does not exist",
                              hint="create it first, or pick another")
        changes["receive_folder"] = str(folder)
    if changes.get("layout"):
        try:
            Layout.parse(str(changes["layout"]))
        except LayoutError as exc:  # its sentence says what is wrong with the layout
            raise ClientError(str(exc), hint="e.g. {sender}/{date} {id}") from exc
    elif "layout" in changes:
        changes["layout"] = None
    if changes.get("pacs"):
        from ..receive.forward import Target

        Target.pacs(str(changes["pacs"]))  # a ClientError naming what is wrong
        changes["pacs"] = str(changes["pacs"]).strip()
    elif "pacs" in changes:
        changes["pacs"] = None
    if "watch" in changes and not isinstance(changes["watch"], bool):
        raise ClientError("watch is on or off")
    new = replace(current, **changes)
    write_section(Path(home) / DESK_FILE, _SECTION, new.to_json(), what="the desk settings")
    return new
