"""resnet_keras.torch_checkpoint, resnet_keras.conversion and scripts.convert:
the akamaster/pytorch_resnet_cifar10 checkpoints (../shared/reference/akamaster)
read without PyTorch and safely, converted into the builder's network, and
equal to PyTorch's own outputs on 100 JPEG test images (the reference's
reference_outputs_100.npz: no PyTorch needed).

Where PyTorch is installed (its own venv: docs/pretrained.md), two more
checks run: the reader against `torch.load`, bit for bit, and the conversion
of `torch.load`'s tensors against the shipped files.
"""

import glob
import importlib.util
import io
import json
import os
import pickle
import subprocess
import sys
import unittest

import keras
import numpy as np
import tensorflow as tf
from absl.testing import parameterized

from resnet_keras import files
from resnet_keras.classification import conversion, pretrained, torch_checkpoint
from resnet_keras.data.cifar import CIFAR10_CLASSES
from resnet_keras.run import saving
from tests import fixtures
from tests.fixtures import run_in_process

REFERENCE = os.path.join(fixtures.ROOT, "..", "shared", "reference", "akamaster")
HAS_REFERENCE = os.path.isfile(os.path.join(REFERENCE, "reference_outputs_100.npz"))
needs_reference = unittest.skipUnless(
    HAS_REFERENCE, "needs the reference checkpoints at ../shared/reference/akamaster"
)
HAS_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = unittest.skipUnless(
    HAS_TORCH, "PyTorch is not installed (optional: only these cross-checks use it)"
)
DEPTHS = (20, 32, 44, 56)
# The reference's softmax, reproduced to this (max absolute difference).
TOLERANCE = 1e-5


def checkpoint(depth):
    return pretrained.PRESETS[f"resnet{depth}_cifar10"].checkpoint


def legacy_file(obj, storages=()):
    """Bytes in PyTorch's legacy layout around one pickled object (tests of refusals)."""
    f = io.BytesIO()
    for header in (torch_checkpoint.MAGIC_NUMBER, 1001, {"little_endian": True}, obj, []):
        pickle.dump(header, f, protocol=2)
    return f.getvalue()


class _Hostile:
    def __reduce__(self):
        return (os.system, ("touch hacked",))


class TorchCheckpointTest(tf.test.TestCase):
    @needs_reference
    def test_reads_a_reference_checkpoint(self):
        ckpt = torch_checkpoint.load(os.path.join(REFERENCE, checkpoint(20)))
        self.assertAlmostEqual(ckpt["best_prec1"], 91.78, places=4)
        sd = ckpt["state_dict"]
        self.assertLen(sd, 97)  # 19 convs, 19 BatchNorms of 4, linear weight and bias
        self.assertEqual(sd["module.conv1.weight"].shape, (16, 3, 3, 3))
        self.assertEqual(sd["module.linear.weight"].shape, (10, 64))
        self.assertEqual(sd["module.layer3.2.bn2.running_var"].dtype, np.float32)
        self.assertTrue(np.all(sd["module.layer3.2.bn2.running_var"] > 0))

    def test_refuses_code_and_other_formats(self):
        folder = self.create_tempdir().full_path
        hostile = os.path.join(folder, "hostile.th")
        with open(hostile, "wb") as f:
            f.write(legacy_file({"state_dict": _Hostile()}))
        with self.assertRaisesRegex(ValueError, r"hostile.th: .*refused (posix|os)\.system"):
            torch_checkpoint.load(hostile)
        self.assertFalse(os.path.exists("hacked"))
        zipped = os.path.join(folder, "new.pt")
        with open(zipped, "wb") as f:
            f.write(b"PK\x03\x04" + bytes(100))
        with self.assertRaisesRegex(ValueError, "new.pt: .*zip checkpoint"):
            torch_checkpoint.load(zipped)
        cut = os.path.join(folder, "cut.th")
        with open(cut, "wb") as f:
            f.write(legacy_file({"a": 1})[:-3])
        with self.assertRaisesRegex(ValueError, "cut.th: not a readable legacy PyTorch"):
            torch_checkpoint.load(cut)

    def test_a_tensor_is_read_through_its_strides(self):
        # A hand-made legacy file: one 2x3 float tensor stored transposed
        # (strides (1, 2)) at offset 1 of a 7-element storage.
        storage = torch_checkpoint._Storage(np.float32, 7)
        storage.data = np.arange(7, dtype="<f4")
        t = torch_checkpoint._rebuild_tensor_v2(storage, 1, (2, 3), (1, 2), False, {})
        self.assertAllEqual(t.array(), [[1, 3, 5], [2, 4, 6]])
        past = torch_checkpoint._rebuild_tensor(storage, 2, (2, 3), (1, 2))
        with self.assertRaisesRegex(pickle.UnpicklingError, "past the end"):
            past.array()

    @needs_reference
    @needs_torch
    def test_equals_torch_load_bit_for_bit(self):
        import torch

        for depth in DEPTHS:
            path = os.path.join(REFERENCE, checkpoint(depth))
            ours = torch_checkpoint.load(path)
            theirs = torch.load(path, map_location="cpu", weights_only=False)
            self.assertEqual(ours["best_prec1"], theirs["best_prec1"])
            self.assertEqual(list(ours["state_dict"]), list(theirs["state_dict"]))
            for k, v in theirs["state_dict"].items():
                self.assertEqual(ours["state_dict"][k].tobytes(), v.numpy().tobytes(), k)
                self.assertEqual(ours["state_dict"][k].shape, tuple(v.shape), k)


