"""Intervals calibrated by toys (jaxcr.inference.neyman) against the exact Feldman-Cousins
construction for a Gaussian mean bounded below (Feldman & Cousins 1998), computed here from the
analytic distribution of the likelihood ratio."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import optimize, stats

from jaxcr.inference.fit import FitOptions, maximise_likelihood
from jaxcr.inference.likelihood import AbstractLikelihood
from jaxcr.inference.neyman import (
    LEVEL_PROBABILITIES,
    NeymanCalibration,
    calibrated_interval,
    critical_values,
    likelihood_ratios,
)
from jaxcr.parametrisation import Parameter, Parametrisation, Transform

N_DATA = 4  # y_i ~ N(μ, N_DATA): the mean ȳ ~ N(μ, 1), so μ is in units of its own σ
HIGH = 6.0  # the box is 0 ≤ μ ≤ HIGH (the upper edge 6σ from the truths used: it plays no part)


class BoundedMean(AbstractLikelihood):
    """y_i ~ N(μ, N_DATA), μ ≥ 0: the textbook case of an estimate cut by a physical boundary."""

    y: jax.Array
    names: tuple[str, ...] = eqx.field(static=True)

    def data(self):
        return self.y

    def with_data(self, y):
        return BoundedMean(y=y, names=self.names)

    def moments(self, phi):
        return jnp.full(N_DATA, phi[0]), N_DATA * jnp.eye(N_DATA)

    def box_excess(self, phi):
        return jnp.maximum(-phi[0], 0.0) ** 2 + jnp.maximum(phi[0] - HIGH, 0.0) ** 2


def exact_cdf(mu: float, c: float) -> float:
    """P(t ≤ c) at the true μ, for t = (z − μ)² − (z − max(z, 0))², z ~ N(μ, 1): t = (z − μ)²
    where z ≥ 0 and μ² − 2μz where z < 0 (so t ≤ c there where z ≥ (μ² − c)/2μ)."""
    r = np.sqrt(max(c, 0.0))
    cdf = lambda z: stats.norm.cdf(z - mu)  # of z ~ N(μ, 1)
    above = cdf(mu + r) - cdf(max(mu - r, 0.0))
    below = 0.5 if mu == 0.0 else max(cdf(0.0) - cdf((mu**2 - c) / (2 * mu)), 0.0)
    return float(above + below)


def exact_critical_value(mu: float, probability: float) -> float:
    """c with P(t ≤ c) = probability at the true μ."""
    return float(optimize.brentq(lambda c: exact_cdf(mu, c) - probability, 1e-12, 50.0))


def exact_interval(observed: float, probability: float) -> tuple[float, float]:
    """The Feldman-Cousins interval of μ ≥ 0 for the observed mean: where t_obs(μ) ≤ c(μ)."""
    mu = np.linspace(0.0, 4.0, 4001)
    best = max(observed, 0.0)
    t_obs = (observed - mu) ** 2 - (observed - best) ** 2
    accepted = mu[t_obs <= np.array([exact_critical_value(m, probability) for m in mu])]
    return float(accepted.min()), float(accepted.max())


def test_exact_critical_values_reduce_to_the_gaussian_ones_far_from_the_boundary():
    """The reference itself: far from μ = 0 the critical values are 1 and 4 (χ²₁), at μ = 0 the
    half-χ² mixture's Φ⁻¹(p)² (0.226 and 2.86)."""
    for level, p in LEVEL_PROBABILITIES.items():
        far = {"68": 1.0, "95": 4.0}[level]
        assert exact_critical_value(5.0, p) == pytest.approx(far, rel=1e-6)
        assert exact_critical_value(0.0, p) == pytest.approx(stats.norm.ppf(p) ** 2, rel=1e-6)


def test_critical_values_from_toys_equal_the_exact_ones():
    """c_68 and c_95 from 2000 toys at μ = 0, 0.6, 1.2, 2.4 against the analytic distribution of t,
    within 4 standard errors of a sample quantile (SE = √(p(1−p)/N)/f(c), f the density of t at c,
    by finite differences of the exact CDF) plus 2 % for the optimiser's tolerance."""
    mu = np.array([0.0, 0.6, 1.2, 2.4])
    like = BoundedMean(y=jnp.zeros(N_DATA), names=("mu",))
    calibration = NeymanCalibration(toys=2000, points=len(mu), seed=3)
    got = critical_values(like, 0, mu, mu[:, None], np.array([0.5]), calibration)
    assert np.allclose(got["at"], mu)
    toys = calibration.toys
    for level, p in LEVEL_PROBABILITIES.items():
        for m, c in zip(mu, got[level]):
            exact = exact_critical_value(m, p)
            h = 1e-3 * max(exact, 0.1)
            density = (exact_cdf(m, exact + h) - exact_cdf(m, exact - h)) / (2 * h)  # f(c) of t
            se = np.sqrt(p * (1 - p) / toys) / density
            assert abs(c - exact) < 4 * se + 0.02 * exact, (level, m, c, exact, se)


