"""resnet_keras.files: atomic writes and the writability check."""

import os
import stat

import numpy as np
import tensorflow as tf

from resnet_keras import files


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


class AtomicPathTest(tf.test.TestCase):
    def test_renamed_into_place_keeping_the_suffix_and_the_usual_mode(self):
        folder = self.create_tempdir().full_path
        path = os.path.join(folder, "a.npz")
        with files.atomic_path(path) as tmp:
            # np.savez would add ".npz" to a name without it, and miss the rename.
            self.assertTrue(tmp.endswith(".npz"))
            self.assertEqual(os.path.dirname(tmp), folder)
            self.assertFalse(os.path.exists(path))  # nothing under the final name yet
            np.savez(tmp, x=np.arange(3))
        self.assertEqual(os.listdir(folder), ["a.npz"])
        self.assertAllEqual(np.load(path)["x"], [0, 1, 2])
        # The permissions open() gives, not mkstemp's owner-only 0600.
        reference = os.path.join(folder, "reference")
        open(reference, "w").close()
        self.assertEqual(_mode(path), _mode(reference))

    def test_a_failed_write_keeps_the_old_file_and_no_temporary(self):
        folder = self.create_tempdir().full_path
        path = files.write_text(os.path.join(folder, "t.md"), "old\n")
        with self.assertRaisesRegex(RuntimeError, "killed"):
            with files.atomic_path(path) as tmp:
                with open(tmp, "w") as f:
                    f.write("half a ta")
                raise RuntimeError("killed")
        with open(path) as f:
            self.assertEqual(f.read(), "old\n")
        self.assertEqual(os.listdir(folder), ["t.md"])

    def test_json_of_numpy_values_with_sorted_keys(self):
        path = os.path.join(self.create_tempdir().full_path, "m.json")
        files.write_json(path, {"b": np.float32(1.5), "a": np.arange(2), 3: (np.int64(4),)})
        with open(path) as f:
            self.assertEqual(
                f.read(),
                '{\n  "3": [\n    4\n  ],\n  "a": [\n    0,\n    1\n  ],' '\n  "b": 1.5\n}\n',
            )


class CheckWritableTest(tf.test.TestCase):
    def test_makes_the_folder_or_names_the_flag(self):
        root = self.create_tempdir().full_path
        files.check_writable(os.path.join(root, "new", "out"))
        self.assertEqual(os.listdir(os.path.join(root, "new", "out")), [])  # the probe went
        blocker = os.path.join(root, "file")
        open(blocker, "w").close()
        with self.assertRaisesRegex(ValueError, r"^--out .*/file/sub: not writable \("):
            files.check_writable(os.path.join(blocker, "sub"), flag="out")


if __name__ == "__main__":
    tf.test.main()
