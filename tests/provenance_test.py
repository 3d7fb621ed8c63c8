"""The run record: command line, commit, versions, CPU, and the run's wall time."""

import json
import os
import subprocess
import sys
from unittest import mock

import tensorflow as tf

from resnet_keras.run import provenance


class ProvenanceTest(tf.test.TestCase):
    def test_invocation_names_command_commit_versions_and_cpu(self):
        with mock.patch.object(
            sys, "orig_argv", ["/usr/bin/python3.11", "-m", "scripts.question1", "--epochs", "2"]
        ):
            record = provenance.invocation()
        self.assertEqual(record["argv"], ["python", "-m", "scripts.question1", "--epochs", "2"])
        self.assertEqual(record["versions"]["tensorflow"], tf.__version__)
        self.assertIn("keras", record["versions"])
        self.assertEqual(record["cores"], os.cpu_count())
        self.assertRegex(record["started_utc"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        for key in ("cpu", "cpu_flags", "onednn", "kernel_env", "cwd"):
            self.assertIn(key, record)
        head = subprocess.run(
            ["git", "-C", provenance._ROOT, "rev-parse", "HEAD"], capture_output=True, text=True
        )
        if head.returncode == 0:  # a git checkout, as CI's clone is
            self.assertEqual(record["git_commit"], head.stdout.strip())
            self.assertIsInstance(record["git_dirty"], bool)
            status = subprocess.run(
                ["git", "-C", provenance._ROOT, "status", "--porcelain", "--untracked-files=no"],
                capture_output=True,
                text=True,
            ).stdout.splitlines()
            self.assertEqual(record["git_changed_files"], [line[3:] for line in status])

    def test_no_git_checkout_records_none(self):
        self.assertEqual(provenance.git_state(self.create_tempdir().full_path), (None, None))

    def test_a_dirty_tree_names_its_changed_files(self):
        root = self.create_tempdir().full_path

        def git(*args):
            subprocess.run(["git", "-C", root, *args], check=True, capture_output=True)

        git("init", "-q")
        for name in ("code.py", "table.md"):
            with open(os.path.join(root, name), "w") as f:
                f.write("first\n")
        git("add", ".")
        git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "first")
        commit, changed = provenance.git_changes(root)
        self.assertEqual((len(commit), changed), (40, []))
        self.assertEqual(provenance.git_state(root), (commit, False))
        with open(os.path.join(root, "table.md"), "a") as f:
            f.write("a row a command published\n")
        with open(os.path.join(root, "new.txt"), "w") as f:
            f.write("untracked: not code that ran\n")
        self.assertEqual(provenance.git_changes(root), (commit, ["table.md"]))
        self.assertEqual(provenance.git_state(root), (commit, True))

    def test_the_kernel_variables_are_recorded(self):
        with mock.patch.dict(os.environ, {"ONEDNN_MAX_CPU_ISA": "AVX2"}):
            self.assertEqual(provenance.invocation()["kernel_env"]["ONEDNN_MAX_CPU_ISA"], "AVX2")

    def test_resumes_append_and_wall_time_counts_from_the_first_start(self):
        first = provenance.add_invocation({})
        self.assertLen(first, 1)
        both = provenance.add_invocation({"invocations": first})
        self.assertLen(both, 2)
        self.assertEqual(both[0], first[0])
        flags = {"invocations": [{"started_utc": "2026-12-05T10:00:00Z"}, {}]}
        timing = provenance.timing(flags, finished="2026-12-05T12:30:05Z")
        self.assertEqual(timing["wall_time_s"], 2.5 * 3600 + 5)
        self.assertEqual(timing["started_utc"], "2026-12-05T10:00:00Z")
        # A run record from before the field: no wall time is made up.
        self.assertNotIn("wall_time_s", provenance.timing({}, finished="2026-12-05T12:30:05Z"))
        self.assertEqual(provenance.add_invocation({"invocations": "garbage"})[0]["argv"][0:0], [])
        json.dumps(both)  # what flags.json holds


if __name__ == "__main__":
    tf.test.main()
