"""The multivariate Student-t likelihood of one sky (jaxcr.inference.tails): its value against
scipy, its toys, its goodness of fit, its Fisher matrix, the ν that describes a set of residuals,
and fits with it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats
from tests_support import THETA0, analytic_artifact, exact_skies

from jaxcr.inference import JointLikelihood, fisher_information, fit_sky, sky_likelihood
from jaxcr.inference.fit import goodness_of_fit
from jaxcr.inference.neyman import draw_toys
from jaxcr.inference.tails import dof_from_distances, draw, fisher_block, p_value, student_m2lnl
from jaxcr.parametrisation import plane_wave_parametrisation

BOX = plane_wave_parametrisation((0.3, 3.0), (0.04, 0.25))
AMPLITUDE = 1e-8


@pytest.fixture(scope="module")
def artifact():
    return analytic_artifact(BOX)


def _random_covariance(rng, n):
    a = rng.normal(size=(n, n))
    return a @ a.T / n + 0.5 * np.eye(n)


def test_student_value_is_scipys_multivariate_t_up_to_a_constant_in_nu():
    """−2 ln L of a t block (D², ln det Σ) against −2 × scipy's multivariate_t.logpdf with scale
    Σ(ν − 2)/ν: they differ by a constant of ν and n only, equal over five (y, Σ) pairs to 1e-9."""
    rng = np.random.default_rng(1)
    n, dof = 6, 3.7
    offsets = []
    for _ in range(5):
        cov, mean, y = _random_covariance(rng, n), rng.normal(size=n), rng.normal(size=n) * 3
        d2 = (y - mean) @ np.linalg.solve(cov, y - mean)
        ours = float(student_m2lnl(d2, np.linalg.slogdet(cov)[1], n, dof))
        offsets.append(ours + 2 * stats.multivariate_t.logpdf(y, mean, cov * (dof - 2) / dof, df=dof))
    assert np.ptp(offsets) < 1e-9


def test_t_toys_have_the_t_law_and_the_covariance():
    """40 000 toys of a t block (ν = 6, n = 5): D² ν/((ν − 2) n) follows F(n, ν) (Kolmogorov-Smirnov
    p > 1e-3) and the sample covariance is Σ to 5 % (its sampling error at ν = 6 is about 1 %); a
    Gaussian block's D² follows χ²_n."""
    rng = np.random.default_rng(2)
    n, dof = 5, 6.0
    cov, mean = _random_covariance(rng, n), rng.normal(size=n)
    y = np.asarray(draw(jnp.asarray(mean), jnp.asarray(cov), dof, jax.random.key(3), 40_000))
    d2 = np.einsum("ta,ab,tb->t", y - mean, np.linalg.inv(cov), y - mean)
    assert stats.kstest(d2 * dof / ((dof - 2) * n), stats.f(n, dof).cdf).pvalue > 1e-3
    assert np.cov(y.T) == pytest.approx(cov, rel=0.05, abs=0.05 * np.max(np.abs(cov)))
    g = np.asarray(draw(jnp.asarray(mean), jnp.asarray(cov), None, jax.random.key(4), 20_000))
    assert (
        stats.kstest(np.einsum("ta,ab,tb->t", g - mean, np.linalg.inv(cov), g - mean), stats.chi2(n).cdf).pvalue > 1e-3
    )


