"""``AUTHGATE_REPORTING__*`` switches reporting on, sized as asked; unset, nothing is added."""

from __future__ import annotations

import pytest

from fastapi_authgate import AuthGate, ConfigurationError
from fastapi_authgate.reporting import LogSink


def test_unset_means_no_reporter() -> None:
    assert AuthGate.from_settings().reporter is None


def test_log_sink_with_every_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {
        "SINK": "log",
        "QUEUE_SIZE": "50",
        "BATCH_SIZE": "7",
        "FLUSH_SECONDS": "0.5",
        "SAMPLE_RATE": "0.25",
        "EXCLUDE_PATHS": "/healthz, /static/*",
        "SHUTDOWN_DEADLINE_SECONDS": "2",
    }.items():
        monkeypatch.setenv(f"AUTHGATE_REPORTING__{name}", value)
    gate = AuthGate.from_settings()
    reporter = gate.reporter
    assert reporter is not None and isinstance(reporter.sink, LogSink)
    assert (reporter.queue_size, reporter.batch_size, reporter.flush_seconds) == (50, 7, 0.5)
    assert (reporter.sample_rate, reporter.shutdown_deadline) == (0.25, 2.0)
    assert reporter.exclude_paths == ("/healthz", "/static/*")
    assert reporter.client_ip is gate.client_ip  # the gate's trusted-proxy rules


@pytest.mark.parametrize(
    ("name", "value"),
    [("SINK", "kafka"), ("QUEUE_SIZE", "0"), ("SAMPLE_RATE", "2"), ("FLUSH_SECONDS", "-1")],
)
def test_bad_values_name_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv("AUTHGATE_REPORTING__SINK", "log")
    monkeypatch.setenv(f"AUTHGATE_REPORTING__{name}", value)
    with pytest.raises(ConfigurationError, match=f"AUTHGATE_REPORTING__{name}"):
        AuthGate.from_settings()
