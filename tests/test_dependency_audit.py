"""The dependency audit (scripts/audit_deps.py): what fails it, and the live run over this
environment. PyPI's vulnerability data is the one thing the suite cannot reach on machines
without internet; there the live run is skipped and says so."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("audit_deps", Path(__file__).resolve().parents[1] / "scripts/audit_deps.py")
audit_deps = importlib.util.module_from_spec(_spec)  # type: ignore[arg-type]
sys.modules["audit_deps"] = audit_deps  # its dataclasses look their module up by name
_spec.loader.exec_module(audit_deps)  # type: ignore[union-attr]

REPORT = {
    "dependencies": [
        {"name": "django", "version": "5.2.0", "vulns": [
            {"id": "PYSEC-2025-1", "aliases": ["CVE-2025-0001"], "fix_versions": ["5.2.1"], "description": "..."}]},
        {"name": "celery", "version": "5.7.0", "vulns": [
            {"id": "GHSA-aaaa-bbbb-cccc", "aliases": [], "fix_versions": [], "description": "..."}]},
        {"name": "redis", "version": "8.1.0", "vulns": []},
        {"name": "private-pkg", "skip_reason": "Dependency not found on PyPI and could not be audited"},
    ],
    "fixes": [],
}


def test_a_vulnerability_with_a_fixed_release_fails_the_audit() -> None:
    verdict = audit_deps.evaluate(REPORT)
    assert not verdict.ok
    assert verdict.fixable == ["django 5.2.0: PYSEC-2025-1 / CVE-2025-0001 (fixed in 5.2.1)"]
    assert verdict.unfixed == ["celery 5.7.0: GHSA-aaaa-bbbb-cccc (no fixed release yet)"]
    assert verdict.audited == 3 and len(verdict.skipped) == 1


def test_vulnerabilities_without_a_fix_are_reported_but_do_not_fail() -> None:
    report = {"dependencies": [d for d in REPORT["dependencies"] if d["name"] != "django"]}
    verdict = audit_deps.evaluate(report)
    assert verdict.ok and verdict.unfixed


def test_exit_status_fixable_unreachable_and_clean(monkeypatch: pytest.MonkeyPatch, capsys) -> None:  # type: ignore[no-untyped-def]
    # The vulnerability service is what cannot run here: its answer is given, the rest is real.
    monkeypatch.setattr(audit_deps, "run_pip_audit", lambda requirements: REPORT)
    assert audit_deps.main([]) == 1
    assert "FIXABLE    django 5.2.0" in capsys.readouterr().out
    unreachable = {"dependencies": [{"name": "django", "skip_reason": "could not be audited"}]}
    monkeypatch.setattr(audit_deps, "run_pip_audit", lambda requirements: unreachable)
    assert audit_deps.main([]) == 0
    assert audit_deps.main(["--require-service"]) == 3
    monkeypatch.setattr(audit_deps, "run_pip_audit", lambda requirements: {"dependencies": [
        {"name": "redis", "version": "8.1.0", "vulns": []}]})
    assert audit_deps.main(["--require-service"]) == 0


def test_installed_packages_have_no_known_vulnerability_with_a_fix() -> None:
    verdict = audit_deps.evaluate(audit_deps.run_pip_audit([]))
    if verdict.audited == 0:
        pytest.skip(f"PyPI's vulnerability data is unreachable from this machine: {len(verdict.skipped)} packages "
                    "not audited (run scripts/audit_deps.py --require-service where it is reachable)")
    assert verdict.ok, verdict.fixable
