"""How sure a result is: intervals for an accuracy, paired tests for two models.

Two models tested on the same images are compared image by image (a paired
test), not by their two accuracies: most images both get right or both get
wrong, and only the images where they disagree carry evidence.

    lo, hi = accuracy_interval(8625, 10000)          # exact 95 % interval
    m = mcnemar(y_true, pred_a, pred_b)              # who is right where the other is wrong
    m["p_value"], m["a_only"], m["b_only"]
    t = paired_t(acc_a_by_seed, acc_b_by_seed)     # across seeds: does the gap exceed seed spread?

Exact binomial arithmetic in NumPy (no SciPy): the log-probabilities of all
outcomes come from one table of log factorials, so a test set of 10,000
images costs milliseconds.
"""

import math

import numpy as np


def _log_factorials(n):
    return np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, n + 1)))])


def binom_cdf(k, n, p):
    """P(X <= k) for X ~ Binomial(n, p), exactly (summed in log space)."""
    if k < 0:
        return 0.0
    if k >= n:
        return 1.0
    if p <= 0:
        return 1.0
    if p >= 1:
        return 0.0
    lf = _log_factorials(n)
    i = np.arange(0, k + 1)
    logpmf = lf[n] - lf[i] - lf[n - i] + i * math.log(p) + (n - i) * math.log1p(-p)
    top = logpmf.max()
    return float(min(1.0, math.exp(top) * np.exp(logpmf - top).sum()))


def _solve(f, target, lo=0.0, hi=1.0, iterations=100):
    """The p in [lo, hi] where the decreasing function f(p) crosses target."""
    for _ in range(iterations):
        mid = (lo + hi) / 2
        if f(mid) > target:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def accuracy_interval(correct, total, level=0.95):
    """The exact (Clopper-Pearson) interval of a proportion: `correct` of
    `total` test images right. Returns (low, high) as fractions."""
    if not 0 <= correct <= total or total <= 0:
        raise ValueError(f"need 0 <= correct <= total and total > 0; got {correct} of {total}")
    alpha = 1 - level

    # low: the p at which `correct` or more right has probability alpha/2
    # (that probability grows with p, hence the sign); high: the p at which
    # `correct` or fewer has probability alpha/2.
    def at_least(p):
        return -(1 - binom_cdf(correct - 1, total, p))

    low = 0.0 if correct == 0 else _solve(at_least, -alpha / 2)
    high = 1.0 if correct == total else _solve(lambda p: binom_cdf(correct, total, p), alpha / 2)
    return low, high


def mcnemar(y_true, pred_a, pred_b):
    """The exact McNemar test of two classifiers on the same test images.

    Returns a dict: `a_only` (images A gets right and B wrong), `b_only`
    (the reverse), `both`, `neither`, `p_value` (exact two-sided binomial test
    of a_only against b_only at 1/2) and `z` ((a_only - b_only) / sqrt(sum),
    the normal approximation's statistic; 0 when they never disagree).
    """
    y_true, pred_a, pred_b = (np.asarray(v).reshape(-1) for v in (y_true, pred_a, pred_b))
    if not len(y_true) == len(pred_a) == len(pred_b):
        raise ValueError(
            f"the two models were not tested on the same images "
            f"({len(y_true)} labels, {len(pred_a)} and {len(pred_b)} predictions)"
        )
    ra, rb = pred_a == y_true, pred_b == y_true
    b, c = int(np.sum(ra & ~rb)), int(np.sum(~ra & rb))
    n = b + c
    p = _two_sided(b, c)
    return {
        "a_only": b,
        "b_only": c,
        "both": int(np.sum(ra & rb)),
        "neither": int(np.sum(~ra & ~rb)),
        "p_value": p,
        "z": 0.0 if n == 0 else (b - c) / math.sqrt(n),
    }


def _two_sided(b, c):
    """The exact two-sided binomial p of counts b against c at 1/2 (1 for none)."""
    n = b + c
    return 1.0 if n == 0 else min(1.0, 2 * binom_cdf(min(b, c), n, 0.5))


