"""Links in README.md and docs/*.md: every relative link points at a file in the repository, and
every ``#anchor`` at a heading of its page (GitHub's heading slugs). External links, and links in
fenced code blocks or inline code, are not checked. README.md links to every page of docs/.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+).*?\1")
INLINE_LINK = re.compile(r"\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _prose(text: str) -> Iterator[str]:
    """The lines of a markdown text outside fenced code blocks."""
    fence = ""
    for line in text.splitlines():
        match = FENCE.match(line)
        if match and (not fence or match.group(1) == fence):
            fence = "" if fence else match.group(1)
        elif not fence:
            yield line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its text without markup, lowercased, punctuation other than
    ``-`` and ``_`` dropped, each space a ``-``."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = re.sub(r"[`*]|<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors of a page's headings; a repeated slug gets ``-1``, ``-2``, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    for line in _prose(text):
        match = HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(f"{base}-{count}" if count else base)
    return found


def links(text: str) -> Iterator[str]:
    """The targets of the inline and reference links of a page, outside code."""
    for line in _prose(text):
        line = CODE_SPAN.sub("", line)
        yield from INLINE_LINK.findall(line)
        yield from REFERENCE.findall(line)


def broken_links(page: Path, root: Path) -> list[str]:
    """Relative links of ``page`` that point outside ``root``, at nothing, or at a missing heading."""
    root, problems = root.resolve(), []
    for target in links(page.read_text(encoding="utf-8")):
        if SCHEME.match(target):
            continue  # http(s), mailto: not checked
        path, _, anchor = unquote(target).partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.is_relative_to(root):
            problems.append(f"{target}: outside the repository")
        elif not dest.exists():
            problems.append(f"{target}: no such file")
        elif anchor and (dest.suffix != ".md" or anchor not in anchors(dest.read_text(encoding="utf-8"))):
            problems.append(f"{target}: no heading #{anchor} in {dest.relative_to(root)}")
    return problems


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page, ROOT) == []


def test_readme_links_every_docs_page() -> None:
    linked = {
        (ROOT / unquote(t).partition("#")[0]).resolve() for t in links((ROOT / "README.md").read_text())
    }
    unlinked = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert PAGES[1:], "docs/ has no pages"
    assert unlinked == []


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Kubernetes (Helm)", "kubernetes-helm"),
        (
            "HTTPS, basic auth and response headers (web config)",
            "https-basic-auth-and-response-headers-web-config",
        ),
        ("`--once` and `/metrics`", "--once-and-metrics"),
        ("SignalWireVideoDataStale", "signalwirevideodatastale"),
        ("1. API requests per steady-state poll", "1-api-requests-per-steady-state-poll"),
        ("Why [msgspec](https://jcristharif.com/msgspec/)", "why-msgspec"),
        ("state_write & friends", "state_write--friends"),
    ],
)
def test_slug_follows_github(heading: str, expected: str) -> None:
    assert slug(heading) == expected


def test_broken_links_are_found(tmp_path: Path) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other\n## Same\n## Same\n")
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n"
        "[ok](docs/other.md#same-1) [ok](#title) [ok](https://example.com/none) `[code](none.md)`\n"
        "[missing file](none.md) [missing anchor](docs/other.md#same-2) [here](#nothing)\n"
        "[outside](../elsewhere.md)\n"
        "```\n[fenced](none.md)\n```\n"
        "[ref]: docs/gone.md\n"
    )
    assert broken_links(page, tmp_path) == [
        "none.md: no such file",
        "docs/other.md#same-2: no heading #same-2 in docs/other.md",
        "#nothing: no heading #nothing in page.md",
        "../elsewhere.md: outside the repository",
        "docs/gone.md: no such file",
    ]