def test_p_values_of_linear_fits_of_t_data_are_uniform():
    """Data y = Xβ + t noise (ν = 4), β (2 parameters) fitted: with Σ fixed the t fit is the least-
    squares one, so the p-value of one t block (the F law) and of a t block beside a Gaussian one
    (Monte Carlo, 20 000 draws) are uniform over 400 data sets (KS p > 1e-3); the χ² p-value of the
    t data is not (it piles up near 0 and 1)."""
    rng = np.random.default_rng(5)
    n, m, dof = 8, 2, 4.0
    x = rng.normal(size=(n, m))
    cov = _random_covariance(rng, n)
    inv = np.linalg.inv(cov)
    keys = jax.random.split(jax.random.key(6), 2)
    noise = np.asarray(draw(jnp.zeros(n), jnp.asarray(cov), dof, keys[0], 400))
    gauss = np.asarray(draw(jnp.zeros(n), jnp.asarray(cov), None, keys[1], 400))

    def d2_min(y):  # generalised least squares residual
        beta = np.linalg.solve(x.T @ inv @ x, x.T @ inv @ y)
        return float((y - x @ beta) @ inv @ (y - x @ beta))

    single = [p_value([d2_min(y)], [n], [dof], m) for y in noise]
    assert stats.kstest(single, "uniform").pvalue > 1e-3
    naive = [p_value([d2_min(y)], [n], [None], m) for y in noise]
    assert stats.kstest(naive, "uniform").pvalue < 1e-3
    # two blocks, the parameters fitted to both (stacked): the fitted parameters take m·n_b/n of each
    xx = np.vstack([x, x])
    big = np.block([[cov, np.zeros((n, n))], [np.zeros((n, n)), cov]])
    binv = np.linalg.inv(big)
    both = []
    for t, g in zip(noise[:200], gauss[:200]):
        y = np.concatenate([t, g])
        beta = np.linalg.solve(xx.T @ binv @ xx, xx.T @ binv @ y)
        r = y - xx @ beta
        both.append(p_value([r[:n] @ inv @ r[:n], r[n:] @ inv @ r[n:]], [n, n], [dof, None], m, draws=20_000))
    assert stats.kstest(both, "uniform").pvalue > 1e-3


def test_fisher_of_a_t_block_is_the_variance_of_its_score():
    """Mean μ = Aφ and covariance Σ = e^{φ₀}B (both depend on φ): the formula of Lange, Little &
    Taylor equals the covariance of the score ∂(−½·(−2 ln L))/∂φ over 100 000 t draws (ν = 5,
    n = 4) to 3 % (the score's sampling error is about 0.5 %), and differs from the Gaussian formula
    by more than that."""
    rng = np.random.default_rng(7)
    n, dof = 4, 5.0
    a, b = rng.normal(size=(n, 2)), _random_covariance(rng, n)
    phi = jnp.array([0.3, -0.2])
    mu = lambda p: jnp.asarray(a) @ p
    sig = lambda p: jnp.exp(p[0]) * jnp.asarray(b)

    def m2lnl(p, y):
        r = y - mu(p)
        return student_m2lnl(r @ jnp.linalg.solve(sig(p), r), jnp.linalg.slogdet(sig(p))[1], n, dof)

    y = draw(mu(phi), sig(phi), dof, jax.random.key(8), 100_000)
    scores = np.asarray(jax.vmap(jax.grad(lambda p, y: -0.5 * m2lnl(p, y)), in_axes=(None, 0))(phi, y))
    inv = jnp.linalg.inv(sig(phi))
    dmu, dsig = jax.jacfwd(mu)(phi), jax.jacfwd(sig)(phi)
    formula = np.asarray(fisher_block(dmu, dsig, inv, n, dof))
    assert np.cov(scores.T) == pytest.approx(formula, rel=0.03, abs=0.03 * np.max(np.abs(formula)))
    gaussian = np.asarray(fisher_block(dmu, dsig, inv, n, None))
    assert np.max(np.abs(gaussian - formula)) > 0.1 * np.max(np.abs(formula))


def test_the_dof_of_residuals_is_recovered():
    """ν from the D² of 4000 t draws (ν = 4, n = 9) within 15 % (its sampling error is about 5 %);
    from Gaussian draws ν > 100; too few distances are refused."""
    rng = np.random.default_rng(9)
    n = 9
    d2 = rng.chisquare(n, 4000) * 2.0 / rng.chisquare(4.0, 4000)
    dof, record = dof_from_distances(d2, n)
    assert dof == pytest.approx(4.0, rel=0.15)
    assert record["log_likelihood_gain"] > 100 and record["distances"] == 4000
    assert dof_from_distances(rng.chisquare(n, 4000), n)[0] > 100
    with pytest.raises(ValueError, match="at least 10"):
        dof_from_distances(d2[:5], n)


