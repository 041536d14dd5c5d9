"""Text that should not travel in argv: a note, an invite code.

Every process's command line is world-readable (``/proc/<pid>/cmdline``,
``ps``): a note such as "Couronne 36, Mme Dupont" or a one-time invite code
given as ``--note``/``--invite`` is seen by every account on the machine while
the command runs, and often lands in shell history. So each such option has
two ways in that are not argv:

- ``--X-file PATH``, where ``-`` means standard input (a heredoc, a pipe);
- an environment variable (``/proc/<pid>/environ`` is readable by the owner
  only), for services and scripts.

``--X TEXT`` stays for compatibility. Whatever the source, the command line
wins over the environment, and two sources on one level are refused, never
silently chosen between.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

import click
from click.core import ParameterSource

from ..errors import ClientError


def _source(ctx: click.Context, name: str) -> ParameterSource | None:
    return ctx.get_parameter_source(name)


def _from_command_line(ctx: click.Context, name: str) -> bool:
    return _source(ctx, name) is ParameterSource.COMMANDLINE


def pick(
    ctx: click.Context, text_param: str, file_param: str,
    text: str | None, path: Path | None,
) -> tuple[str | None, Path | None]:
    """The one source to use of ``--X`` and ``--X-file``: the command line wins
    over the environment; both on one level is a usage error."""
    if text is None or path is None:
        return text, path
    text_cli = _from_command_line(ctx, text_param)
    file_cli = _from_command_line(ctx, file_param)
    if text_cli != file_cli:
        return (text, None) if text_cli else (None, path)
    flag = f"--{text_param.replace('_', '-')}"
    raise click.UsageError(f"give {flag} or {flag}-file, not both")


def _read_limited(f: BinaryIO, limit: int, what: str, where: str) -> bytes:
    data = f.read(limit + 1)
    if len(data) > limit:
        raise ClientError(f"the {what} in {where} is too long (at most {limit} bytes)")
    return data


def read_text_file(path: Path, *, what: str, max_bytes: int,
                   stdin: BinaryIO | None = None) -> str:
    """The UTF-8 text in ``path`` (``-``: standard input), without its final line break."""
    where = "standard input" if str(path) == "-" else str(path)
    try:
        if str(path) == "-":
            data = _read_limited(stdin or sys.stdin.buffer, max_bytes, what, where)
        else:
            with open(path, "rb") as f:
                data = _read_limited(f, max_bytes, what, where)
        text = data.decode("utf-8")
    except OSError as exc:
        raise ClientError(f"cannot read the {what} from {where}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ClientError(f"the {what} in {where} is not UTF-8 text") from exc
    # An editor or `echo` ends the file with a line break; it is not part of the text.
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text
