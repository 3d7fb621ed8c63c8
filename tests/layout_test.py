"""The import rule of resnet_keras/__init__.py, checked on the source (AST only, no TensorFlow).

Every module of resnet_keras/, scripts/ and benchmarks/ is parsed, every import
in it (at the top or inside a function) resolved to the project module it names,
and refused when it reaches a layer above its own or a sibling family.
"""

import ast
import os
import unittest

# No tests.fixtures: it imports TensorFlow, and this test needs none.
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

BASE = {"checks", "files", "cpu", "keras_private", "stats"}
# The layers each layer may import, its own included (resnet_keras/__init__.py).
LOWER = {
    "base": {"base"},
    "data": {"base", "data"},
    "run": {"base", "data", "run"},
    "classification": {"base", "data", "run", "classification"},
    "transfer": {"base", "data", "run", "classification", "transfer"},
    "colorization": {"base", "data", "run", "colorization"},
}
FAMILIES = {"base", "data", "run", "classification", "transfer", "colorization"}
# Above the families: export takes a model of either family, a config names the
# runs of one experiment; scripts (and the benchmarks) use everything.
LOWER["export"] = FAMILIES | {"export"}
LOWER["configs"] = FAMILIES | {"configs"}
LOWER["api"] = FAMILIES  # resnet_keras/__init__.py: the names it declares
LOWER["scripts"] = FAMILIES | {"export", "configs", "api", "scripts"}


def layer_of(module):
    """The layer of a dotted module name of the project, or None for other packages."""
    parts = module.split(".")
    if parts[0] in ("scripts", "benchmarks"):
        return "scripts"
    if parts[0] != "resnet_keras":
        return None
    if len(parts) == 1:
        return "api"
    if parts[1] in BASE:
        return "base"
    if parts[1] in LOWER:
        return parts[1]
    raise AssertionError(
        f"resnet_keras.{parts[1]}: in no layer; add it to tests/layout_test.py and to the "
        "rule in resnet_keras/__init__.py"
    )


def module_name(path):
    rel = os.path.relpath(path, ROOT)[: -len(".py")].split(os.sep)
    if rel[-1] == "__init__":
        rel = rel[:-1]
    return ".".join(rel)


DYNAMIC = "<computed name>"


def import_module_call(node):
    """(name argument, level) of an `importlib.import_module(...)`, `import_module(...)`
    or `__import__(...)` call, or None when `node` is no such call. A relative
    `import_module(".x")` has its dots as the level; `__import__`'s level is its
    fifth argument; a level that is not a literal gives the name DYNAMIC."""
    if not isinstance(node, ast.Call):
        return None
    f, kw = node.func, {k.arg: k.value for k in node.keywords}
    if isinstance(f, ast.Attribute):
        is_importlib = isinstance(f.value, ast.Name) and f.value.id == "importlib"
        kind = f.attr if is_importlib else None
    else:
        kind = getattr(f, "id", None)
    if kind not in ("import_module", "__import__"):
        return None
    arg = node.args[0] if node.args else kw.get("name")
    if not (isinstance(arg, ast.Constant) and isinstance(arg.value, str)):
        return DYNAMIC, 0
    name = arg.value
    if kind == "import_module":
        level = len(name) - len(name.lstrip("."))
        return name[level:], level
    level = node.args[4] if len(node.args) > 4 else kw.get("level", ast.Constant(0))
    if not (isinstance(level, ast.Constant) and isinstance(level.value, int)):
        return DYNAMIC, 0
    return name, level.value


