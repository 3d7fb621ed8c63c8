"""Intervals and paired tests against answers known from the literature and by hand."""

import numpy as np
import tensorflow as tf

from resnet_keras import stats


class IntervalTest(tf.test.TestCase):
    def test_clopper_pearson_known_values(self):
        # Clopper and Pearson's exact interval; published values (e.g. R's binom.test).
        lo, hi = stats.accuracy_interval(5, 10)
        self.assertAllClose((lo, hi), (0.187086, 0.812914), atol=1e-6)
        lo, hi = stats.accuracy_interval(0, 10)
        self.assertAllClose((lo, hi), (0.0, 0.308497), atol=1e-6)
        lo, hi = stats.accuracy_interval(10, 10)
        self.assertAllClose((lo, hi), (0.691503, 1.0), atol=1e-6)
        # No successes: the upper end has the closed form 1 - (alpha / 2) ** (1 / n).
        self.assertAlmostEqual(stats.accuracy_interval(0, 10000)[1], 1 - 0.025 ** (1 / 10000))
        # The defining property at a test set's size: each tail holds 2.5 %.
        lo, hi = stats.accuracy_interval(8625, 10000)
        self.assertAlmostEqual(1 - stats.binom_cdf(8624, 10000, lo), 0.025, places=6)
        self.assertAlmostEqual(stats.binom_cdf(8625, 10000, hi), 0.025, places=6)
        # A little wider than the normal approximation's 86.25 +- 0.675.
        self.assertLess(lo, 0.8625 - 1.96 * np.sqrt(0.8625 * 0.1375 / 10000))
        self.assertEqual(stats.interval_text(8625, 10000), "85.56-86.92")

    def test_coverage_of_the_interval(self):
        # An exact interval covers the true p at least 95 % of the time.
        rng = np.random.default_rng(0)
        p, n = 0.3, 40
        hits = [
            lo <= p <= hi
            for lo, hi in (stats.accuracy_interval(int(k), n) for k in rng.binomial(n, p, 400))
        ]
        self.assertGreaterEqual(np.mean(hits), 0.95)

    def test_bad_counts_are_refused(self):
        for correct, total in ((11, 10), (-1, 10), (0, 0)):
            with self.assertRaisesRegex(ValueError, "correct <= total"):
                stats.accuracy_interval(correct, total)

    def test_binomial_cdf(self):
        self.assertAlmostEqual(stats.binom_cdf(2, 12, 0.5), 79 / 4096)
        self.assertEqual(stats.binom_cdf(-1, 5, 0.5), 0.0)
        self.assertEqual(stats.binom_cdf(5, 5, 0.3), 1.0)
        self.assertAlmostEqual(stats.binom_cdf(5000, 10000, 0.5), 0.503989, places=6)


class McNemarTest(tf.test.TestCase):
    def _case(self, a_only, b_only, both, neither):
        y = np.zeros(a_only + b_only + both + neither, int)
        a = np.concatenate([np.zeros(a_only), np.ones(b_only), np.zeros(both), np.ones(neither)])
        b = np.concatenate([np.ones(a_only), np.zeros(b_only), np.zeros(both), np.ones(neither)])
        return y, a.astype(int), b.astype(int)

    def test_exact_p_value_by_hand(self):
        # 10 against 2 discordant pairs: 2 * P(X <= 2; 12, 1/2) = 2 * 79 / 4096.
        m = stats.mcnemar(*self._case(10, 2, 50, 8))
        self.assertEqual((m["a_only"], m["b_only"], m["both"], m["neither"]), (10, 2, 50, 8))
        self.assertAlmostEqual(m["p_value"], 158 / 4096)
        self.assertAlmostEqual(m["z"], 8 / np.sqrt(12))

    def test_symmetric_and_no_disagreement(self):
        y, a, b = self._case(3, 7, 20, 5)
        self.assertAlmostEqual(stats.mcnemar(y, a, b)["p_value"], stats.mcnemar(y, b, a)["p_value"])
        self.assertEqual(stats.mcnemar(y, a, a)["p_value"], 1.0)
        self.assertEqual(stats.mcnemar(y, a, a)["z"], 0.0)
        # equal counts: the largest p, capped at 1
        self.assertEqual(stats.mcnemar(*self._case(5, 5, 1, 1))["p_value"], 1.0)

    def test_a_p_value_below_float64_is_said_as_a_bound(self):
        # 2 * 0.5**5000 underflows to 0: the line must not claim p = 0.
        m = stats.mcnemar(*self._case(5000, 0, 10, 10))
        self.assertEqual(m["p_value"], 0.0)
        self.assertIn("exact McNemar p < 1e-300,", stats.comparison_text("a", "b", m))
        m = stats.mcnemar(*self._case(10, 2, 50, 8))
        self.assertIn("exact McNemar p = 0.0386,", stats.comparison_text("a", "b", m))

    def test_sign_test_by_hand(self):
        # 3 above, 1 below, 1 tie dropped: 2 * P(X <= 1; 4, 1/2) = 2 * 5 / 16
        t = stats.sign_test([1, 2, 3, 4, 5], [0, 0, 0, 9, 5])
        self.assertEqual((t["above"], t["below"], t["ties"]), (3, 1, 1))
        self.assertAlmostEqual(t["p_value"], 10 / 16)
        # 10 against 2: the McNemar test's arithmetic (test_exact_p_value_by_hand)
        self.assertAlmostEqual(
            stats.sign_test([1] * 10 + [0] * 2, [0] * 10 + [1] * 2)["p_value"], 158 / 4096
        )
        self.assertEqual(stats.sign_test([1, 1], [1, 1])["p_value"], 1.0)
        with self.assertRaisesRegex(ValueError, "paired values"):
            stats.sign_test([1, 2], [1])
        with self.assertRaisesRegex(ValueError, "got NaN"):
            stats.sign_test([1, np.nan], [1, 2])
        # Near float64's smallest the p is said as a bound, as its underflow is.
        self.assertEqual([stats.p_text(p) for p in (4.55e-307, 0.0)], ["< 1e-300"] * 2)
        self.assertEqual(stats.p_text(2.09e-88), "2.09e-88")

    def test_different_test_sets_are_refused(self):
        with self.assertRaisesRegex(ValueError, "not tested on the same images"):
            stats.mcnemar([0, 1], [0, 1], [0])

    def test_mean_sd(self):
        self.assertEqual(stats.mean_sd([1, 2, 3]), (2.0, 1.0))
        self.assertEqual(stats.mean_sd([4]), (4.0, None))


