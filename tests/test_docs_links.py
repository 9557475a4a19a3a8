"""Every relative link of README.md and docs/guide.md names an existing file and, with ``#anchor``, a heading of it.

The README is a short overview whose bullets link to sections of the user guide (docs/guide.md); a renamed heading
or a moved file must not leave a link that lands nowhere. Anchors follow GitHub's rule: the heading's text,
lowercased, punctuation other than '-' and '_' dropped, spaces turned into '-', '-1', '-2', ... for repeats.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ("README.md", "docs/guide.md")
_FENCE = re.compile(r"^```.*?^```", flags=re.S | re.M)
_LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor for a heading's text (inline code, emphasis and link markup removed first)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # [text](url) -> text
    text = text.replace("`", "").replace("*", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters, digits and '_' (unicode letters too, as GitHub)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """The anchors of a Markdown file's ATX headings (not of '#' lines inside code blocks)."""
    seen: dict[str, int] = {}
    out = set()
    for line in _FENCE.sub("", markdown).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        s = slug(m[1])
        n = seen.get(s, 0)
        seen[s] = n + 1
        out.add(s if n == 0 else f"{s}-{n}")
    return out


def broken_links(path: Path) -> list[str]:
    """Each relative link of ``path`` (outside code blocks) whose file or heading does not exist, with the reason."""
    bad = []
    for target in _LINK.findall(_FENCE.sub("", path.read_text(encoding="utf-8"))):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:, ...: not checked here
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            bad.append(f"{target}: no file {dest}")
        elif anchor and anchor not in anchors(dest.read_text(encoding="utf-8")):
            bad.append(f"{target}: no heading with anchor #{anchor} in {dest.name}")
    return bad


@pytest.mark.parametrize("doc", DOCS)
def test_every_relative_link_lands_on_a_file_and_heading(doc):
    path = ROOT / doc
    assert path.is_file()
    assert not broken_links(path), "\n".join(broken_links(path))


@pytest.mark.parametrize(("heading", "anchor"), [
    ("The exact ReLU flow: filippov", "the-exact-relu-flow-filippov"),
    ("Long, stiff horizons: dop853+exprk4 and exprk4", "long-stiff-horizons-dop853exprk4-and-exprk4"),
    ("Sliding: the ReLU flow at paper scale", "sliding-the-relu-flow-at-paper-scale"),
    ("Results, compare and I/O", "results-compare-and-io"),
    ("Checkpoints, extend and Ctrl-C", "checkpoints-extend-and-ctrl-c"),
    ("`gf.simulate` and *friends*", "gfsimulate-and-friends"),
    ("snake_case keeps its underscore", "snake_case-keeps-its-underscore"),
])
def test_slug_follows_githubs_rule(heading, anchor):
    assert slug(heading) == anchor


def test_a_broken_link_is_reported(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "guide.md").write_text("# Guide\n\n## Two flows\n\n## Two flows\n", encoding="utf-8")
    readme = tmp_path / "README.md"
    readme.write_text(
        "# T\n\n[ok](docs/guide.md#two-flows) [repeat](docs/guide.md#two-flows-1) [self](#t)\n"
        "[no heading](docs/guide.md#three-flows) [no file](docs/missing.md) [web](https://example.org/x#y)\n"
        "```python\nx = [1](not-a-link.md)\n# a comment, not a heading\n```\n"
        "[code is no heading](#a-comment-not-a-heading)\n",
        encoding="utf-8")
    bad = broken_links(readme)
    assert len(bad) == 3, bad
    assert "docs/guide.md#three-flows: no heading with anchor #three-flows in guide.md" in bad
    assert any(b.startswith("docs/missing.md: no file") for b in bad)
    assert any(b.startswith("#a-comment-not-a-heading") for b in bad)


def test_each_what_is_in_it_bullet_links_to_the_guide():
    # the README's overview stays short: one bullet per feature, 1–3 lines, its details one link away
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("\n## What is in it\n", 1)[1].split("\n## ", 1)[0]
    bullets = re.split(r"\n(?=- )", section[section.index("\n- ") + 1:].strip())
    assert len(bullets) >= 10
    for b in bullets:
        assert "](docs/guide.md#" in b, b
        text = re.sub(r"\s*\[[^\]]*\]\(docs/guide\.md#[^)]*\),?", "", b)  # the links themselves do not count
        assert len(text.splitlines()) <= 3, b