def absolute(module, is_package, level, name):
    """The dotted name a relative import of `name` at `level` in `module` means."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    here = here[: len(here) - level + 1]
    return ".".join(here + ([name] if name else []))


def imported(tree, module, is_package):
    """(line, dotted name) of every project module (or package name) an AST imports,
    `import_module("...")` calls included; a name computed at run time gives DYNAMIC."""
    for node in ast.walk(tree):
        call = import_module_call(node)
        if call is not None:
            name, level = call
            yield node.lineno, absolute(module, is_package, level, name) if level else name
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module
            if node.level:
                base = absolute(module, is_package, node.level, node.module)
            for alias in node.names:
                # `from resnet_keras import files` names a module; `from
                # resnet_keras.files import atomic_path` a name in one.
                whole = base == "resnet_keras" or (node.level and not node.module)
                yield node.lineno, f"{base}.{alias.name}" if whole else base


def violations(source, module, is_package=False):
    """The imports of `module` (its source text) that break the layer rule."""
    own = layer_of(module)
    out = []
    for line, name in imported(ast.parse(source), module, is_package):
        if name == DYNAMIC:
            # The rule cannot follow a name made at run time. The one allowed is
            # the API's lazy table, whose targets test_the_api_table_... checks.
            if own != "api":
                out.append(f"{module}:{line} ({own}) imports a module named at run time")
            continue
        parts = name.split(".")
        if parts[0] == "resnet_keras" and len(parts) > 1 and parts[1] not in BASE | set(LOWER):
            name = "resnet_keras"  # a name `resnet_keras/__init__.py` declares
        target = layer_of(name)
        if target is not None and target not in LOWER[own]:
            out.append(f"{module}:{line} ({own}) imports {name} ({target})")
    return out


def project_modules():
    for top in ("resnet_keras", "scripts", "benchmarks"):
        for folder, _, names in os.walk(os.path.join(ROOT, top)):
            for name in sorted(names):
                if name.endswith(".py"):
                    yield os.path.join(folder, name)


class LayoutTest(unittest.TestCase):
    def test_no_module_imports_above_its_layer_or_a_sibling_family(self):
        found = []
        for path in project_modules():
            with open(path, encoding="utf-8") as f:
                source = f.read()
            found += violations(source, module_name(path), path.endswith("__init__.py"))
        self.assertEqual(found, [])

    def test_the_api_table_points_only_at_the_families(self):
        # resnet_keras/__init__.py imports its names by importlib.import_module on
        # first use; its table is data, read here.
        with open(os.path.join(ROOT, "resnet_keras", "__init__.py"), encoding="utf-8") as f:
            tree = ast.parse(f.read())
        (table,) = [
            n.value
            for n in tree.body
            if isinstance(n, ast.Assign) and getattr(n.targets[0], "id", None) == "_LAZY"
        ]
        modules = {m for m, _ in ast.literal_eval(table).values()}
        self.assertNotEqual(modules, set())
        for m in sorted(modules):
            with self.subTest(module=m):
                self.assertIn(layer_of(f"resnet_keras.{m}"), LOWER["api"])

    def test_every_layer_is_checked(self):
        modules = [module_name(p) for p in project_modules()]
        self.assertEqual(
            {layer_of(m) for m in modules},
            {"api", "base", "data", "run", "classification", "transfer", "colorization"}
            | {"export", "configs", "scripts"},
        )

    def test_refuses_an_upward_and_a_sideways_import(self):
        cases = [
            ("from resnet_keras.classification import models", "resnet_keras.run.folders"),
            ("from resnet_keras.run import fit", "resnet_keras.data.pipeline"),
            (
                "from resnet_keras.transfer.models import base_label",
                "resnet_keras.classification.task",
            ),
            ("from resnet_keras import colorization", "resnet_keras.classification.task"),
            ("from resnet_keras.classification import models", "resnet_keras.colorization.probe"),
            ("import resnet_keras.configs.question2", "resnet_keras.transfer.task"),
            ("from scripts import common", "resnet_keras.configs.question2"),
            ("from resnet_keras import build_resnet", "resnet_keras.run.lifecycle"),
            ("from resnet_keras.data import cifar", "resnet_keras.files"),
            ("from .. import run", "resnet_keras.data.cifar"),
            ("from ..classification.models import MAX_N", "resnet_keras.run.config"),
            ('importlib.import_module("resnet_keras.colorization.task")', "resnet_keras.run.fit"),
            ('__import__("resnet_keras.transfer")', "resnet_keras.classification.task"),
            ("importlib.import_module(name)", "resnet_keras.run.fit"),
            ('importlib.import_module("..colorization.task", __package__)', "resnet_keras.run.fit"),
            ('importlib.import_module(name="resnet_keras.transfer")', "resnet_keras.run.fit"),
            ('__import__("colorization.task", globals(), None, ["x"], 2)', "resnet_keras.run.fit"),
            ('__import__("resnet_keras.transfer", level=lvl)', "resnet_keras.run.fit"),
        ]
        for source, module in cases:
            with self.subTest(source=source, module=module):
                self.assertEqual(len(violations(f"def f():\n    {source}\n", module)), 1)

    def test_allows_the_layers_below_and_its_own(self):
        cases = [
            ("from resnet_keras.classification import models", "resnet_keras.transfer.models"),
            ("from resnet_keras.run import fit, folders", "resnet_keras.colorization.task"),
            ("from resnet_keras import files", "resnet_keras.data.cifar"),
            ("from . import folders", "resnet_keras.run.publish"),
            ("from resnet_keras.colorization import color", "resnet_keras.export"),
            ("import numpy", "resnet_keras.checks"),
            ('importlib.import_module("resnet_keras.data.cifar")', "resnet_keras.run.fit"),
            ('importlib.import_module(f"resnet_keras.{module}")', "resnet_keras"),
            ('importlib.import_module(".folders", __package__)', "resnet_keras.run.fit"),
            ('__import__("numpy")', "resnet_keras.run.fit"),
            ("plugins.import_module(name)", "resnet_keras.run.fit"),  # not importlib's
        ]
        for source, module in cases:
            with self.subTest(source=source, module=module):
                self.assertEqual(violations(source, module), [])


if __name__ == "__main__":
    unittest.main()