@needs_reference
class ConversionTest(tf.test.TestCase, parameterized.TestCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.ref = np.load(os.path.join(REFERENCE, "reference_outputs_100.npz"))

    def shipped(self, depth):
        return keras.models.load_model(pretrained.path(f"resnet{depth}_cifar10"), compile=False)

    @parameterized.parameters(*DEPTHS)
    def test_reproduces_pytorch_on_100_images(self, depth):
        # The shipped file (what users load) and a conversion made now alike.
        x = self.ref["images_uint8"]  # raw JPEG-decoded pixels, as the reference saw them
        want = self.ref[f"resnet{depth}_probs"]
        converted = conversion.convert_checkpoint(os.path.join(REFERENCE, checkpoint(depth)))
        for model in (self.shipped(depth), converted):
            probs = model.predict(x, batch_size=100, verbose=0)
            self.assertLess(np.abs(probs - want).max(), TOLERANCE)
            self.assertAllEqual(probs.argmax(1), want.argmax(1))

    @parameterized.parameters(*DEPTHS)
    def test_conversion_reproduces_the_shipped_weights(self, depth):
        converted = conversion.convert_checkpoint(os.path.join(REFERENCE, checkpoint(depth)))
        shipped = self.shipped(depth)
        self.assertEqual([w.path for w in converted.weights], [w.path for w in shipped.weights])
        for a, b in zip(converted.weights, shipped.weights):
            self.assertEqual(a.numpy().tobytes(), b.numpy().tobytes(), a.path)

    @needs_torch
    def test_torch_load_converts_to_the_shipped_weights(self):
        import torch

        for depth in DEPTHS:
            path = os.path.join(REFERENCE, checkpoint(depth))
            sd = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
            converted = conversion.convert_state_dict({k: v.numpy() for k, v in sd.items()})
            for a, b in zip(converted.weights, self.shipped(depth).weights):
                self.assertEqual(a.numpy().tobytes(), b.numpy().tobytes(), a.path)

    def test_shipped_files_load_in_plain_keras_on_raw_images(self):
        # A Python that never imports the project: plain Keras and h5py, uint8 pixels in.
        code = (
            "import json, sys, h5py, keras, numpy as np\n"
            "ref = np.load(sys.argv[1])\n"
            "out = {}\n"
            "for d in (20, 32, 44, 56):\n"
            "    path = f'{sys.argv[2]}/resnet{d}_cifar10.h5'\n"
            "    m = keras.models.load_model(path)\n"
            "    p = m.predict(ref['images_uint8'], verbose=0)\n"
            "    names = json.loads(h5py.File(path, 'r').attrs['class_names'])\n"
            "    out[d] = [float(np.abs(p - ref[f'resnet{d}_probs']).max()), names[p[0].argmax()]]\n"
            "assert not [m for m in sys.modules if m.startswith('resnet_keras')]\n"
            "print(json.dumps(out))\n"
        )
        npz = os.path.join(REFERENCE, "reference_outputs_100.npz")
        folder = self.create_tempdir().full_path
        r = subprocess.run(
            [sys.executable, "-c", code, npz, pretrained.WEIGHTS_DIR],
            cwd=folder,  # not the checkout: nothing of the project on sys.path
            env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            | {"TF_CPP_MIN_LOG_LEVEL": "3"},
            capture_output=True,
            text=True,
            timeout=600,
        )
        self.assertEqual(r.returncode, 0, r.stderr[-2000:])
        out = json.loads(r.stdout.strip().splitlines()[-1])
        for depth in DEPTHS:
            diff, name = out[str(depth)]
            self.assertLess(diff, TOLERANCE)
            self.assertEqual(name, CIFAR10_CLASSES[self.ref[f"resnet{depth}_probs"][0].argmax()])

    def test_files_are_small_and_carry_their_provenance_and_notice(self):
        with open(os.path.join(pretrained.WEIGHTS_DIR, "provenance.json")) as f:
            prov = json.load(f)
        self.assertEqual(prov["source_commit"], pretrained.SOURCE_COMMIT)
        self.assertLen(prov["files"], 4)
        for record in prov["files"]:
            path = os.path.join(pretrained.WEIGHTS_DIR, record["file"])
            self.assertEqual(files.sha256(path), record["sha256"], record["file"])
            self.assertLess(os.path.getsize(path), 4 * 2**20)
            source = os.path.join(REFERENCE, record["source"])
            self.assertEqual(files.sha256(source), record["source_sha256"])
            preset = pretrained.PRESETS[record["file"].removesuffix(".h5")]
            self.assertEqual(preset.sha256, record["source_sha256"])
            self.assertEqual(saving.class_names_of(path), list(CIFAR10_CLASSES))
        with open(os.path.join(pretrained.WEIGHTS_DIR, "LICENSE")) as a:
            with open(os.path.join(REFERENCE, "LICENSE")) as b:
                self.assertEqual(a.read(), b.read())

    def test_bad_state_dicts_are_named(self):
        sd = torch_checkpoint.load(os.path.join(REFERENCE, checkpoint(20)))["state_dict"]
        missing = {k: v for k, v in sd.items() if k != "module.linear.bias"}
        with self.assertRaisesRegex(ValueError, "no linear.bias"):
            conversion.convert_state_dict(missing)
        extra = dict(sd, **{"module.extra.weight": np.zeros(3)})
        with self.assertRaisesRegex(ValueError, "no place for: \\['extra.weight'\\]"):
            conversion.convert_state_dict(extra)
        bad = dict(sd, **{"module.conv1.weight": np.zeros((16, 3, 5, 5), "float32")})
        with self.assertRaisesRegex(ValueError, "conv1.weight: shape \\(16, 3, 5, 5\\)"):
            conversion.convert_state_dict(bad)
        with self.assertRaisesRegex(ValueError, "not a CIFAR ResNet state dict"):
            conversion.convert_state_dict({"fc.weight": np.zeros((10, 64))})


@needs_reference
class ConvertScriptTest(tf.test.TestCase):
    def test_writes_the_shipped_file_and_its_provenance(self):
        out = self.create_tempdir().full_path
        source = os.path.join(REFERENCE, checkpoint(20))
        r = run_in_process("scripts.convert", source, f"--output_dir={out}")
        self.assertEqual(r.returncode, 0, r.stderr)
        written = os.path.join(out, "resnet20_cifar10.h5")
        # Bit for bit the shipped file: same weights, same graph, same attributes.
        self.assertEqual(files.sha256(written), files.sha256(pretrained.path("resnet20_cifar10")))
        with open(os.path.join(out, "provenance.json")) as f:
            prov = json.load(f)
        self.assertEqual(
            prov["files"][0]["source_sha256"], pretrained.PRESETS["resnet20_cifar10"].sha256
        )

    def test_bad_input_is_one_line_and_writes_nothing(self):
        out = os.path.join(self.create_tempdir().full_path, "out")
        for args, message in (
            ([], "give one or more checkpoints"),
            (["missing.th"], "missing.th: no such checkpoint file"),
            ([os.path.join(REFERENCE, "LICENSE")], "LICENSE: not a readable legacy PyTorch"),
            ([os.path.join(REFERENCE, checkpoint(20)), "--n=3"], "--n is not used by"),
        ):
            r = run_in_process("scripts.convert", *args, f"--output_dir={out}")
            self.assertEqual(r.returncode, 2, args)
            self.assertIn(message, r.stderr)
            self.assertLen(r.stderr.strip().splitlines(), 1)
        self.assertEqual(glob.glob(os.path.join(out, "*.h5")), [])
        # No --output_dir: refused, rather than writing over the shipped weights.
        before = {
            p: os.path.getmtime(p) for p in glob.glob(os.path.join(pretrained.WEIGHTS_DIR, "*"))
        }
        r = run_in_process("scripts.convert", os.path.join(REFERENCE, checkpoint(20)))
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("give --output_dir", r.stderr)
        self.assertEqual({p: os.path.getmtime(p) for p in before}, before)


if __name__ == "__main__":
    tf.test.main()
