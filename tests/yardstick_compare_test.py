"""benchmarks/yardstick_compare.py on a constructed yardstick log and project runs."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "benchmarks", "yardstick_compare.py")

RECORD = {
    "argv": ["python", "benchmarks/torch_recipe.py", "D", "--align"],
    "torch": "2.13.0+cpu",
    "python": "3.12.3",
    "cpu_flags": "avx2,avx512f",
    "kernel_env": {},
    "started_utc": "2026-12-08T02:20:00Z",
    "train_images": 45,
    "val_images": 5,
    "options": {"decay": "kernels", "init": "keras"},
}


def write_log(path, y_true, y_pred, epochs=3, record=None, **npz):
    # The lines torch_recipe.py prints; epoch 1 twice, as after a kill
    # between its line and its checkpoint (the later line is the one kept).
    with open(path, "w") as f:
        print(f"# {json.dumps(record or RECORD)}", file=f)
        for ep in range(1, epochs + 1):
            if ep == 1:
                print(
                    "epoch 1/3 train_acc=0.1000 val_acc=0.1000 val_loss=2.0000 "
                    "test_acc=0.1000 test_loss=2.0000 minutes=0.5",
                    file=f,
                )
                print(f"# resumed: {json.dumps(RECORD)}", file=f)
            print(
                f"epoch {ep}/{epochs} train_acc={0.3 * ep:.4f} val_acc={0.2 * ep:.4f} "
                f"val_loss=1.0000 test_acc={0.25 * ep:.4f} test_loss=1.0000 minutes={ep:.1f}",
                file=f,
            )
        print(
            "final last=0.7000 best=0.8000 best_test_loss=0.5000 best_epoch=3 "
            "best_val_acc=0.6000",
            file=f,
        )
    np.savez_compressed(path + ".best_predictions.npz", y_true=y_true, y_pred=y_pred, **npz)


def write_run(path, y_true, y_pred, acc, commit="abc1234"):
    os.makedirs(path)
    inv = [{"git_commit": commit}] if commit else []
    with open(os.path.join(path, "flags.json"), "w") as f:
        json.dump({"seed": 0, "val_images": 5} | ({"invocations": inv} if commit else {}), f)
    with open(os.path.join(path, "metrics.json"), "w") as f:
        json.dump(
            {
                "test_accuracy": acc,
                "best_epoch": 3,
                "best_val_accuracy": 0.5,
                "hardware": "2 cores",
            },
            f,
        )
    with open(os.path.join(path, "log.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "accuracy", "val_accuracy"])
        for ep in range(3):
            w.writerow([ep, 0.31 * (ep + 1), 0.21 * (ep + 1)])
    np.savez(os.path.join(path, "test_predictions.npz"), y_true=y_true, y_pred=y_pred)


class YardstickCompareTest(tf.test.TestCase):
    def run_script(self, *args):
        return subprocess.run(
            [sys.executable, SCRIPT, *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": ROOT},
        )

    def test_report_pairs_the_runs_and_names_the_records(self):
        tmp = self.get_temp_dir()
        y = np.repeat(np.arange(10), 10)
        torch_pred = np.where(np.arange(100) < 80, y, (y + 1) % 10)  # 80 right
        project = np.where(np.arange(100) < 85, y, (y + 1) % 10)  # 85 right, 5 of them alone
        log = os.path.join(tmp, "y.log")
        write_log(log, y, torch_pred)
        write_run(os.path.join(tmp, "resnet-20"), y, project, 0.85)
        write_run(os.path.join(tmp, "resnet-20-seed1"), y, project, 0.87, commit=None)
        r = self.run_script(
            log, os.path.join(tmp, "resnet-20"), os.path.join(tmp, "resnet-20-seed1")
        )
        self.assertEqual(r.returncode, 0, r.stderr)
        out = r.stdout
        self.assertIn("| test accuracy % (95 % interval) | 85.00 (", out)
        self.assertIn("| 80.00 (", out)
        self.assertIn("| 70.00 (", out)  # the last epoch, from the final line
        self.assertIn(
            "resnet-20 alone right on 5 images, yardstick (best validation) alone on 0", out
        )
        self.assertIn("86.00 +- 1.41 %", out)  # the two project seeds
        self.assertIn("| 1 | 31.00 / 21.00 | 30.00 / 20.00 (25.00) |", out)  # the kept line
        self.assertIn("| 3 | 93.00 / 63.00 | 90.00 / 60.00 (75.00) |", out)  # the last epoch
        self.assertIn("2 start(s)", out)  # the first record and the resumed one
        self.assertIn("resnet-20: 2 cores; commit abc1234, 1 start(s).", out)
        self.assertIn("resnet-20-seed1: 2 cores; command line and commit not recorded.", out)

    def test_other_test_images_or_missing_files_are_one_line_and_status_2(self):
        tmp = self.get_temp_dir()
        y = np.repeat(np.arange(10), 10)
        log = os.path.join(tmp, "y.log")
        write_log(log, y, y)
        write_run(os.path.join(tmp, "other"), np.roll(y, 1), y, 0.9)
        r = self.run_script(log, os.path.join(tmp, "other"))
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, r"^error: other and the yardstick were not tested on the same")
        self.assertEqual(len(r.stderr.strip().splitlines()), 1)
        r = self.run_script(log, os.path.join(tmp, "missing"))
        self.assertEqual(r.returncode, 2)
        self.assertRegex(r.stderr, r"^error: .*missing/flags.json: no such file")
        unfinished = os.path.join(tmp, "unfinished.log")
        with open(unfinished, "w") as f:
            print(f"# {json.dumps(RECORD)}", file=f)
        np.savez(unfinished + ".best_predictions.npz", y_true=y, y_pred=y)
        r = self.run_script(unfinished, os.path.join(tmp, "other"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("not a torch_recipe.py log (no run record or no epoch line)", r.stderr)

    def test_the_same_image_files_and_held_out_images_are_checked(self):
        tmp = self.get_temp_dir()
        data = os.path.join(tmp, "data")
        names = []
        for c in ("cat", "dog"):
            os.makedirs(os.path.join(data, "test", c))
            for i in range(3):
                open(os.path.join(data, "test", c, f"{i:04d}.jpg"), "wb").close()
                names.append(f"test/{c}/{i:04d}.jpg")
        y = np.repeat([0, 1], 3)
        write_run(os.path.join(tmp, "run"), y, y, 1.0)
        split = os.path.join(tmp, "split.npz")
        np.savez(split, seed=0, val_size=5)
        record = RECORD | {"data_dir": data, "argv": ["python", "t.py", "--split", split]}
        log = os.path.join(tmp, "y.log")
        write_log(log, y, y, record=record, test_files=np.array(names))
        self.assertEqual(self.run_script(log, os.path.join(tmp, "run")).returncode, 0)
        # The same labels, the files in another order: refused.
        write_log(log, y, y, record=record, test_files=np.array(names[::-1][3:] + names[3:]))
        r = self.run_script(log, os.path.join(tmp, "run"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("not tested on the same image files in the same order", r.stderr)
        # The run held out other images than the yardstick's split.
        np.savez(split, seed=1, val_size=5)
        write_log(log, y, y, record=record, test_files=np.array(names))
        r = self.run_script(log, os.path.join(tmp, "run"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("held out other training images than the yardstick's", r.stderr)
        # A log the yardstick wrote without --split has no final line.
        with open(log, "w") as f:
            print(f"# {json.dumps(RECORD)}", file=f)
            print("epoch 1/1 train_acc=0.1 test_acc=0.1 test_loss=2.0 minutes=0.1", file=f)
        r = self.run_script(log, os.path.join(tmp, "run"))
        self.assertEqual(r.returncode, 2)
        self.assertIn("no final line", r.stderr)


if __name__ == "__main__":
    tf.test.main()
