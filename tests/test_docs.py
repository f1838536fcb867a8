"""The documentation holds together: every relative link and anchor in README.md, CONTRIBUTING.md and
docs/*.md leads somewhere, every docs page is reachable from the README, and the README stays short."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from itertools import pairwise
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from markdown_it.token import Token

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]
_MD = MarkdownIt("commonmark").enable("table")


def _tokens(page: Path) -> list[Token]:
    return _MD.parse(page.read_text())


def _inline_text(token: Token) -> str:
    return "".join(child.content for child in token.children or () if child.type in ("text", "code_inline"))


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    tokens = _tokens(page)
    seen: dict[str, int] = {}
    out = set()
    for opening, inline in pairwise(tokens):
        if opening.type != "heading_open":
            continue
        slug = github_slug(_inline_text(inline))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def links(page: Path) -> Iterator[str]:
    for token in _tokens(page):
        for child in token.children or ():
            if child.type == "link_open":
                yield str(child.attrs["href"])


def broken_links(page: Path) -> list[str]:
    broken = []
    for href in links(page):
        if re.match(r"[a-z][a-z0-9+.-]*:", href):  # https:, mailto: ... : not ours to check offline
            continue
        path, _, anchor = href.partition("#")
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{href}: no file {os.path.relpath(target, ROOT)}")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{href}: no heading #{anchor} in {os.path.relpath(target, ROOT)}")
    return broken


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_leads_somewhere(page: Path) -> None:
    assert broken_links(page) == []


def test_the_checker_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Two words\n\n## Two words\n\n[a](#two-words) [b](#two-words-1) [c](#none) [d](gone.md) [e](page.md)"
    )
    assert [line.split(":")[0] for line in broken_links(page)] == ["#none", "gone.md"]


def test_the_slugs_are_githubs() -> None:
    assert github_slug("`POST /v1/jobs` — register") == "post-v1jobs--register"
    assert github_slug("Workload identity (AKS)") == "workload-identity-aks"
    assert github_slug("Dashboard: `/ui`") == "dashboard-ui"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    linked = {(ROOT / href.partition("#")[0]).resolve() for href in links(ROOT / "README.md")}
    assert {page for page in PAGES if page.parent.name == "docs"} - linked == set()


def test_the_readme_stays_short() -> None:
    """Reference text belongs in docs/: the README is what relay is, the two commands, a quickstart and links."""
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300
