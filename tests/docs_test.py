"""README.md and docs/**/*.md: every relative link reaches a file (and heading), every
code fence is closed.

The README is short and points into docs/; a renamed page, heading or figure
would otherwise leave dead links that nothing else notices. Reads text only: no
TensorFlow, well under a second.
"""

import glob
import os
import re

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"^ {0,3}(```|~~~)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def pages():
    # Recursive: pages under docs/ subfolders (the short runs' archived tables) link back up.
    docs = glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True)
    return [os.path.join(ROOT, "README.md")] + sorted(docs)


def prose_lines(text, inline_code=False):
    """The lines outside fenced code blocks (inline code removed unless asked
    for), and whether every fence was closed."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line if inline_code else re.sub(r"`[^`]*`", "", line))
    return out, not fenced


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    text = re.sub(r"[^\w\- ]", "", text.replace("`", ""))
    return text.replace(" ", "-")


def anchors(path):
    """Every heading anchor of a Markdown file, with GitHub's -1, -2 suffixes."""
    with open(path, encoding="utf-8") as f:
        lines, _ = prose_lines(f.read(), inline_code=True)
    seen, out = {}, set()
    for line in lines:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(path):
    """(target, reason) for each relative link of `path` that leads nowhere."""
    with open(path, encoding="utf-8") as f:
        lines, _ = prose_lines(f.read())
    bad = []
    for target in LINK.findall("\n".join(lines)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
            continue  # http:, https:, mailto:
        file_part, _, anchor = target.partition("#")
        dest = (
            os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
        )
        if not os.path.exists(dest):
            bad.append((target, "no such file"))
        elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
            bad.append((target, "no such heading"))
    return bad


class DocsTest(absltest.TestCase):

    def test_every_relative_link_resolves(self):
        for path in pages():
            with self.subTest(page=os.path.relpath(path, ROOT)):
                self.assertEqual(broken_links(path), [])

    def test_every_code_fence_is_closed(self):
        for path in pages():
            with open(path, encoding="utf-8") as f:
                _, closed = prose_lines(f.read())
            self.assertTrue(closed, f"{os.path.relpath(path, ROOT)}: a code fence is never closed")

    def test_checker_finds_broken_links_and_open_fences(self):
        folder = self.create_tempdir()
        folder.create_file("other.md", "# A heading: `with code`\n")
        page = folder.create_file(
            "page.md",
            "[ok](other.md#a-heading-with-code) [gone](missing.md) [bad](other.md#nope)\n"
            "[web](https://example.com) `[code](x.md)`\n```\n[in code](y.md)\n```\n",
        )
        self.assertEqual(
            broken_links(page.full_path),
            [("missing.md", "no such file"), ("other.md#nope", "no such heading")],
        )
        self.assertFalse(prose_lines("text\n```bash\nswallowed\n")[1])


if __name__ == "__main__":
    absltest.main()