class PairedTTest(tf.test.TestCase):
    def test_t_distribution_against_closed_forms_and_tables(self):
        # 1 df is the Cauchy distribution, 2 df has a closed form too; the
        # rest are the textbook table's critical values (two-sided 0.05, 0.01).
        for t in (0.1, 1.0, 3.0, 30.0):
            self.assertAllClose(stats.t_two_sided(t, 1), 1 - 2 * np.arctan(t) / np.pi, atol=1e-12)
            self.assertAllClose(stats.t_two_sided(t, 2), 1 - t / np.sqrt(2 + t * t), atol=1e-12)
        for t, df, p in ((12.706, 1, 0.05), (4.303, 2, 0.05), (2.228, 10, 0.05), (2.845, 20, 0.01)):
            self.assertAllClose(stats.t_two_sided(t, df), p, atol=2e-4)
        self.assertAllClose(stats.t_two_sided(1.959964, 10**7), 0.05, atol=1e-6)  # the normal's
        self.assertEqual(stats.t_two_sided(0.0, 5), 1.0)

    def test_incomplete_beta_by_hand(self):
        # I_x(1, 1) = x, I_x(2, 1) = x^2, I_x(a, b) = 1 - I_(1-x)(b, a)
        for x in (0.1, 0.5, 0.9):
            self.assertAllClose(stats.beta_inc(1, 1, x), x, atol=1e-14)
            self.assertAllClose(stats.beta_inc(2, 1, x), x * x, atol=1e-14)
            self.assertAllClose(stats.beta_inc(2.5, 0.5, x), 1 - stats.beta_inc(0.5, 2.5, 1 - x))
        with self.assertRaisesRegex(ValueError, "in \\[0, 1\\]"):
            stats.beta_inc(1, 1, 1.5)

    def test_paired_t_by_hand(self):
        # differences 1, 2, 3: mean 2, sd 1, t = 2 / (1 / sqrt 3) = 2 sqrt 3, 2 df
        t = stats.paired_t([3, 5, 7], [2, 3, 4])
        self.assertEqual((t["n"], t["df"], t["mean"], t["sd"]), (3, 2, 2.0, 1.0))
        self.assertAllClose(t["t"], 2 * np.sqrt(3))
        self.assertAllClose(t["p_value"], 1 - 2 * np.sqrt(3) / np.sqrt(2 + 12))
        # the sign follows a - b; the p does not
        u = stats.paired_t([2, 3, 4], [3, 5, 7])
        self.assertAllClose((u["t"], u["p_value"]), (-t["t"], t["p_value"]))
        # pairing matters: the same values unpaired-shuffled give another answer
        self.assertNotAllClose(stats.paired_t([3, 5, 7], [4, 2, 3])["p_value"], t["p_value"])

    def test_degenerate_and_bad_input(self):
        self.assertEqual(stats.paired_t([1, 2], [1, 2])["p_value"], 1.0)
        same_gap = stats.paired_t([2, 3], [1, 2])
        self.assertEqual((same_gap["t"], same_gap["p_value"]), (np.inf, 0.0))
        with self.assertRaisesRegex(ValueError, "matched by seed"):
            stats.paired_t([1, 2, 3], [1, 2])
        with self.assertRaisesRegex(ValueError, "two or more pairs"):
            stats.paired_t([1], [2])


if __name__ == "__main__":
    tf.test.main()
