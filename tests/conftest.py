"""pytest set-up: absl flags count as parsed, so tf.test's `create_tempdir`
(which reads --test_tmpdir) works under pytest as under `tf.test.main`, and
removes each test's temporary folder when the test ends.

Tests marked `slow` (the real-data variants of tests that also run on
fixtures) are left out by setup.cfg's `-m "not slow"`; `pytest -m ""` runs
everything, `pytest -m slow` only them.
"""

from absl import flags


def pytest_configure(config):
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def pytest_collection_modifyitems(config, items):
    # tf.test.TestCase.test_session is a deprecated helper, not a test; pytest
    # would collect and skip it once per class, burying the real skips.
    # Deselected, as the -m filter's are, so pytest's counts stay true.
    session = [item for item in items if item.name == "test_session"]
    if session:
        config.hook.pytest_deselected(items=session)
        items[:] = [item for item in items if item.name != "test_session"]
