"""The README, the pages under docs/ and the generated result pages render as written: parsed
by a CommonMark parser (markdown-it-py), every code fence is closed, no heading is swallowed by
a code block, and every relative link points to a file that exists."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from markdown_it import MarkdownIt  # markdown-it-py, in the test extra

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(
    [ROOT / "README.md", *(ROOT / "docs").glob("*.md"), *(ROOT / "results").glob("*.md")]
)
HEADING = re.compile(r"^ {0,3}#{1,6}(\s|$)")
FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")


def problems(text: str, page: Path) -> list[str]:
    """What does not render as written in ``text`` (the markdown of ``page``), one line each."""
    tokens = MarkdownIt("commonmark").enable("table").parse(text)  # as GitHub renders
    lines = text.splitlines()
    found = []
    headings = {t.map[0] for t in tokens if t.type == "heading_open" and t.map}
    for token in tokens:
        if token.type != "fence" or not token.map:
            continue
        start, end = token.map
        closing = lines[end - 1].strip() if end - 1 > start and end <= len(lines) else ""
        marker = token.markup[0]
        if not (closing.startswith(token.markup) and set(closing) == {marker}):
            found.append(
                f"{page.name}:{start + 1}: code fence {token.markup} never closed (runs to line "
                f"{end})"
            )
        for offset, line in enumerate(token.content.splitlines()):
            if re.match(r"^#{2,6} \S", line):
                found.append(
                    f"{page.name}:{start + 2 + offset}: heading {line!r} inside a code block"
                )
    fenced = False  # a plain reading: a line starting with ``` or ~~~ opens or closes a fence
    for number, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced and HEADING.match(line) and number not in headings:
            if not line.startswith("    ") and not _in_html_or_list_code(tokens, number):
                found.append(
                    f"{page.name}:{number + 1}: {line.strip()!r} does not render as a heading"
                )
    for target, number in _links(tokens):
        url = urlparse(target)
        if url.scheme or url.netloc or not url.path:
            continue  # external, or an anchor on this page
        path = (page.parent / unquote(url.path)).resolve()
        if not path.exists():
            found.append(f"{page.name}:{number}: link to {target}: no such file")
    return found


def _in_html_or_list_code(tokens, number: int) -> bool:
    """Whether line ``number`` is inside an HTML block or an indented code block."""
    return any(
        t.type in ("html_block", "code_block") and t.map and t.map[0] <= number < t.map[1]
        for t in tokens
    )


def _links(tokens) -> list[tuple[str, int]]:
    """Every link and image target with the line it is on (1-based)."""
    found = []
    for token in tokens:
        if token.type != "inline":
            continue
        line = token.map[0] + 1 if token.map else 0
        for child in token.children or []:
            if child.type == "link_open":
                found.append((child.attrGet("href"), line))
            elif child.type == "image":
                found.append((child.attrGet("src"), line))
    return found


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_the_page_renders_as_written(page):
    found = problems(page.read_text(), page)
    assert not found, "\n".join(found)


def test_the_readme_is_short_and_leads_with_the_findings():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 125
    first = [line for line in text.splitlines() if line.startswith("## ")][0]
    assert "found" in first.lower()
    assert "results/FINDINGS.md" in text


def test_the_check_catches_what_it_is_for(tmp_path):
    page = tmp_path / "page.md"
    unclosed = "# Title\n\n```bash\nhsmlbench data prepare\n\n## Layout\n\ntext\n"
    found = problems(unclosed, page)
    assert any("never closed" in f for f in found)
    assert any("'## Layout'" in f for f in found)
    mismatched = "# T\n\n````text\ncode\n```\n\n## Next\n\nmore\n"  # 3 do not close 4
    assert any("never closed" in f for f in problems(mismatched, page))
    (tmp_path / "there.md").write_text("x")
    links = "# T\n\n[ok](there.md), [anchor](#t), [web](https://x.org), [gone](docs/GONE.md)\n"
    assert problems(links, page) == ["page.md:3: link to docs/GONE.md: no such file"]
    assert problems("# T\n\n```\nok\n```\n\n## Fine\n", page) == []
