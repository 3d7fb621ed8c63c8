"""pytest set-up: absl flags count as parsed, so tf.test's `create_tempdir`
(which reads --test_tmpdir) works under pytest as under `tf.test.main`, and
removes each test's temporary folder when the test ends."""

from absl import flags


def pytest_configure(config):
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()
