"""docs/runbook.md as HTML inside the console, with the same heading anchors GitHub makes.

A small Markdown subset, enough for the runbook (headings, paragraphs, lists, code, bold,
links): the text is escaped first, so nothing in the file can inject markup or script."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

RUNBOOK_PATH = Path(settings.BASE_DIR) / "docs" / "runbook.md"
_INLINE_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(((?:https?://|#|/)[^)\s]*)\)")


@dataclass(frozen=True)
class Runbook:
    html: SafeString
    anchors: frozenset[str]
    titles: dict[str, str]


def slug(text: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped (not - or _), spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchor_for(*, component: str, condition: str, anchors: frozenset[str]) -> str | None:
    """The most specific runbook section for an alert: `component: condition`, else the condition."""
    for candidate in (slug(f"{component}: {condition}"), slug(condition), slug(component)):
        if candidate in anchors:
            return candidate
    return None


def load_runbook() -> Runbook:
    stat = RUNBOOK_PATH.stat()
    return _render_cached(stat.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _render_cached(mtime_ns: int) -> Runbook:
    return render(RUNBOOK_PATH.read_text(encoding="utf-8"))


def render(text: str) -> Runbook:
    out: list[str] = []
    anchors: set[str] = set()
    titles: dict[str, str] = {}
    paragraph: list[str] = []
    list_tag: str | None = None
    in_code = False

    def flush_paragraph() -> None:
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()

    def close_list() -> None:
        nonlocal list_tag
        if list_tag:
            out.append(f"</{list_tag}>")
            list_tag = None

    for line in text.splitlines():
        if line.startswith("```"):
            flush_paragraph()
            close_list()
            out.append("</code></pre>" if in_code else "<pre><code>")
            in_code = not in_code
            continue
        if in_code:
            out.append(escape(line) + "\n")
            continue
        stripped = line.strip()
        heading = re.match(r"^(#{1,4})\s+(.*)$", stripped)
        bullet = re.match(r"^[-*]\s+(.*)$", stripped)
        numbered = re.match(r"^\d+\.\s+(.*)$", stripped)
        if heading:
            flush_paragraph()
            close_list()
            level, title = len(heading.group(1)), heading.group(2).strip()
            anchor = slug(title)
            anchors.add(anchor)
            titles[anchor] = title
            out.append(f'<h{level} id="{escape(anchor)}">{_inline(title)} '
                       f'<a class="runbook-anchor" href="#{escape(anchor)}" aria-label="Link to this section">#</a>'
                       f"</h{level}>")
        elif bullet or numbered:
            flush_paragraph()
            tag = "ul" if bullet else "ol"
            if list_tag != tag:
                close_list()
                out.append(f"<{tag}>")
                list_tag = tag
            out.append(f"<li>{_inline((bullet or numbered).group(1))}</li>")  # type: ignore[union-attr]  # one of them matched
        elif not stripped:
            flush_paragraph()
            close_list()
        elif list_tag and line.startswith("  "):
            # A continuation line of the last list item.
            out[-1] = out[-1][: -len("</li>")] + " " + _inline(stripped) + "</li>"
        else:
            close_list()
            paragraph.append(stripped)
    flush_paragraph()
    close_list()
    if in_code:
        out.append("</code></pre>")
    return Runbook(html=mark_safe("\n".join(out)), anchors=frozenset(anchors), titles=titles)


def _inline(text: str) -> str:
    codes: list[str] = []

    def keep_code(match: re.Match[str]) -> str:
        codes.append(f"<code>{escape(match.group(1))}</code>")
        return f"\x00{len(codes) - 1}\x00"

    text = _INLINE_CODE.sub(keep_code, text)
    text = str(escape(text))
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _LINK.sub(lambda m: f'<a href="{m.group(2)}">{m.group(1)}</a>', text)
    return re.sub(r"\x00(\d+)\x00", lambda m: codes[int(m.group(1))], text)
