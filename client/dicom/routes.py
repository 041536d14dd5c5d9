"""Which sealdrop recipients a study goes to, chosen by the AE title the scanner called.

A scanner's software names the node it sends to by its *called* AE title. The
listener answers to its own title (``--aet``, routed to ``--to``) and to every
title in an optional TOML routes file::

    [routes.LAB_DUPONT]
    to = ["labo-dupont"]

    [routes.RADIO_B]
    to = ["radiologue-b", "labo-dupont"]

    [default]              # optional: any other called AE title
    to = ["labo-dupont"]

An association calling a title that is neither the listener's nor in the file
is rejected (A-ASSOCIATE-RJ, "called AE title not recognised") unless the file
has a ``[default]`` table: a typo in the scanner's configuration must fail at
its first echo, not send a study to a lab nobody chose. Pure: text in, table out.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from sealdrop.crypto.bundle import HANDLE_RE

from ..errors import ClientError

# PS3.5 AE: 1 to 16 characters of the default repertoire, no backslash or
# control characters; leading and trailing spaces are not significant. We also
# refuse characters that would make a confusing log line or file name.
_AET = re.compile(r"[A-Za-z0-9 ._\-]{1,16}")
MAX_RECIPIENTS = 16
_MAX_ROUTES_FILE = 64 * 1024


class RoutesError(ClientError):
    """The routes file or an AE title or handle given on the command line is invalid."""


@dataclass(frozen=True, slots=True)
class Route:
    """Studies sent to ``aet`` go to ``to`` (sealdrop handles)."""

    aet: str  # the called AE title; "*" for the default route
    to: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RouteTable:
    routes: Mapping[str, Route]  # by called AE title
    default: Route | None

    def for_called(self, called_aet: str) -> Route | None:
        """The route for an association calling ``called_aet``; None: reject it."""
        return self.routes.get(called_aet.strip(), self.default)

    def handles(self) -> tuple[str, ...]:
        """Every recipient of every route, once each, in order."""
        seen: dict[str, None] = {}
        for route in (*self.routes.values(), *([self.default] if self.default else [])):
            seen.update(dict.fromkeys(route.to))
        return tuple(seen)


def check_aet(aet: str, *, what: str = "AE title") -> str:
    """An AE title, stripped; refused with a message naming it if invalid."""
    stripped = aet.strip() if isinstance(aet, str) else ""
    if not stripped or not _AET.fullmatch(aet):
        raise RoutesError(
            f"{what} {aet!r} is not valid: use 1 to 16 letters, digits, spaces, '.', '_' or '-'")
    return stripped


def check_recipients(to: Sequence[object], *, where: str) -> tuple[str, ...]:
    if not to:
        raise RoutesError(f"{where} names no recipient")
    if len(to) > MAX_RECIPIENTS:
        raise RoutesError(f"{where} names {len(to)} recipients; at most {MAX_RECIPIENTS}")
    out: list[str] = []
    for handle in to:
        if not isinstance(handle, str) or not HANDLE_RE.fullmatch(handle):
            raise RoutesError(f"{where}: {handle!r} is not a sealdrop handle")
        if handle in out:
            raise RoutesError(f"{where} names {handle!r} twice")
        out.append(handle)
    return tuple(out)


def parse_routes(text: str, *, source: str = "the routes file") -> RouteTable:
    """The table a routes file describes (see the module docstring)."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise RoutesError(f"{source} is not valid TOML: {exc}") from exc
    unknown = set(doc) - {"routes", "default"}
    if unknown:
        raise RoutesError(f"{source}: unknown table {sorted(unknown)[0]!r} "
                          "(expected [routes.AET] and [default])")
    routes: dict[str, Route] = {}
    table = doc.get("routes", {})
    if not isinstance(table, dict):
        raise RoutesError(f"{source}: 'routes' must be tables like [routes.LAB_DUPONT]")
    for aet, body in table.items():
        where = f"{source}, [routes.{aet}]"
        name = check_aet(aet, what=f"{source}: the called AE title")
        routes[name] = Route(name, _targets(body, where))
    default = None
    if "default" in doc:
        default = Route("*", _targets(doc["default"], f"{source}, [default]"))
    return RouteTable(routes, default)


def _targets(body: object, where: str) -> tuple[str, ...]:
    if not isinstance(body, dict) or set(body) != {"to"}:
        raise RoutesError(f"{where} must hold exactly one key, to = [\"handle\", ...]")
    to = body["to"]
    if not isinstance(to, list):
        raise RoutesError(f"{where}: to must be a list of handles")
    return check_recipients(to, where=where)


def build_table(aet: str, to: Sequence[str], file_table: RouteTable | None) -> RouteTable:
    """The listener's own title routed to ``to`` (if any), plus the file's routes."""
    own = check_aet(aet, what="--aet")
    routes: dict[str, Route] = dict(file_table.routes) if file_table else {}
    if to:
        if own in routes:
            raise RoutesError(f"the routes file also routes the listener's own AE title {own!r}",
                              hint="give its recipients either with --to or in the file")
        routes[own] = Route(own, check_recipients(list(to), where="--to"))
    default = file_table.default if file_table else None
    if not routes and default is None:
        raise RoutesError("no route: give --to HANDLE or a --routes file")
    return RouteTable(routes, default)


def load_routes(path: Path) -> RouteTable:
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_ROUTES_FILE + 1)
    except OSError as exc:
        raise RoutesError(f"cannot read the routes file {path}: {exc.strerror}") from exc
    if len(raw) > _MAX_ROUTES_FILE:
        raise RoutesError(f"the routes file {path} is larger than {_MAX_ROUTES_FILE} bytes")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RoutesError(f"the routes file {path} is not UTF-8 text") from exc
    return parse_routes(text, source=f"the routes file {path}")
