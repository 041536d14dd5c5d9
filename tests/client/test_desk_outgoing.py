"""Files dropped on the desk's send screen (client/desk/outgoing.py): the names
the browser gives are checked part by part, and stages are private."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from sealdrop.client.desk import outgoing
from sealdrop.client.desk.outgoing import StageError
from sealdrop.client.errors import ClientError
from sealdrop.client.profile.desksettings import load_settings, update_settings


@pytest.mark.parametrize("name", [
    "", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a\\b", "a\x00b", "a/",
    "/".join(["d"] * 33), "x" * 256])
def test_hostile_names_are_refused(tmp_path: Path, name: str) -> None:
    stage = outgoing.new_stage(tmp_path)
    with pytest.raises(StageError, match="cannot use"):
        outgoing.open_target(stage, name)
    assert list(stage.rglob("*")) == []


def test_a_case_folder_keeps_its_paths_in_a_private_stage(tmp_path: Path) -> None:
    stage = outgoing.new_stage(tmp_path)
    assert stat.S_IMODE(stage.stat().st_mode) == 0o700
    assert stat.S_IMODE(stage.parent.stat().st_mode) == 0o700
    target = outgoing.open_target(stage, "Case 12/cbct/IM0001")
    target.write_bytes(b"x")
    assert stat.S_IMODE(target.parent.stat().st_mode) == 0o700
    assert outgoing.tops(stage) == [stage / "Case 12"]
    with pytest.raises(StageError, match="dropped twice"):
        outgoing.open_target(stage, "Case 12/cbct/IM0001")
    assert outgoing.stage_path(tmp_path, stage.name) == stage
    outgoing.discard(stage)
    with pytest.raises(StageError, match="gone"):
        outgoing.stage_path(tmp_path, stage.name)


@pytest.mark.parametrize("stage_id", ["", "..", "../../etc", "0" * 31, "g" * 32, "0" * 33])
def test_stage_ids_from_the_page_are_checked(tmp_path: Path, stage_id: str) -> None:
    with pytest.raises(StageError):
        outgoing.stage_path(tmp_path, stage_id)


def test_sweep_keeps_what_waits_to_resume(tmp_path: Path) -> None:
    keep, drop = outgoing.new_stage(tmp_path), outgoing.new_stage(tmp_path)
    outgoing.sweep(tmp_path, {keep.name})
    assert keep.is_dir() and not drop.exists()


def test_desk_settings_are_checked_and_kept(tmp_path: Path) -> None:
    assert load_settings(tmp_path).receive_folder is None
    folder = tmp_path / "Cases"
    with pytest.raises(ClientError, match="does not exist"):
        update_settings(tmp_path, receive_folder=str(folder))
    with pytest.raises(ClientError, match="full path"):
        update_settings(tmp_path, receive_folder="Cases")
    folder.mkdir()
    with pytest.raises(ClientError):
        update_settings(tmp_path, layout="/abs/{sender}")
    saved = update_settings(tmp_path, receive_folder=str(folder), layout="{sender}", watch=True)
    assert load_settings(tmp_path) == saved and saved.watch and saved.layout == "{sender}"
    (tmp_path / "desk.json").write_text('{"v": 1, "desk": {"receive_folder": "relative"}}')
    with pytest.raises(ClientError, match="damaged"):
        load_settings(tmp_path)
