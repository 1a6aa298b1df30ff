"""The user documentation holds together: size, links, anchors and the code's citations.

README.md is a front door of at most 15 KB; every relative link of README.md, CHANGELOG.md
and docs/*.md resolves to a file (and to an anchor, where it names one); every
``docs/<page>.md#<anchor>`` cited in provisioner/, lua/ and tests/ exists; the code cites
the docs, not the design notes the docs replaced.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
PAGES = [README, ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").glob("*.md"))]
CODE_DIRS = ("provisioner", "lua", "tests")
CODE_SUFFIXES = {".py", ".lua"}
THIS = Path(__file__).resolve()

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.M | re.S)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_EXPLICIT_ID = re.compile(r"""<a\s+(?:name|id)=["']([^"']+)["']""")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.M)
_CITATION = re.compile(r"docs/([\w.-]+\.md)(?:#([\w-]+))?")


def _prose(text: str) -> str:
    """The markdown without its fenced code blocks (links there are not links)."""
    return _FENCE.sub("", text)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'.

    Args:
        heading: the heading's text, without the leading '#'s.

    Returns:
        The slug, e.g. ``"3.1 Once-only effects"`` -> ``"31-once-only-effects"``.
    """
    text = re.sub(r"`|\*\*|\*|_(?=\w)|(?<=\w)_", "", heading).strip().lower()
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a markdown page: explicit ``<a id>`` ones and heading slugs.

    Args:
        page: path of the markdown file.

    Returns:
        The set of fragment names a link may use (without '#').
    """
    text = _prose(page.read_text(encoding="utf-8"))
    found = set(_EXPLICIT_ID.findall(text))
    seen: dict[str, int] = {}
    for heading in _HEADING.findall(text):
        slug = github_slug(heading)
        n = seen.get(slug, 0)
        found.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    return found


def relative_links(page: Path) -> list[str]:
    """The relative link targets of a markdown page (no URLs, no mail)."""
    targets = _LINK.findall(_prose(page.read_text(encoding="utf-8")))
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]


def code_files() -> list[Path]:
    """Python and Lua files of provisioner/, lua/ and tests/ (this file excepted)."""
    files = [
        p
        for d in CODE_DIRS
        for p in sorted((ROOT / d).rglob("*"))
        if p.suffix in CODE_SUFFIXES and p.is_file() and p.resolve() != THIS
    ]
    assert files, "no code found: the test would check nothing"
    return files


def test_readme_is_a_front_door_of_at_most_15_kb() -> None:
    size = len(README.read_bytes())
    assert size <= 15_000, f"README.md is {size} bytes; depth belongs in docs/"


def test_readme_gives_the_two_set_up_commands() -> None:
    text = README.read_text(encoding="utf-8")
    assert "make demo" in text
    assert "make test" in text


def test_readme_links_every_docs_page() -> None:
    linked = {Path(t.split("#")[0]).name for t in relative_links(README)}
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} | {"CHANGELOG.md"}
    assert pages <= linked, f"README.md links none of {sorted(pages - linked)}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path_part, _, fragment = target.partition("#")
        dest = (page.parent / path_part).resolve() if path_part else page
        if not dest.exists():
            broken.append(f"{target}: no file {dest.relative_to(ROOT)}")
        elif fragment and dest.suffix == ".md" and fragment not in anchors(dest):
            broken.append(f"{target}: no anchor #{fragment} in {dest.relative_to(ROOT)}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_every_docs_citation_in_the_code_exists() -> None:
    broken = []
    cited = 0
    for path in code_files():
        for page, fragment in _CITATION.findall(path.read_text(encoding="utf-8")):
            cited += 1
            dest = ROOT / "docs" / page
            where = f"{path.relative_to(ROOT)} cites docs/{page}"
            if not dest.exists():
                broken.append(f"{where}: no such page")
            elif fragment and fragment not in anchors(dest):
                broken.append(f"{where}#{fragment}: no such anchor")
    assert cited > 0, "the code cites no docs page: the check would be empty"
    assert not broken, "; ".join(broken)


def test_no_design_notes_citation_remains_in_the_code() -> None:
    stale = re.compile(r"design[- ]notes", re.I)
    left = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in code_files()
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if stale.search(line)
    ]
    assert not left, "cite docs/design.md#<section> instead: " + ", ".join(left)


def test_github_slug_matches_githubs_rules() -> None:
    assert (
        github_slug("3.1 Once-only effects across replicas")
        == "31-once-only-effects-across-replicas"
    )
    assert github_slug("With and without `hiredis`") == "with-and-without-hiredis"
