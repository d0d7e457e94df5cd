#!/usr/bin/env python
"""Known vulnerabilities in what the project installs (pip-audit, PyPI's advisory data):
by default the packages installed in this environment (the venv `make test` built from the
pins, transitive dependencies included), or the given requirement files.

Fails (exit 1) on a vulnerability that has a fixed release: upgrading the pin is the fix.
One with no fix yet is reported and does not fail. A package the vulnerability service
could not answer for is reported as not audited; with --require-service (CI that can reach
pypi.org) not auditing everything fails too (exit 3).

    .venv/bin/python scripts/audit_deps.py [--require-service] [-r requirements.txt ...]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Verdict:
    fixable: list[str] = field(default_factory=list)  # "pkg 1.0: ID (fixed in 1.1)"
    unfixed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    audited: int = 0

    @property
    def ok(self) -> bool:
        return not self.fixable


def evaluate(report: dict[str, Any]) -> Verdict:
    """pip-audit's JSON report (`-f json`) sorted into what fails and what is only reported."""
    verdict = Verdict()
    for dep in report.get("dependencies", []):
        name, version = dep.get("name", "?"), dep.get("version", "?")
        if "skip_reason" in dep:
            verdict.skipped.append(f"{name}: {dep['skip_reason']}")
            continue
        verdict.audited += 1
        for vuln in dep.get("vulns", []):
            ident = " / ".join([vuln.get("id", "?"), *vuln.get("aliases", [])])
            fixes = vuln.get("fix_versions") or []
            if fixes:
                verdict.fixable.append(f"{name} {version}: {ident} (fixed in {', '.join(fixes)})")
            else:
                verdict.unfixed.append(f"{name} {version}: {ident} (no fixed release yet)")
    return verdict


def run_pip_audit(requirements: list[Path]) -> dict[str, Any]:
    """pip-audit over this environment, or over pinned files without installing them."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "audit.json"
        args = [sys.executable, "-m", "pip_audit", "--progress-spinner", "off", "-f", "json", "-o", str(out)]
        if requirements:
            args += ["--no-deps", "--disable-pip"]  # every pin is exact: nothing to resolve
        for path in requirements:
            args += ["-r", str(path)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=600)
        if not out.exists():
            raise RuntimeError(f"pip-audit failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
        return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-r", dest="requirements", action="append", type=Path)
    parser.add_argument("--require-service", action="store_true",
                        help="fail when a package could not be audited (the service was unreachable)")
    args = parser.parse_args(argv)
    verdict = evaluate(run_pip_audit(args.requirements or []))
    print(f"audited {verdict.audited} packages, {len(verdict.skipped)} not audited")
    for line in verdict.fixable:
        print(f"FIXABLE    {line}")
    for line in verdict.unfixed:
        print(f"NO FIX YET {line}")
    if verdict.skipped:
        print(f"not audited ({len(verdict.skipped)}), e.g. {verdict.skipped[0]}")
    if not verdict.ok:
        return 1
    if verdict.skipped and args.require_service:
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
