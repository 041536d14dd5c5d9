"""``sealdrop send --chunk-size`` (env SEALDROP_CHUNK_SIZE): read, bounded, and checked
by the library too; before anything else happens (no profile is needed to be refused)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from sealdrop.client.cli import cli
from sealdrop.client.cli.options import binary_size, byte_size
from sealdrop.client.errors import ClientError
from sealdrop.client.send.upload import MAX_CHUNK_SIZE, MIN_CHUNK_SIZE, check_chunk_size


def _send(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Result:
    (tmp_path / "f.txt").write_text("x")
    return CliRunner().invoke(
        cli, ["send", str(tmp_path / "f.txt"), "--to", "lab-dupont", "--home",
              str(tmp_path / "home"), *args], env=env)


@pytest.mark.parametrize("value", ["1KiB", "65535", "17MiB", "64MiB", "0", "lots", "-5"])
def test_out_of_bounds_or_malformed_is_a_usage_error(tmp_path: Path, value: str) -> None:
    r = _send(tmp_path, "--chunk-size", value)
    assert r.exit_code == 2 and "--chunk-size" in r.output
    assert "between 64KiB and 16MiB" in r.output or "is not a size" in r.output


def test_the_environment_variable_is_checked_too(tmp_path: Path) -> None:
    r = _send(tmp_path, env={"SEALDROP_CHUNK_SIZE": "32KiB"})
    assert r.exit_code == 2 and "between 64KiB and 16MiB" in r.output


@pytest.mark.parametrize("value", ["64KiB", "65536", "4MiB", "16MiB", "12m"])
def test_valid_sizes_get_past_the_option(tmp_path: Path, value: str) -> None:
    r = _send(tmp_path, "--chunk-size", value)
    # Refused later, for want of a profile: the size itself was accepted.
    assert isinstance(r.exception, ClientError) and "not set up" in str(r.exception)


def test_sizes_read_as_binary_units() -> None:
    convert = byte_size(MIN_CHUNK_SIZE, MAX_CHUNK_SIZE)
    assert convert(None, None, "64KiB") == 65536  # type: ignore[arg-type]
    assert convert(None, None, "12MiB") == 12 * 1024 * 1024  # type: ignore[arg-type]
    assert convert(None, None, 1 << 20) == 1 << 20  # type: ignore[arg-type]
    assert binary_size(12 * 1024 * 1024) == "12MiB" and binary_size(65536) == "64KiB"


def test_the_library_checks_the_bounds() -> None:
    assert check_chunk_size(MIN_CHUNK_SIZE) == MIN_CHUNK_SIZE
    assert check_chunk_size(MAX_CHUNK_SIZE) == MAX_CHUNK_SIZE
    for bad in (MIN_CHUNK_SIZE - 1, MAX_CHUNK_SIZE + 1, 0):
        with pytest.raises(ClientError, match="chunk size must be between"):
            check_chunk_size(bad)


def test_help_documents_the_option() -> None:
    out = CliRunner().invoke(cli, ["send", "--help"]).output
    assert "--chunk-size SIZE" in out and "SEALDROP_CHUNK_SIZE" in out and "12MiB" in out