def test_a_sky_fit_with_student_tails(artifact):
    """On the analytic artifact: ν = 10⁶ gives the Gaussian fit (estimates to 1e-4 relative,
    −2 ln L to 1e-4 absolute: (ν + n) ln(1 + D²/(ν − 2)) − D² = O(D⁴/ν)); with ν = 4 the estimate
    stays within 0.02 e-folds (Σ depends on θ only through the emulator's leverage), the 68 %
    interval of σ² scales by about √((ν − 2 + D²)/(ν + n)) against the Gaussian's (the profile's
    curvature, 20 % tolerance for the profile's non-quadratic shape), and fit.json records the
    tails; the joint likelihood sums a t and a Gaussian block; a t sky's p-value comes from the F
    law; bad settings are refused before any fit."""
    sky = exact_skies(1, AMPLITUDE, 21, lognormal=True)[0]
    kw = dict(amplitude=AMPLITUDE, progress=False)
    gauss = fit_sky(sky, artifact, **kw)
    near = fit_sky(sky, artifact, tails="student-t", tail_dof=1e6, **kw)
    heavy = fit_sky(sky, artifact, tails="student-t", tail_dof=4.0, **kw)
    for name in ("sigma2", "rho"):
        assert near.parameters[name] == pytest.approx(gauss.parameters[name], rel=1e-4)
        assert np.log(heavy.parameters[name] / gauss.parameters[name]) == pytest.approx(0.0, abs=0.02)
    assert near.m2lnl == pytest.approx(gauss.m2lnl, abs=1e-4)
    n, d2 = len(sky.ell), gauss.chi2
    width = lambda fit: np.log(fit.intervals["sigma2"]["68"][1] / fit.intervals["sigma2"]["68"][0])
    assert width(heavy) / width(gauss) == pytest.approx(np.sqrt((4.0 - 2 + d2) / (4.0 + n)), rel=0.2)
    assert heavy.settings["tails"] == "student-t" and heavy.settings["tail_dof"] == 4.0
    assert gauss.settings["tails"] == "gaussian" and gauss.settings["tail_dof"] is None
    assert "Student-t in ln C_ℓ, ν = 4 (the p-value" in heavy.summary() and "Student-t" not in gauss.summary()
    like = sky_likelihood(sky, artifact, amplitude=AMPLITUDE, tails="student-t", tail_dof=4.0)
    plain = sky_likelihood(sky, artifact, amplitude=AMPLITUDE)
    joint = JointLikelihood([like, plain])
    phi = jnp.asarray(THETA0)
    assert float(joint.terms(phi)[0]) == pytest.approx(
        float(like.terms(phi)[0]) + float(plain.terms(phi)[0]), rel=1e-12
    )
    assert [b[3] for b in joint.blocks(phi)] == [4.0, None]
    assert draw_toys(joint, phi, jax.random.key(0), 3).shape == (3, 2 * n)
    best = jnp.asarray(artifact.parameters.coordinates({k: heavy.parameters[k] for k in ("sigma2", "rho")}))
    d2_fit, dof, p = goodness_of_fit(like, best, 2)
    assert dof == n - 2 and p == pytest.approx(stats.f.sf(d2_fit * 4.0 / (2.0 * (n - 2)), n - 2, 4.0), rel=1e-12)
    assert heavy.p_value == pytest.approx(p, rel=1e-6) and heavy.chi2 == pytest.approx(d2_fit, rel=1e-6)
    assert fisher_information(like, phi).shape == (2, 2)
    for kwargs, match in (
        (dict(tail_dof=4.0), "tail_dof = 4.0 is the ν of tails='student-t'"),
        (dict(tails="student-t"), "needs tail_dof"),
        (dict(tails="student-t", tail_dof=2.0), "finite ν > 2"),
        (dict(tails="student-t", tail_dof=4.0, form="gaussian"), "form='lognormal'"),
        (dict(tails="cauchy"), "tails"),
    ):
        with pytest.raises(ValueError, match=match):
            sky_likelihood(sky, artifact, amplitude=AMPLITUDE, **kwargs)


