"""The README tells the truth: its Python blocks run, its commands exist, its numbers hold."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from fastapi_authgate.ratelimit.headers import rate_limit_headers, retry_after_seconds
from fastapi_authgate.ratelimit.rules import gcra_step
from fastapi_authgate.settings import AuthGateSettings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(README) if lang == language]


def test_python_blocks_run_in_order() -> None:
    python_blocks = blocks("python")
    assert len(python_blocks) >= 3
    namespace: dict[str, Any] = {"__name__": "readme"}
    for index, code in enumerate(python_blocks):
        exec(compile(code, f"README.md python block {index + 1}", "exec"), namespace)
    # The quickstart's objects are real and its asserts ran.
    assert namespace["client"].get("/me", headers=namespace["alice"]).status_code == 200


def test_quickstart_is_short() -> None:
    assert len(blocks("python")[0].strip().splitlines()) <= 30


def test_the_two_commands_come_first_and_exist() -> None:
    first = blocks("bash")[0]
    commands = [line.split()[0] for line in first.splitlines() if line.strip()]
    assert commands == ["scripts/run", "scripts/test"]
    for name in commands:
        path = ROOT / name
        assert path.is_file(), name
        assert os.access(path, os.X_OK), f"{name} is not executable"
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert os.access(ROOT / ".ci" / "run", os.X_OK)
    assert "set -euo pipefail" in ci
    assert [line for line in ci.splitlines() if line.startswith("scripts/")] == ["scripts/test"]


def test_settings_table_names_real_variables() -> None:
    named = set(re.findall(r"`AUTHGATE_([A-Z_]+?)(?:__[A-Z_]+)?`", README))
    fields = {name.upper() for name in AuthGateSettings.model_fields}
    assert named <= fields, named - fields
    # Every top-level setting a user is likely to need is documented.
    for field in (
        "PROVIDER",
        "JWKS_URL",
        "ISSUER",
        "AUDIENCE",
        "ALGORITHMS",
        "LEEWAY_SECONDS",
        "REALM",
        "REDIS_URL",
        "TRUSTED_PROXIES",
        "RATE_LIMIT_FAILURE_MODE",
    ):
        assert field in named, field
    for planned in ("qyzar", "torii", "tiun", "inai"):
        assert f"`{planned}`" in README


def timeline(rule_limit: int, period: float, times: list[int]) -> list[tuple[int, int | None]]:
    """Replay one client against a fresh GCRA bucket: (t, None) allowed, (t, n) Retry-After n."""
    tat = 0.0
    answers: list[tuple[int, int | None]] = []
    for t in times:
        now = 1_800_000_000.0 + t
        decision, new_tat = gcra_step(tat, now, rule_limit, period, 1)
        if new_tat is not None:
            tat = new_tat
        answers.append((t, None if decision.allowed else retry_after_seconds([decision])))
    return answers


def test_rate_limit_timeline_is_computed_not_guessed() -> None:
    answers = dict(timeline(5, 60, [0, 1, 2, 3, 4, 5, 12, 13, 24, 36, 48]))
    assert answers == {
        0: None,
        1: None,
        2: None,
        3: None,
        4: None,
        5: 7,
        12: None,
        13: 11,
        24: None,
        36: None,
        48: None,
    }
    assert "| 0, 1, 2, 3, 4 | 200 |" in README
    assert "| 5 | 429, `Retry-After: 7` |" in README
    assert "| 12 | 200 |" in README
    assert "| 13 | 429, `Retry-After: 11` |" in README
    assert "| 24, 36, 48 | 200 |" in README
    assert "emission interval is 12 s" in README


def test_rate_limit_header_example_is_computed() -> None:
    tat = 0.0
    lines: dict[int, str] = {}
    for t in range(6):
        decision, new_tat = gcra_step(tat, 1_800_000_000.0 + t, 5, 60, 1)
        tat = new_tat if new_tat is not None else tat
        headers = rate_limit_headers([decision])
        line = (
            f"RateLimit-Policy: {headers['RateLimit-Policy']}   RateLimit: {headers['RateLimit']}"
        )
        if "Retry-After" in headers:
            line += f"   Retry-After: {headers['Retry-After']}"
        lines[t] = line
    assert f"t = 0   200  {lines[0]}\n" in README
    assert f"t = 5   429  {lines[5]}\n" in README


@pytest.mark.parametrize("status", ["401", "403", "429", "503"])
def test_error_table_covers_every_status(status: str) -> None:
    assert f"| {status} |" in README
