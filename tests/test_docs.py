"""The repository carries its own reference: every docs page and section the code cites exists."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SOURCES = sorted(
    [
        *(
            p
            for folder in ("hf_vssl", "recipes", "scripts", "spaces", "benchmarks", "tests")
            for p in (REPO / folder).rglob("*.py")
        ),
        *(REPO / "recipes" / "configs").glob("*.yaml"),
    ]
)
CITATION = re.compile(r"docs/([\w/.-]+\.md)(?:#([\w-]+))?")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown page's headings (lower case, punctuation dropped, spaces -> '-')."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", page.read_text(), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in headings}


def _citations() -> list[tuple[str, str, str | None]]:
    return [
        (str(path.relative_to(REPO)), page, anchor)
        for path in SOURCES
        for page, anchor in CITATION.findall(path.read_text())
    ]


def test_code_cites_the_docs_pages():
    cited = {page for _, page, _ in _citations()}
    assert {"study_settings.md", "design.md"} <= cited


@pytest.mark.parametrize(("source", "page", "anchor"), _citations())
def test_cited_page_and_section_exist(source, page, anchor):
    path = REPO / "docs" / page
    assert path.is_file(), f"{source} cites docs/{page}, which is not in the repository"
    if anchor:
        assert anchor in _anchors(path), f"{source} cites docs/{page}#{anchor}: no such section"


def test_no_citation_of_files_outside_the_repository():
    offenders = [
        str(p.relative_to(REPO))
        for p in SOURCES
        if p != Path(__file__).resolve() and re.search(r"\b(REFERENCE|DESIGN)\.md\b", p.read_text())
    ]
    assert not offenders
