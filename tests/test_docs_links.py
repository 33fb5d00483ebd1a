"""The README is the way in: at most 320 lines, every page under docs/ linked from it, no dead link.

Reference pages live under docs/ and decision records under docs/adr/; a page the README does not
link is a page a newcomer never finds. Relative links (and their #anchors, as GitHub makes them
from headings) must resolve in the README and in every page.
"""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MAX_README_LINES = 320
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return sorted([*ROOT.glob("docs/*.md"), *ROOT.glob("docs/adr/*.md")])


def prose(text: str) -> str:
    """The text outside fenced code blocks (a link in an example is not a link)."""
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


def anchors(page: Path) -> set[str]:
    """GitHub's anchors for the page's headings: lower case, punctuation dropped, spaces to hyphens."""
    found: set[str] = set()
    for heading in re.findall(r"^#{1,6}\s+(.*?)\s*$", prose(page.read_text()), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(slug)
    return found


def test_readme_is_at_most_320_lines() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, f"README.md has {lines} lines; move reference to docs/"


def test_every_docs_page_is_linked_from_the_readme() -> None:
    assert pages(), "no page under docs/"
    linked = {
        (ROOT / target.split("#")[0]).resolve()
        for target in LINK.findall(prose(README.read_text()))
        if not re.match(r"[a-z]+:", target)
    }
    missing = [str(page.relative_to(ROOT)) for page in pages() if page.resolve() not in linked]
    assert not missing, f"pages under docs/ the README does not link: {missing}"


def test_relative_links_resolve() -> None:
    dead: list[str] = []
    for page in [README, *pages()]:
        for target in LINK.findall(prose(page.read_text())):
            if re.match(r"[a-z]+:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            goal = (page.parent / path).resolve() if path else page
            if not goal.exists():
                dead.append(f"{page.relative_to(ROOT)}: {target}")
            elif anchor and goal.suffix == ".md" and anchor not in anchors(goal):
                dead.append(f"{page.relative_to(ROOT)}: {target} (no such heading)")
    assert not dead, dead
