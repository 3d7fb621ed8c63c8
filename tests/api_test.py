"""The declared public API (`resnet_keras.__all__`): every name resolves, has
one meaning in the package, and importing the package imports no TensorFlow
(its names load on first use)."""

import ast
import glob
import os
import subprocess
import sys
import unittest

import resnet_keras
from tests.fixtures import ROOT


def python(code):
    env = dict(os.environ, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    if r.returncode:
        raise AssertionError(r.stderr)
    return r.stdout.strip()


class ApiTest(unittest.TestCase):
    def test_every_declared_name_resolves(self):
        for name in resnet_keras.__all__:
            with self.subTest(name=name):
                obj = getattr(resnet_keras, name)
                self.assertTrue(callable(obj), name)
                self.assertTrue(obj.__module__.startswith("resnet_keras."), obj.__module__)

    def test_covers_every_family(self):
        # A builder of each family, the data loaders, the reference networks,
        # and each family's run function.
        for name in (
            "build_resnet",
            "build_plainnet",
            "residual_block",
            "build_autoencoder",
            "build_unet",
            "build_transfer_model",
            "load_cifar",
            "load_image_folder",
            "pretrained",
            "run_classification",
            "run_transfer",
            "train_colorizer",
        ):
            self.assertIn(name, resnet_keras.__all__)

    def test_no_module_defines_a_public_name_as_something_else(self):
        # resnet_keras.evaluate_colorizer (a model file to a results row) must
        # not share its name with another function, say one of arrays to metrics.
        lazy = resnet_keras._LAZY
        for path in glob.glob(os.path.join(ROOT, "resnet_keras", "**", "*.py"), recursive=True):
            module = os.path.relpath(path, os.path.join(ROOT, "resnet_keras"))[:-3]
            module = module.replace(os.sep, ".")
            with open(path) as f:
                tree = ast.parse(f.read())
            for node in tree.body:
                if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and node.name in lazy:
                    self.assertEqual((module, node.name), lazy[node.name], f"{module}.{node.name}")

    def test_unknown_name_is_an_attribute_error(self):
        with self.assertRaisesRegex(AttributeError, "no attribute 'build_resnet50'"):
            resnet_keras.build_resnet50  # noqa: B018

    def test_import_loads_no_tensorflow_and_dir_lists_the_api(self):
        out = python(
            "import sys, resnet_keras; print(sorted(m for m in sys.modules "
            "if m.split('.')[0] in ('tensorflow', 'keras'))); "
            "print(sorted(set(resnet_keras.__all__) - set(dir(resnet_keras))))"
        )
        self.assertEqual(out.splitlines(), ["[]", "[]"])


if __name__ == "__main__":
    unittest.main()
