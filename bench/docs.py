"""What every benchmark script does with its figures: rewrite its own section of a doc."""

from __future__ import annotations

import re
from pathlib import Path


def replace_section(path: Path, heading: str, section: str, *, title: str) -> None:
    """Replace the section that starts with the `heading` line (up to the next `## `) of a
    markdown doc with `section`, or append it; other sections stay as they are. A missing
    doc starts with `# title`."""
    text = path.read_text() if path.exists() else f"# {title}\n"
    pattern = re.compile(rf"^{re.escape(heading)}\s*$.*?(?=^## |\Z)", re.M | re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip() + "\n\n", text, count=1)
    else:
        text = text.rstrip() + "\n\n" + section.rstrip() + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text.rstrip() + "\n")


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, for the machine line of a report."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"
