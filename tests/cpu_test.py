"""resnet_keras.cpu: CPU flags from a fake /proc/cpuinfo or the override
variable, and the oneDNN default, decided on fake environments.

The subprocess tests check the order that matters: `scripts.common` sets the
switch before TensorFlow reads it, and `resnet_keras.cpu` imports no TensorFlow.
"""

import os
import platform
import subprocess
import sys
import textwrap

import tensorflow as tf

from resnet_keras import cpu
from tests import fixtures

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CPUINFO = textwrap.dedent("""\
    processor\t: 0
    vendor_id\t: GenuineIntel
    model name\t: Intel(R) Xeon(R) Platinum 8488C
    flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni amx_bf16 amx_tile
    vmx flags\t: vnmi preemption_timer
    bugs\t\t: spectre_v1

    processor\t: 1
    flags\t\t: fpu sse2
""")


class CpuinfoTestCase(tf.test.TestCase):
    def write(self, text):
        """A cpuinfo file holding `text`."""
        path = os.path.join(self.create_tempdir().full_path, "cpuinfo")
        with open(path, "w") as f:
            f.write(text)
        return path


class FlagsTest(CpuinfoTestCase):
    def test_first_flags_line_of_the_file(self):
        flags = cpu.cpu_flags(self.write(CPUINFO), environ={})
        self.assertEqual(
            flags,
            {"fpu", "sse2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "amx_bf16", "amx_tile"},
        )
        self.assertTrue(cpu.native_bfloat16(flags))
        self.assertEqual(cpu.reported_flags(flags), "avx2,avx512f,amx_bf16,avx512_vnni")

    def test_no_file_or_no_flags_line_answers_no(self):
        missing = os.path.join(self.create_tempdir().full_path, "absent")
        self.assertEqual(cpu.cpu_flags(missing, environ={}), frozenset())
        arm = self.write("processor\t: 0\nFeatures\t: fp asimd bf16\n")  # aarch64 names them so
        self.assertEqual(cpu.cpu_flags(arm, environ={}), frozenset())
        self.assertFalse(cpu.native_bfloat16(frozenset()))
        self.assertEqual(cpu.reported_flags(frozenset()), "none")

    def test_model_name_from_the_same_file(self):
        # One reader of /proc/cpuinfo: the flags and the name the run records give.
        self.assertEqual(cpu.cpu_model(self.write(CPUINFO)), "Intel(R) Xeon(R) Platinum 8488C")
        missing = os.path.join(self.create_tempdir().full_path, "absent")
        self.assertEqual(cpu.cpu_model(missing), platform.processor() or platform.machine())

    def test_the_variable_replaces_the_file(self):
        path = self.write(CPUINFO)
        env = {cpu.FLAGS_VAR: "SSE4_2 avx  avx2 fma"}
        self.assertEqual(cpu.cpu_flags(path, environ=env), {"sse4_2", "avx", "avx2", "fma"})
        self.assertEqual(cpu.flags_source(env), cpu.FLAGS_VAR)
        # Empty means unset, as `VAR= command` clears a variable in a shell.
        self.assertIn("amx_bf16", cpu.cpu_flags(path, environ={cpu.FLAGS_VAR: " "}))
        self.assertEqual(cpu.flags_source({cpu.FLAGS_VAR: ""}), cpu.CPUINFO)

    def test_native_bfloat16_needs_avx512_bf16_or_amx_bf16(self):
        self.assertTrue(cpu.native_bfloat16({"avx2", "avx512f", "avx512_bf16"}))
        self.assertTrue(cpu.native_bfloat16({"avx2", "amx_bf16"}))
        # AVX-512 alone (Skylake-X, Ice Lake) converts bfloat16, it does not compute it.
        self.assertFalse(cpu.native_bfloat16({"avx2", "avx512f", "avx512_vnni"}))
        self.assertFalse(cpu.native_bfloat16(set(fixtures.AVX2_FLAGS.split())))


class OneDnnTest(CpuinfoTestCase):
    def test_set_to_on_when_the_user_has_not_chosen(self):
        env = {}
        self.assertTrue(cpu.default_onednn(env))
        self.assertEqual(env[cpu.ONEDNN_VAR], "1")
        self.assertEqual(cpu.onednn_state(env), "on(default-set)")
        self.assertFalse(cpu.default_onednn(env))  # a second call changes nothing
        self.assertEqual(env[cpu.ONEDNN_VAR], "1")

    def test_never_overrides_the_user(self):
        for value, state in [
            ("0", "off(user)"),
            ("false", "off(user)"),
            ("1", "on(user)"),
            ("True", "on(user)"),
        ]:
            env = {cpu.ONEDNN_VAR: value}
            self.assertFalse(cpu.default_onednn(env))
            self.assertEqual(env, {cpu.ONEDNN_VAR: value})
            self.assertEqual(cpu.onednn_state(env), state)

    def test_unset_is_what_tensorflow_decides_from_the_real_cpu(self):
        avx2 = self.write(f"flags\t\t: {fixtures.AVX2_FLAGS}\n")
        vnni = self.write(CPUINFO)
        self.assertEqual(cpu.onednn_state({}, path=avx2), "off(tf-default)")
        self.assertEqual(cpu.onednn_state({}, path=vnni), "on(tf-default)")
        # TensorFlow tests the real CPU: the override does not change its default.
        self.assertEqual(cpu.onednn_state({cpu.FLAGS_VAR: "avx2"}, path=vnni), "on(tf-default)")
        # Not a boolean: TensorFlow warns and keeps its default.
        self.assertEqual(
            cpu.onednn_state({cpu.ONEDNN_VAR: "yes"}, path=avx2), "off(tf-default,bad-value)"
        )


def python(code, **env):
    environ = {k: v for k, v in os.environ.items() if k not in (cpu.ONEDNN_VAR, cpu.ONEDNN_MARK)}
    environ.update(env, PYTHONPATH=ROOT, TF_CPP_MIN_LOG_LEVEL="3")
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return r


class ImportOrderTest(tf.test.TestCase):
    def test_cpu_imports_no_tensorflow(self):
        r = python("import sys, resnet_keras.cpu; print('tensorflow' in sys.modules)")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertEqual(r.stdout.strip(), "False")

    def test_scripts_common_sets_onednn_before_tensorflow_reads_it(self):
        code = textwrap.dedent("""\
            import os
            from scripts import common
            from tensorflow.python.util import _pywrap_util_port
            print(os.environ["TF_ENABLE_ONEDNN_OPTS"], _pywrap_util_port.IsMklEnabled())
        """)
        r = python(code)
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertEqual(r.stdout.split()[-2:], ["1", "True"])
        # The user's "0" stays, and TensorFlow sees it.
        r = python(code, TF_ENABLE_ONEDNN_OPTS="0")
        self.assertEqual(r.returncode, 0, r.stderr[-3000:])
        self.assertEqual(r.stdout.split()[-2:], ["0", "False"])


if __name__ == "__main__":
    tf.test.main()
