"""The documentation's links and file paths lead somewhere: every relative link in README.md and the Markdown under
docs/ and sweeps/ resolves to a file or folder inside the repository (and its #anchor to a heading there), and every
repository path that the docs or the code's docstrings name (bench/…, docs/…, kdviz/…) exists. A moved file or a link
to a file outside the repository fails here, naming the document, the line and the target."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = sorted([ROOT / "README.md", *(ROOT / "docs").rglob("*.md"), *(ROOT / "sweeps").glob("*.md")])
CODE = sorted([ROOT / "app.py", ROOT / "Makefile", *(ROOT / "pages").glob("*.py"), *(ROOT / "kdviz").rglob("*.py"),
               *(ROOT / "bench").glob("*.py"), *(ROOT / "sweeps").glob("*.py"), *(ROOT / "tests").rglob("*.py")])

LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")  # [text](target) and ![alt](image)
# a repository path named in prose or a docstring: a top-level folder, then a file with one of these endings
PATH = re.compile(r"(?<![\w./-])((?:bench|sweeps|docs|tests|kdviz|pages)/[\w./-]*\.(?:py|md|sh|js|css|json|png|toml))"
                  r"(?![\w/-])")


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {slug(line.lstrip("#")) for line in text.splitlines() if re.match(r"#{1,6} ", line)}


def relative_links(text: str):
    in_code = False
    for number, line in enumerate(text.splitlines(), 1):
        if line.lstrip().startswith("```"):
            in_code = not in_code
            continue
        if in_code:
            continue
        for target in LINK.findall(line):
            if not re.match(r"[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto: are not files
                yield number, target


def doc_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


def broken_links(doc: Path, text: str) -> list[str]:
    broken = []
    for number, target in relative_links(text):
        file_part, _, anchor = target.partition("#")
        resolved = (doc.parent / file_part).resolve() if file_part else doc
        if not resolved.is_relative_to(ROOT):
            broken.append(f"{doc_id(doc)}:{number}: {target} leaves the repository")
        elif not resolved.exists():
            broken.append(f"{doc_id(doc)}:{number}: {target} does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(f"{doc_id(doc)}:{number}: {target} names no heading of {doc_id(resolved)}")
    return broken


@pytest.mark.parametrize("doc", DOCS, ids=doc_id)
def test_every_relative_link_resolves_inside_the_repository(doc):
    broken = broken_links(doc, doc.read_text(encoding="utf-8"))
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize("source", DOCS + CODE, ids=doc_id)
def test_every_repository_path_named_exists(source):
    missing = []
    for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
        for named in PATH.findall(line):
            if not (ROOT / named).exists():
                missing.append(f"{doc_id(source)}:{number}: {named}")
    assert not missing, "paths that do not exist (moved or renamed?):\n" + "\n".join(missing)


def test_the_check_catches_a_link_outside_the_repository_a_missing_file_and_a_wrong_anchor():
    doc = ROOT / "docs" / "HALL.md"
    text = ("[design](../../shared/DESIGN.md), [gone](experiments/NOT_THERE.md), [ok](SCALE.md),\n"
            "[no such heading](SCALE.md#no-such-heading), [web](https://example.org/x.md)\n"
            "```\n[in a code block](nowhere.md)\n```\n")
    assert broken_links(doc, text) == [
        "docs/HALL.md:1: ../../shared/DESIGN.md leaves the repository",
        "docs/HALL.md:1: experiments/NOT_THERE.md does not exist",
        "docs/HALL.md:2: SCALE.md#no-such-heading names no heading of docs/SCALE.md"]
