"""The pages under docs/ tell the truth: every Python block of a page runs, in order, offline."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").rglob("*.md"))
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
PROVIDERS = ("jwks", "qyzar", "torii", "tiun", "inai")


def python_blocks(page: Path) -> list[str]:
    return [body for lang, body in FENCE.findall(page.read_text("utf-8")) if lang == "python"]


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_python_blocks_run_in_order(page: Path) -> None:
    namespace: dict[str, Any] = {"__name__": f"docs.{page.stem}"}
    blocks = python_blocks(page)
    for index, code in enumerate(blocks):
        exec(compile(code, f"{page.name} python block {index + 1}", "exec"), namespace)


@pytest.mark.parametrize("name", PROVIDERS)
def test_each_provider_page_has_the_four_parts(name: str) -> None:
    page = ROOT / "docs" / "providers" / f"{name}.md"
    if not page.exists():
        pytest.skip(f"docs/providers/{name}.md is not written yet")
    text = page.read_text("utf-8")
    assert re.search(r"^1\. ", text, re.MULTILINE), "a numbered setup"
    assert "AUTHGATE_" in text and "| variable |" in text, "a settings table"
    assert python_blocks(page), "a Python example (executed above)"
    assert "on the wire" in text and "503" in text and "401" in text, "failures on the wire"
    readme = (ROOT / "README.md").read_text("utf-8")
    assert f"docs/providers/{name}.md" in readme, "the README links the page"
