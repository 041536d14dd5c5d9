"""The relay's layers, checked on its source with ``ast`` (a lazy import counts).

- Storage and domain modules never speak HTTP: only the HTTP edge imports
  aiohttp, and only handlers, middleware, routes and app touch ``web.HTTP*``.
- Error codes are ``ErrorCode`` (or the HTTP layer's ``HttpCode``) members,
  never string literals.
- Operator commands (``ops``) go through the metadata and blob store
  interfaces: no SQL, no tables, no particular blob store.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

SERVER = Path(__file__).resolve().parents[2] / "server"

# The HTTP edge: these may import aiohttp.
HTTP_EDGE = {"app", "routes", "handlers", "loghandlers", "middleware", "http_parse", "auth",
             "state", "cli"}
# The S3 blob store speaks HTTP to the object store, never to a client: it may
# use aiohttp's client (aiobotocore's own transport), not aiohttp.web.
OBJECT_STORE_CLIENTS = {"s3blobs", "s3faults"}
# Likewise the witness client: aiohttp's client towards C2SP tlog-witnesses.
WITNESS_CLIENT = {"witnessing"}
# ...and only these may name aiohttp's HTTP exceptions (web.HTTPNotFound, ...).
HTTP_EXCEPTIONS_ALLOWED = {"app", "routes", "handlers", "middleware"}


def _modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(SERVER.rglob("*.py")):
        name = ".".join(path.relative_to(SERVER).with_suffix("").parts)
        yield name, ast.parse(path.read_text("utf-8"), str(path))


MODULES = dict(_modules())


def _imports(tree: ast.Module) -> Iterator[tuple[str, list[str]]]:
    """(module, imported names) for every import, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
        elif isinstance(node, ast.ImportFrom):
            yield ("." * node.level) + (node.module or ""), [a.name for a in node.names]


def _names_http_exception(tree: ast.Module) -> list[str]:
    """Every ``X.HTTPSomething`` attribute and every imported ``HTTPSomething``."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("HTTP"):
            found.append(ast.unparse(node))
    for module, names in _imports(tree):
        if module.startswith("aiohttp"):
            found += [n for n in names if n.startswith("HTTP")]
    return found


def test_the_server_modules_were_found() -> None:
    assert {"handlers", "middleware", "metadata", "blobs", "transfers", "ops"} <= set(MODULES)


@pytest.mark.parametrize(
    "name", sorted(set(MODULES) - HTTP_EDGE - OBJECT_STORE_CLIENTS - WITNESS_CLIENT))
def test_storage_and_domain_do_not_import_aiohttp(name: str) -> None:
    bad = [m for m, _ in _imports(MODULES[name]) if m == "aiohttp" or m.startswith("aiohttp.")]
    assert bad == [], f"server/{name}.py imports {bad}: it must not speak HTTP"


@pytest.mark.parametrize("name", sorted(OBJECT_STORE_CLIENTS))
def test_object_store_clients_do_not_serve_http(name: str) -> None:
    bad = [m for m, names in _imports(MODULES[name])
           if m.startswith("aiohttp.web") or (m == "aiohttp" and "web" in names)]
    assert bad == [], f"server/{name}.py imports {bad}: only the HTTP edge serves HTTP"


@pytest.mark.parametrize("name", sorted(set(MODULES) - HTTP_EXCEPTIONS_ALLOWED))
def test_only_the_http_edge_names_http_exceptions(name: str) -> None:
    assert _names_http_exception(MODULES[name]) == []


@pytest.mark.parametrize("name", sorted(set(MODULES) - HTTP_EXCEPTIONS_ALLOWED))
def test_only_the_http_edge_raises_http_exceptions(name: str) -> None:
    raised = [
        ast.unparse(node.exc)
        for node in ast.walk(MODULES[name])
        if isinstance(node, ast.Raise) and node.exc is not None and "HTTP" in ast.unparse(node.exc)
    ]
    assert raised == []


def _string_codes(tree: ast.Module) -> list[str]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "code":
            if isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
                out.append(node.value.value)
        elif isinstance(node, ast.ClassDef):
            for stmt in node.body:
                targets = (
                    stmt.targets if isinstance(stmt, ast.Assign)
                    else [stmt.target] if isinstance(stmt, ast.AnnAssign) else []
                )
                value = getattr(stmt, "value", None)
                if any(isinstance(t, ast.Name) and t.id == "code" for t in targets) and \
                        isinstance(value, ast.Constant) and isinstance(value.value, str):
                    out.append(value.value)
        elif isinstance(node, ast.Call) and ast.unparse(node.func).endswith("error_response"):
            code = node.args[1] if len(node.args) > 1 else None
            if isinstance(code, ast.Constant) and isinstance(code.value, str):
                out.append(code.value)
        elif isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values, strict=True):
                if isinstance(k, ast.Constant) and k.value == "code" and \
                        isinstance(v, ast.Constant) and isinstance(v.value, str):
                    out.append(v.value)
    return out


@pytest.mark.parametrize("name", sorted(MODULES))
def test_error_codes_are_enum_members(name: str) -> None:
    assert _string_codes(MODULES[name]) == []


def test_ops_goes_through_the_store_interfaces() -> None:
    tree = MODULES["ops"]
    imported = {m for m, _ in _imports(tree)}
    assert not imported & {"sqlite3", "sqlalchemy", ".db"}, imported
    assert not any(m.startswith("sqlalchemy") for m in imported)
    names = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    names |= {n for _, ns in _imports(tree) for n in ns}
    assert "LocalBlobStore" not in names
    assert not any(
        isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "isinstance"
        for n in ast.walk(tree)
    )
    # no table names or SQL text either
    texts = [n.value for n in ast.walk(tree)
             if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    for word in ("transfers", "transfer_chunks", "transfer_recipients", "SELECT", "DELETE"):
        assert not any(word in t.split() for t in texts), word
    attrs = {ast.unparse(n) for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    assert not any(a.startswith(("db.", "store.engine")) for a in attrs), attrs