def sign_test(a, b):
    """The exact sign test of paired values (per-image scores of two models on
    the same images): `above` (a > b), `below` (a < b), `ties` (dropped) and
    `p_value`, the two-sided binomial test of above against below at 1/2 (the
    same arithmetic as `mcnemar`'s, for scores instead of right or wrong)."""
    a, b = (np.asarray(v, dtype=float).reshape(-1) for v in (a, b))
    if len(a) != len(b):
        raise ValueError(f"a sign test needs paired values; got {len(a)} and {len(b)}")
    if np.isnan(a).any() or np.isnan(b).any():
        raise ValueError("a sign test needs values to compare; got NaN")
    above, below = int(np.sum(a > b)), int(np.sum(a < b))
    return {
        "above": above,
        "below": below,
        "ties": len(a) - above - below,
        "p_value": _two_sided(above, below),
    }


def mean_sd(values):
    """(mean, sample standard deviation) of the values; sd is None for one value."""
    v = np.asarray(values, dtype=float)
    if v.size == 0:
        raise ValueError("no values")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else None)


def _betacf(a, b, x, iterations=300):
    """The continued fraction of the incomplete beta function (modified
    Lentz), which converges fast for x < (a + 1) / (a + b + 2)."""
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, iterations + 1):
        for num in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def beta_inc(a, b, x):
    """The regularized incomplete beta function I_x(a, b), for a, b > 0."""
    if not 0 <= x <= 1:
        raise ValueError(f"x must be in [0, 1]; got {x}")
    if x in (0, 1):
        return float(x)
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    # The fraction converges on one side of the mean; the other side by symmetry.
    if x < (a + 1) / (a + b + 2):
        return math.exp(log_front) * _betacf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _betacf(b, a, 1 - x) / b


def t_two_sided(t, df):
    """The two-sided p of Student's t statistic with df degrees of freedom."""
    return beta_inc(df / 2, 0.5, df / (df + t * t))


def paired_t(a, b):
    """The paired t-test of two models' scores matched by seed (a[i] and b[i]
    from the same seed): does the mean difference a - b exceed its spread?

    Returns a dict: `n` pairs, `mean` and `sd` of the differences, `t`, `df`
    and `p_value` (two-sided). With few seeds it is the honest question, not
    a powerful one: three pairs need t > 4.30 for p < 0.05."""
    a, b = (np.asarray(v, dtype=float).reshape(-1) for v in (a, b))
    if len(a) != len(b):
        raise ValueError(f"a paired t-test needs values matched by seed; got {len(a)} and {len(b)}")
    if len(a) < 2:
        raise ValueError(f"a paired t-test needs two or more pairs; got {len(a)}")
    d = a - b
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    df = len(d) - 1
    if sd == 0:
        t, p = (0.0, 1.0) if mean == 0 else (math.copysign(math.inf, mean), 0.0)
    else:
        t = mean / (sd / math.sqrt(len(d)))
        p = t_two_sided(t, df)
    return {"n": len(d), "mean": mean, "sd": sd, "t": t, "df": df, "p_value": p}


def interval_text(correct, total):
    """ "85.76-86.93": the 95 % interval in percent, for a table cell."""
    lo, hi = accuracy_interval(correct, total)
    return f"{100 * lo:.2f}-{100 * hi:.2f}"


def interval_of(y_true, y_pred):
    """`interval_text` of a model's predicted classes against the labels."""
    y_true, y_pred = (np.asarray(v).reshape(-1) for v in (y_true, y_pred))
    return interval_text(int(np.sum(y_pred == y_true)), len(y_true))


def mcnemar_header(who="", images="test images"):
    """The sentence that opens a table's list of `comparison_text` lines."""
    two = f"the two {who}".strip()
    return (
        f"Paired tests on the {images} (exact McNemar: of the images exactly one of "
        f"{two} gets right, how many each gets; p is two-sided)"
    )


def p_text(p):
    """A p value for a table: 3 significant digits; below 1e-300 (where the
    exact p nears float64's smallest and then underflows to 0) "< 1e-300"."""
    return "< 1e-300" if p < 1e-300 else f"{p:.3g}"


def p_equals(p):
    """ "= 0.0414", or "< 1e-300": a p value after "p" in a sentence."""
    text = p_text(p)
    return text if text.startswith("<") else f"= {text}"


def comparison_text(name_a, name_b, test):
    """One line for a paired comparison, as the result tables print it."""
    p = p_equals(test["p_value"])
    return (
        f"{name_a} vs {name_b}: {name_a} alone right on {test['a_only']} images, "
        f"{name_b} alone on {test['b_only']} (exact McNemar p {p}, "
        f"z = {test['z']:.2f})"
    )
