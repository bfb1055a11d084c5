"""Every link in the README and docs/ points to a file inside the repository that exists.

A clone must be readable on its own: no link to the specification outside the
repository (it is restated in docs/claims.md), none to the web, none that is broken.
"""
import re

import pytest

from conftest import ROOT

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)|<img [^>]*src=\"([^\"]+)\"")


def _links(page):
    for match in LINK.finditer(page.read_text()):
        yield match.group(1) or match.group(2)


def _anchors(page):
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    anchors = set()
    for heading in re.findall(r"^#+ (.*)$", page.read_text(), flags=re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower().replace("`", ""))
        anchors.add(slug.replace(" ", "-"))
    return anchors


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_links_stay_inside_the_repository_and_resolve(page):
    problems = []
    for link in _links(page):
        if re.match(r"[a-z]+:", link):
            problems.append(f"{link}: points outside the repository")
            continue
        path, _, anchor = link.partition("#")
        target = (page.parent / path).resolve() if path else page
        if ROOT.resolve() not in (target, *target.parents):
            problems.append(f"{link}: points outside the repository")
        elif not target.exists():
            problems.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in _anchors(target):
            problems.append(f"{link}: no heading with anchor #{anchor}")
    assert not problems, f"{page.relative_to(ROOT)}: " + "; ".join(problems)
