"""README.md and docs/**/*.md: every relative link reaches a file (and heading), every
code fence is closed, and every module of resnet_keras/ or scripts/ they name in
backticks is where they say (docs/log.md, a history, excepted).

The README is short and points into docs/; a renamed page, heading or figure
would otherwise leave dead links that nothing else notices. Reads text only: no
TensorFlow, well under a second.
"""

import ast
import glob
import os
import re

from absl.testing import absltest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FENCE = re.compile(r"^ {0,3}(```|~~~)")
# `resnet_keras/run/folders.py`, `scripts/_flags.py: USES`, `MAX_N` in `resnet_keras/...py`.
CODE_PATH = re.compile(r"`((?:resnet_keras|scripts)/[\w/]+\.py)(?::\s*(\w+))?`")
DOTTED = re.compile(r"`((?:resnet_keras|scripts)(?:\.\w+)+)")  # `resnet_keras.run.saving`
NAME_IN_PATH = re.compile(r"`(\w+)` in `((?:resnet_keras|scripts)/[\w/]+\.py)`")
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


def defined_names(path):
    """The functions, classes and assigned names a module defines (not those it imports)."""
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            if isinstance(node.value, ast.Dict) and "_LAZY" in names:  # the lazy public API
                names |= {k.value for k in node.value.keys if isinstance(k, ast.Constant)}
    return names


def module_file(dotted, root):
    """resnet_keras/run/saving.py for resnet_keras.run.saving (a package: its
    __init__.py), or None."""
    base = os.path.join(root, *dotted.split("."))
    for candidate in (base + ".py", os.path.join(base, "__init__.py")):
        if os.path.isfile(candidate):
            return os.path.relpath(candidate, root)
    return None


def stale_code_names(path, root=ROOT):
    """(mention, reason) for each module of resnet_keras/ or scripts/ a page names in
    backticks (`resnet_keras/run/fit.py`, `resnet_keras.run.fit`) that is not in the
    tree under `root`, or that does not define the name given with it
    (`file.py: NAME`, `NAME` in `file.py`, `resnet_keras.run.fit.NAME`): a module
    moved or a name renamed. Names a module only imports do not count."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    mentions = [(file, name, None) for file, name in CODE_PATH.findall(text)]
    mentions += [(file, name, None) for name, file in NAME_IN_PATH.findall(text)]
    for dotted in DOTTED.findall(text):
        # The longest prefix that is a module, then the name it must define.
        parts = dotted.split(".")
        k = next(k for k in range(len(parts), 0, -1) if module_file(".".join(parts[:k]), root))
        name = parts[k] if k < len(parts) else ""
        mentions.append((module_file(".".join(parts[:k]), root), name, ".".join(parts[: k + 1])))
    bad = []
    for file, name, dotted in mentions:
        full = os.path.join(root, file)
        if not os.path.isfile(full):
            bad.append((file, "no such file"))
        elif name and name not in defined_names(full):
            bad.append((dotted or f"{file}: {name}", "not defined there"))
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

    def test_every_named_module_is_where_the_page_says(self):
        for path in pages():
            if os.path.basename(path) == "log.md":
                continue  # a history: "at the time, resnet_keras/models.py" is right there
            with self.subTest(page=os.path.relpath(path, ROOT)):
                self.assertEqual(stale_code_names(path), [])

    def test_checker_finds_moved_modules_and_names(self):
        page = self.create_tempdir().create_file(
            "page.md",
            "`resnet_keras/run/folders.py` `resnet_keras/models.py` `scripts/_flags.py: USES`\n"
            "`scripts/common.py: USES` (imported there, defined in _flags)\n"
            "`MAX_N` in `resnet_keras/classification/models.py`, `FAST_PRESET` in "
            "`resnet_keras/run/optim.py`\n`resnet_keras.run.optim.learning_rate` "
            "`resnet_keras.build_resnet(n)` `resnet_keras.training.learning_rate`\n",
        )
        self.assertEqual(
            stale_code_names(page.full_path),
            [
                ("resnet_keras/models.py", "no such file"),
                ("scripts/common.py: USES", "not defined there"),
                ("resnet_keras/run/optim.py: FAST_PRESET", "not defined there"),
                ("resnet_keras.training", "not defined there"),
            ],
        )

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
