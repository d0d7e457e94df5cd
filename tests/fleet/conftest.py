"""A failed fleet drill shows the tail of every fleet process's log: the logs live in the
test's tmp_path, which a CI machine does not keep."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

TAIL_LINES = 40
# Lines every process writes each second; the events around a failure drown in them.
NOISE = ('"logger":"payops.metrics"',)


def log_tails(log_dir: Path, lines: int = TAIL_LINES) -> str:
    parts = []
    for log in sorted(log_dir.glob("*.log")):
        kept = [line for line in log.read_text(errors="replace").splitlines()
                if not any(noise in line for noise in NOISE)]
        parts.append(f"--- {log.name} (last {min(lines, len(kept))} of {len(kept)} lines)")
        parts.extend(line[:400] for line in kept[-lines:])
    return "\n".join(parts)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    tmp_path = getattr(item, "funcargs", {}).get("tmp_path")
    if report.when == "call" and report.failed and tmp_path is not None and (tmp_path / "fleet").is_dir():
        report.sections.append(("fleet process logs", log_tails(tmp_path / "fleet")))
