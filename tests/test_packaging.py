"""The built wheel installs one namespace, `sealdrop`, and both console scripts work.

Builds the wheel from a clean copy of the sources (so the checkout is not
touched), installs it with ``pip --target`` into a temporary folder, and runs
a Python that sees only that folder and the virtualenv's third-party packages:
``site`` is disabled, so the editable install's finder cannot answer for
``sealdrop`` and hide a packaging mistake.
"""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_ROOTS = ("crypto", "server", "client")


def _declared_packages() -> list[str]:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    return list(pyproject["tool"]["setuptools"]["packages"])


def test_every_source_package_is_declared() -> None:
    on_disk = {
        "sealdrop." + ".".join(init.parent.relative_to(ROOT).parts)
        for root in PACKAGE_ROOTS
        for init in (ROOT / root).rglob("__init__.py")
        if "__pycache__" not in init.parts
    }
    assert on_disk == set(_declared_packages())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md", *PACKAGE_ROOTS):
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--quiet", "--wheel-dir", str(out), str(src)],
        check=True, capture_output=True, timeout=300,
    )
    (built,) = out.glob("sealdrop-*.whl")
    return built


def test_wheel_holds_only_the_sealdrop_namespace(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"sealdrop", f"{wheel.name.split('-')[0]}-{wheel.name.split('-')[1]}.dist-info"}
    # An implicit namespace: no sealdrop/__init__.py that a second
    # distribution could clash with; each subpackage is typed (PEP 561).
    assert "sealdrop/__init__.py" not in names
    for pkg in PACKAGE_ROOTS:
        assert f"sealdrop/{pkg}/__init__.py" in names
        assert f"sealdrop/{pkg}/py.typed" in names
    # Data files the relay needs at run time travel with it.
    assert "sealdrop/server/openapi.json" in names
    assert any(n.startswith("sealdrop/server/migrations/versions/") for n in names)


def _isolated_python(target: Path, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` seeing only ``target`` and the venv's dependencies."""
    deps = sysconfig.get_paths()["purelib"]
    boot = f"import sys; sys.path[:0] = [{str(target)!r}, {deps!r}]\n"
    return subprocess.run(
        [sys.executable, "-S", "-c", boot + code, *args],
        capture_output=True, text=True, timeout=120, cwd=target,
    )


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet",
         "--target", str(target), str(wheel)],
        check=True, capture_output=True, timeout=300,
    )
    return target


@pytest.mark.parametrize("name", ["crypto", "server", "client"])
def test_no_top_level_module_is_installed(installed: Path, name: str) -> None:
    assert not (installed / name).exists()
    result = _isolated_python(installed, f"import {name}")
    assert result.returncode != 0
    assert f"No module named '{name}'" in result.stderr


def test_namespace_imports_from_the_installed_wheel(installed: Path) -> None:
    code = (
        "import sealdrop.crypto.age, sealdrop.server.app, sealdrop.client.cli\n"
        "for m in (sealdrop.crypto.age, sealdrop.server.app, sealdrop.client.cli):\n"
        "    assert m.__file__.startswith(sys.path[0]), m.__file__\n"
        "print('ok')\n"
    )
    result = _isolated_python(installed, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def _entry_points(installed: Path) -> dict[str, str]:
    (dist_info,) = installed.glob("sealdrop-*.dist-info")
    parser = configparser.ConfigParser()
    parser.read(dist_info / "entry_points.txt")
    return dict(parser["console_scripts"])


def test_console_scripts_are_the_two_programs(installed: Path) -> None:
    assert _entry_points(installed) == {
        "sealdrop": "sealdrop.client.cli:main",
        "sealdrop-relay": "sealdrop.server.cli:main",
    }


@pytest.mark.parametrize(
    ("script", "banner"),
    [("sealdrop", "end-to-end encrypted"), ("sealdrop-relay", "blind relay")],
)
def test_console_scripts_run_from_the_wheel(installed: Path, script: str, banner: str) -> None:
    module, _, func = _entry_points(installed)[script].partition(":")
    code = (
        "import importlib\n"
        f"sys.argv = [{script!r}, '--help']\n"
        f"importlib.import_module({module!r}).{func}()\n"
    )
    result = _isolated_python(installed, code)
    assert result.returncode == 0, result.stderr
    assert banner in result.stdout
