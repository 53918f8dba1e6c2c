"""The import contract: layers import downward only; each risky library has one home."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "fastapi_authgate"

LAYERS: dict[str, int] = {
    "errors": 0,
    "context": 0,
    "events": 0,
    "protocols": 1,
    "settings": 1,
    "_redact": 1,
    "_keycheck": 1,
    "_jose": 2,
    "_jws": 2,
    "_claims": 2,
    "_http": 2,
    "_response_hooks": 2,
    "credentials": 2,
    "client_ip": 2,
    "responses": 2,
    "origins": 2,
    "verifiers": 3,
    "ratelimit": 3,
    "reporting": 3,
    "providers": 4,
    "gate": 5,
    "dependencies": 6,
    "_rate_dependency": 6,
    "middleware": 6,
    "qyzar_dependencies": 6,
    "testing": 7,
    "__init__": 7,
}

# Which of our modules may import a given third-party library (by top-level name).
LIBRARY_HOMES: dict[str, set[str]] = {
    "jose": {"_jose"},
    "fastapi": {"dependencies", "testing", "qyzar_dependencies"},
    "redis": {"ratelimit.redis_store"},
}


def _modules() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py"))


def _dotted(path: Path) -> str:
    rel = path.relative_to(PACKAGE).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]
    return ".".join(parts)


def _layer(dotted: str) -> int:
    top = dotted.split(".")[0]
    assert top in LAYERS, f"module {dotted} has no layer in tests/test_layers.py"
    return LAYERS[top]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


@pytest.mark.parametrize("path", _modules(), ids=_dotted)
def test_imports_flow_downward(path: Path) -> None:
    me = _dotted(path)
    my_layer = _layer(me)
    my_top = me.split(".")[0]
    for name in _imports(path):
        if not name.startswith("fastapi_authgate"):
            continue
        target = name.removeprefix("fastapi_authgate").lstrip(".")
        if not target:
            assert my_top == "__init__" or me == "__init__", f"{me} imports the package root"
            continue
        target_top = target.split(".")[0]
        if target_top == my_top:
            continue  # inside one subpackage (verifiers.jwks -> verifiers.chain is a sibling)
        assert _layer(target) < my_layer or (
            me == "dependencies" and target == "_rate_dependency"
        ), f"{me} (layer {my_layer}) imports {target} (layer {_layer(target)})"


@pytest.mark.parametrize("path", _modules(), ids=_dotted)
def test_libraries_are_wrapped_in_one_module(path: Path) -> None:
    me = _dotted(path)
    for name in _imports(path):
        library = name.split(".")[0]
        homes = LIBRARY_HOMES.get(library)
        if homes is not None:
            # the test kit is a package (one fake server per provider): all of it may use fastapi
            home = "testing" if me.startswith("testing.") else me
            assert home in homes, f"{me} imports {library}; only {sorted(homes)} may"


@pytest.mark.parametrize("path", _modules(), ids=_dotted)
def test_only_http_module_builds_clients(path: Path) -> None:
    if _dotted(path) == "_http":
        return
    assert "AsyncClient(" not in path.read_text(), f"{_dotted(path)} constructs an httpx client"


def test_the_contract_catches_a_violation(tmp_path: Path) -> None:
    """The checker itself fails on an upward import, so a green run means something."""
    bad = tmp_path / "bad.py"
    bad.write_text("from fastapi_authgate.gate import AuthGate\nimport jose\n")
    assert "fastapi_authgate.gate" in _imports(bad)
    assert "jose" in _imports(bad)
    assert _layer("gate") > _layer("errors")
