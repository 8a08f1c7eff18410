"""The docs (README.md and docs/*.md) cover the project and hold together.

- Every Makefile target (a line `name: ... ## help`, the ones `make help` lists) is shown as
  `make name` somewhere in README.md or docs/*.md.
- Every command in tools/ is named as `tools/<name>.py` there. A command is a tools/*.py with a
  `if __name__ == "__main__":` block; the others (cli.py: the options infer.py and
  visualize.py share) are helper modules, imported rather than run, and need no entry.
- Every relative Markdown link and image resolves to a file of the checkout, and a #anchor to
  a heading of the target page (GitHub's heading ids). Links inside code are not links.
- README.md is a front page of at most 150 lines, and maps every page of docs/.

Read from the files; no Caffe needed.
"""

import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
README_MAX_LINES = 150

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
# [text](target) and ![alt](target); the target ends at whitespace (a title may follow) or ")".
LINK = re.compile(r"!?\[(?:[^\]\\]|\\.)*\]\(\s*<?([^)\s>]*)>?(?:\s+[\"'][^)]*)?\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
TARGET = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_-]*):.*##\s")


def doc_files():
    """README.md and every docs/*.md, relative to the checkout."""
    docs = os.path.join(REPO, "docs")
    return ["README.md"] + sorted(
        os.path.join("docs", n) for n in os.listdir(docs) if n.endswith(".md")
    )


def read(path):
    with open(os.path.join(REPO, path), encoding="utf-8") as f:
        return f.read()


def prose_lines(text):
    """(line number, line) of the text outside fenced code blocks."""
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m:
            if fence is None:
                fence = m.group(1)
            elif m.group(1) == fence:
                fence = None
            continue
        if fence is None:
            yield number, line


def all_docs_text():
    return "\n".join(read(p) for p in doc_files())


def make_targets():
    """The Makefile's documented targets: `name: ... ## help` lines, as `make help` lists."""
    return [m.group(1) for m in map(TARGET.match, read("Makefile").splitlines()) if m]


def commands():
    """tools/*.py that run as commands (a __main__ block); helper modules are left out."""
    folder = os.path.join(REPO, "tools")
    return sorted(
        n
        for n in os.listdir(folder)
        if n.endswith(".py") and '__name__ == "__main__"' in read(os.path.join("tools", n))
    )


def slug(heading):
    """GitHub's id of a heading: markup dropped, lower case, punctuation but - and _ removed,
    spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path):
    """The heading ids of a Markdown file, with GitHub's -1, -2 for repeated headings."""
    seen, ids = {}, set()
    for _, line in prose_lines(read(path)):
        m = HEADING.match(line)
        if not m:
            continue
        base = slug(m.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        ids.add(base if n == 0 else "%s-%d" % (base, n))
    return ids


def links_in(text):
    """(line number, target) of every Markdown link and image of the text outside code."""
    for number, line in prose_lines(text):
        for m in LINK.finditer(INLINE_CODE.sub("", line)):
            yield number, m.group(1)


def links(path):
    return links_in(read(path))


def test_the_makefile_has_documented_targets():
    targets = make_targets()
    assert "help" in targets and "demo" in targets and "test" in targets, targets


def test_every_make_target_is_documented():
    text = all_docs_text()
    missing = [
        t for t in make_targets() if not re.search(r"\bmake\s+%s(?![\w-])" % re.escape(t), text)
    ]
    assert not missing, "targets not shown as `make <target>` in README.md or docs/*.md: %s" % (
        ", ".join(missing)
    )


def test_every_tool_is_documented():
    text = all_docs_text()
    found = commands()
    assert "infer.py" in found and "cli.py" not in found, found
    missing = ["tools/" + n for n in found if "tools/" + n not in text]
    assert not missing, "commands not named in README.md or docs/*.md: %s" % ", ".join(missing)


@pytest.mark.parametrize("path", doc_files())
def test_relative_links_resolve(path):
    broken = []
    for number, target in links(path):
        if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("//"):
            continue  # empty, or an absolute URL (https:, mailto:, ...)
        file_part, _, anchor = target.partition("#")
        resolved = (
            os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        )
        where = "%s:%d: %s" % (path, number, target)
        if not os.path.exists(os.path.join(REPO, resolved)):
            broken.append("%s (no file %s)" % (where, resolved))
        elif anchor and resolved.endswith(".md") and anchor not in anchors(resolved):
            broken.append("%s (no heading #%s in %s)" % (where, anchor, resolved))
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_readme_is_a_front_page():
    count = len(read("README.md").splitlines())
    assert count <= README_MAX_LINES, (
        "README.md has %d lines, at most %d: move details to docs/"
        % (
            count,
            README_MAX_LINES,
        )
    )


def test_readme_maps_every_doc():
    targets = [t.partition("#")[0] for _, t in links("README.md")]
    linked = {os.path.normpath(t) for t in targets if t.startswith("docs/")}
    missing = [p for p in doc_files()[1:] if p not in linked]
    assert not missing, "docs not linked from README.md's map: %s" % ", ".join(missing)


def test_the_link_checker_sees_links_and_headings():
    """The parsers above on a known text: links in prose only, GitHub's heading ids."""
    assert slug("The CUDA root: `make env CAFFE=cuda`") == "the-cuda-root-make-env-caffecuda"
    assert slug("Training on one GPU or several: `tools/train.py`") == (
        "training-on-one-gpu-or-several-toolstrainpy"
    )
    assert slug("The baselines (Sec. 6.3)") == "the-baselines-sec-63"
    text = 'a [x](a.md#b) `[y](no.md)` ![i](p.png "t")\n```\n[z](no.md)\n```\n'
    assert [t for _, t in links_in(text)] == ["a.md#b", "p.png"]