def test_another_seed_reuses_the_compiled_toy_program_and_draws_other_toys():
    """The seed enters the toy program as a key (data), not as a static argument: critical values
    with seeds 5 and 6 compile the program once (the jitted function's cache holds one entry more
    after both, not two; a recompilation costs seconds per fit) and differ (other toys)."""
    like = BoundedMean(y=jnp.zeros(N_DATA), names=("mu",))
    mu = np.array([0.0, 1.0, 2.0])
    cache = likelihood_ratios._cached  # the jax.jit beneath equinox's filter_jit
    before = cache._cache_size()
    got = [
        critical_values(like, 0, mu, mu[:, None], np.array([0.5]), NeymanCalibration(toys=51, points=3, seed=seed))
        for seed in (5, 6)
    ]
    assert cache._cache_size() == before + 1
    assert got[0]["seed"] == 5 and got[1]["seed"] == 6 and not np.allclose(got[0]["68"], got[1]["68"])


# ȳ = −0.8 (the estimate on the boundary, where the two constructions differ) in the default run;
# the interior values, 12 s each on 2 cores, in the slow one
@pytest.mark.parametrize(
    "observed", [-0.8, pytest.param(0.3, marks=pytest.mark.slow), pytest.param(1.5, marks=pytest.mark.slow)]
)
def test_calibrated_intervals_equal_the_feldman_cousins_intervals(observed):
    """The fit driver with calibrated intervals on ȳ = −0.8, 0.3, 1.5 (σ units): the 68 % and 95 %
    intervals equal the exact Feldman-Cousins ones within 0.12σ and 0.25σ (c from 600 toys at 13
    values 0.5σ apart, interpolated linearly: its sampling and interpolation errors shift an end by
    about (δc)/|dΔ/dμ|; measured with two seeds and 9 or 13 values: at most 0.10σ and 0.10σ), and
    the plain profile interval, which ignores the
    boundary, is longer where the estimate sits on it (ȳ < 0: by 0.07-0.11σ here)."""
    y = jnp.full(N_DATA, observed)
    params = Parametrisation((Parameter("mu", 0.0, HIGH, Transform.LINEAR),))
    calibrated = FitOptions(profile_points=97, calibration=NeymanCalibration(toys=600, points=13, seed=1))
    fit = maximise_likelihood(BoundedMean(y=y, names=("mu",)), params, np.array([[0.5], [3.0]]), calibrated)
    plain = maximise_likelihood(
        BoundedMean(y=y, names=("mu",)), params, np.array([[0.5], [3.0]]), FitOptions(profile_points=97)
    )
    for level, tol in (("68", 0.12), ("95", 0.25)):
        lo, hi, closed_lo, closed_hi = fit.intervals["mu"][level]
        exact_lo, exact_hi = exact_interval(observed, LEVEL_PROBABILITIES[level])
        assert closed_hi and (closed_lo == (exact_lo > 0))
        assert lo == pytest.approx(exact_lo, abs=tol) and hi == pytest.approx(exact_hi, abs=tol), (level, lo, hi)
        if observed < 0:  # the plain profile interval is [0, ȳ + √(ȳ² + Δ)], longer than the exact one
            delta = {"68": 1.0, "95": 4.0}[level]
            plain_hi = observed + np.sqrt(observed**2 + delta)
            assert plain.intervals["mu"][level][1] == pytest.approx(plain_hi, abs=0.01) and exact_hi < plain_hi - 0.05
    assert fit.profiles["mu"]["calibration"]["toys"] == 600
    assert len(fit.profiles["mu"]["critical_68"]) == 97


def test_calibrated_interval_takes_the_span_of_the_accepted_values_and_marks_open_ends():
    """Hand-made profile and critical values: the ends interpolate where Δ − c crosses 0; an
    accepted axis end is open; an accepted island away from the best fit widens the span (the
    acceptance region of the Neyman construction need not be connected)."""
    x = np.linspace(0.0, 4.0, 5)
    assert calibrated_interval(x, [0.0, 0.5, 2.0, 5.0, 9.0], [1.0] * 5) == pytest.approx((0.0, 4 / 3, False, True))
    assert calibrated_interval(x, [0.0, 0.5, 3.0, 0.5, 3.0], [1.0] * 5) == pytest.approx((0.0, 3.2, False, True))
    lo, hi, c_lo, c_hi = calibrated_interval(x, [3.0, 0.5, 0.0, 0.5, 3.0], [1.0, 1.0, 1.0, 1.0, 4.0])
    assert (lo, c_lo, c_hi) == (pytest.approx(0.8), True, False) and hi == 4.0