def test_gaussian_toys_are_drawn_as_before_the_blocks(artifact):
    """Toys of a Gaussian sky likelihood are μ + Z Lᵀ with Z the standard normals of the key (the
    draw of the calibrated intervals before likelihoods had blocks: the same seed gives the same
    intervals, to 1e-12); a joint likelihood's Gaussian toys are those of its joined mean and
    block-diagonal covariance; a t block's toys differ from the Gaussian ones only by a scale per toy."""
    sky = exact_skies(1, AMPLITUDE, 22, lognormal=True)[0]
    like = sky_likelihood(sky, artifact, amplitude=AMPLITUDE)
    phi, key = jnp.asarray(THETA0), jax.random.key(5)
    mean, cov = like.moments(phi)
    expected = mean + jax.random.normal(key, (7, mean.shape[0])) @ jnp.linalg.cholesky(cov).T
    assert np.asarray(draw_toys(like, phi, key, 7)) == pytest.approx(np.asarray(expected), rel=1e-12, abs=1e-12)
    joint = JointLikelihood([like, like])
    jmean, jcov = joint.moments(phi)
    jexpected = jmean + jax.random.normal(key, (7, jmean.shape[0])) @ jnp.linalg.cholesky(jcov).T
    assert np.asarray(draw_toys(joint, phi, key, 7)) == pytest.approx(np.asarray(jexpected), rel=1e-12, abs=1e-12)
    heavy = sky_likelihood(sky, artifact, amplitude=AMPLITUDE, tails="student-t", tail_dof=4.0)
    ratio = (np.asarray(draw_toys(heavy, phi, key, 7)) - np.asarray(mean)) / (np.asarray(expected) - np.asarray(mean))
    assert np.ptp(ratio, axis=1) == pytest.approx(np.zeros(7), abs=1e-9) and np.ptp(ratio[:, 0]) > 0.01


def test_a_joint_fit_with_student_tails(artifact):
    """Two energies sharing σ² and λ_c (the skies of the joint-fit test in test_fit.py): with
    ν = 10⁶ the joint fit equals the Gaussian one (σ², λ_c to 1e-4 relative, −2 ln L to 1e-4:
    O(D⁴/ν) per block), and fit.json records each spectrum's ν and the summary names them."""
    import dataclasses

    from jaxcr import units
    from jaxcr.inference import FitOptions, fit_skies

    gradient, b0, lam = 0.0139, 3.0, 0.072
    skies = []
    for k, energy in enumerate((10.0, 20.0)):
        r_l = float(units.larmor_radius_pc(energy, b0))
        sky = exact_skies(1, (gradient * r_l) ** 2, 20 + k, theta=np.log([1.0, r_l / lam]), lognormal=True)[0]
        skies.append(dataclasses.replace(sky, energy_tev=energy))
    kw = dict(gradient_per_pc=gradient, b0_microgauss=b0, options=FitOptions(profile_points=15), progress=False)
    gauss = fit_skies(skies, [artifact, artifact], **kw)
    near = fit_skies(skies, [artifact, artifact], tails="student-t", tail_dof=1e6, **kw)
    for name in ("sigma2", "lambda_c_pc"):
        assert near.parameters[name] == pytest.approx(gauss.parameters[name], rel=1e-4)
    assert near.m2lnl == pytest.approx(gauss.m2lnl, abs=1e-4)
    assert near.settings["tail_dof"] == [1e6, 1e6] and near.settings["tails"] == "student-t"
    assert "Student-t in ln C_ℓ, ν = 1e+06, 1e+06" in near.summary()
