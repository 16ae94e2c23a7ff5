"""One sky's covariance of ln C_ℓ local to θ (``SpectrumEmulator.fit_log(scatter=SkyScatter.LOCAL)``):
its limits, the width chosen by leave-one-out, the χ² of fresh skies from a known law, the artifact
file and its record."""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import equinox as eqx  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxcr.analysis import Analysis  # noqa: E402
from jaxcr.inference.artifact import ARTIFACT_FORMAT, EmulatorArtifact  # noqa: E402
from jaxcr.inference.artifact_build import artifact_from_spectra  # noqa: E402
from jaxcr.inference.emulator import BANDWIDTHS, SpectrumEmulator, local_bandwidth  # noqa: E402
from jaxcr.io import load_checkpoint  # noqa: E402
from jaxcr.options import SkyScatter  # noqa: E402
from jaxcr.parametrisation import plane_wave_parametrisation  # noqa: E402

L = 5
Z = np.array([(a, b) for a in np.linspace(-1, 1, 4) for b in np.linspace(-1, 1, 4)])  # 16 design points
BASE = 0.5 + 0.1 * np.arange(L)  # Var(ln C_ℓ) at the box centre
SLOPE = np.array([0.7, -0.7])  # ln Var grows with z_σ², falls with z_ρ (as on the wide box)


def true_covariance(z, slope=SLOPE):
    """Variance ×e^{±1.26} at the corners (±0.9, ∓0.9); correlation between neighbouring ℓ 0.85 at
    high z_σ² (a sky that wanders far raises every ℓ), 0.25 at low."""
    z = np.asarray(z)
    sd = np.sqrt(BASE * np.exp(z @ slope))
    r = 0.55 + 0.3 * z[0]
    return sd[:, None] * r ** np.abs(np.subtract.outer(np.arange(L), np.arange(L))) * sd[None, :]


def true_log_mean(z):
    z = np.asarray(z)
    return -np.log1p(np.arange(L)) + 0.8 * z[..., :1] - 0.5 * z[..., 1:] + 0.2 * z[..., :1] * z[..., 1:]


def _campaign_moments(rng, realisations=32, slope=SLOPE):
    sims = np.array([rng.multivariate_normal(true_log_mean(z), true_covariance(z, slope), realisations) for z in Z])
    x = sims - sims.mean(1, keepdims=True)
    return sims.mean(1), np.einsum("kri,krj->kij", x, x) / (realisations - 1)


def test_the_local_covariance_runs_from_each_points_own_to_the_pooled_mean():
    """With narrow weights (width 10⁻³ of the box) the local covariance at a design point is that
    point's own (1e-12); with wide ones (10³) it is the points' mean, the pooled covariance (1e-6:
    the weights differ from equal by ~|Δz|²/2b²). Between design points it is positive definite
    (a positive-weighted mean of covariances). The chosen width lies inside the grid tried."""
    means, covs = _campaign_moments(np.random.default_rng(5))
    local = SpectrumEmulator.fit_log(Z, means, covs, 32, 2, np.zeros(2), np.ones(2), scatter=SkyScatter.LOCAL)
    pooled = SpectrumEmulator.fit_log(Z, means, covs, 32, 2, np.zeros(2), np.ones(2))
    assert BANDWIDTHS[0] < float(local.bandwidth) < BANDWIDTHS[-1]
    with_width = lambda b: eqx.tree_at(lambda e: e.bandwidth, local, np.asarray(b))
    for k in (0, 5, 15):
        assert np.asarray(with_width(1e-3).sky_log_covariance(Z[k])) == pytest.approx(covs[k], rel=1e-12)
        assert np.asarray(with_width(1e3).sky_log_covariance(Z[k])) == pytest.approx(covs.mean(0), rel=1e-6)
    assert np.asarray(pooled.sky_log_covariance(Z[3])) == pytest.approx(covs.mean(0), rel=1e-12)
    for theta in np.random.default_rng(6).uniform(-1.2, 1.2, (20, 2)):
        assert np.linalg.eigvalsh(np.asarray(local.sky_log_covariance(theta)))[0] > 0


def test_the_width_is_the_one_that_best_predicts_each_held_out_point():
    """local_bandwidth's score of one width, recomputed with scipy's multivariate normal: the sum over
    points of their mean-centred realisations' log-density under the other points' weighted
    covariance, without the 2π term and with ln det weighted (N_B − 1)/2 rather than N_B/2 (the
    centring takes one degree of freedom): equal to 1e-9. The chosen width scores above every other
    width tried and above the pooled mean."""
    from scipy.stats import multivariate_normal

    rng = np.random.default_rng(7)
    sims = np.array([rng.multivariate_normal(true_log_mean(z), true_covariance(z), 32) for z in Z])
    x = sims - sims.mean(1, keepdims=True)
    covs = np.einsum("kri,krj->kij", x, x) / 31
    width, table = local_bandwidth(Z, covs, 32)
    b = table["bandwidth"][4]
    total = 0.0
    for k in range(len(Z)):
        w = np.exp(-0.5 * np.sum((Z - Z[k]) ** 2, 1) / b**2)
        w[k] = 0
        lam = np.einsum("j,jab->ab", w / w.sum(), covs)
        logpdf = multivariate_normal(np.zeros(L), lam).logpdf(x[k]).sum()
        total += logpdf + 32 * L / 2 * np.log(2 * np.pi) + 0.5 * np.linalg.slogdet(lam)[1]  # 31/2 ln det, no 2π
    assert table["score"][4] == pytest.approx(total, rel=1e-9)
    assert max(table["score"]) == table["score"][table["bandwidth"].index(width)] > table["pooled"]


def test_fresh_skies_at_the_corners_have_the_chi2_the_likelihood_expects():
    """Realisations drawn from a known Gaussian law of ln C_ℓ whose variance (×3.5 at one corner,
    ÷3.5 at the other) and correlation across ℓ (0.85 against 0.3 between neighbours) follow θ;
    16 points × 32 realisations, as a campaign; the emulator fitted to their sample moments; then
    4000 fresh skies at each corner. With the local covariance the mean χ² per ℓ (rᵀΛ⁻¹r/L, r about
    the emulated mean) is 1 within 0.3 and the SD of (y − μ)/σ per ℓ within 0.25 of 1. Tolerances:
    the weights average a corner's covariance with its neighbours' and
    32 realisations leave 25 % in one point's variance; measured over four seeds: χ² per ℓ 0.84-1.22,
    SD of z within 0.21 of 1. The pooled covariance gives 1.9 and 0.37."""
    rng = np.random.default_rng(2026)
    means, covs = _campaign_moments(rng)
    emus = {s: SpectrumEmulator.fit_log(Z, means, covs, 32, 2, np.zeros(2), np.ones(2), scatter=s) for s in SkyScatter}
    for corner, pooled_range in (((0.9, -0.9), (1.7, 4.0)), ((-0.9, 0.9), (0.2, 0.6))):
        z = np.array(corner)
        skies = rng.multivariate_normal(true_log_mean(z), true_covariance(z), 4000)
        for s, emu in emus.items():
            r = skies - np.asarray(emu.log_mean(z))
            cov = np.asarray(emu.log_covariance(z, 1))
            chi2 = np.einsum("ni,ij,nj->n", r, np.linalg.inv(cov), r).mean() / L
            sd_z = np.std(r / np.sqrt(np.diag(cov)), axis=0)
            if s == SkyScatter.LOCAL:
                assert 0.7 < chi2 < 1.3 and np.all(np.abs(sd_z - 1) < 0.25), (corner, chi2, sd_z)
            else:
                assert pooled_range[0] < chi2 < pooled_range[1], (corner, chi2)


BOX = plane_wave_parametrisation((0.5, 2.0), (0.05, 0.2))


def _spectra(rng):
    """Log-normal realisations (9 design points × 32, two equal times: converged) whose ln C_ℓ
    variance grows with ln σ² across the box."""
    design = BOX.grid(3)
    z = (design - design.mean(0)) / np.ptp(design, 0) * 2
    ell = np.arange(8)
    width = 0.3 * np.exp(0.5 * z[:, 0])[:, None, None, None]
    logs = -2 * np.log1p(ell) + 0.3 * design[:, :1, None, None] + width * rng.normal(size=(9, 32, 1, 8))
    return design, np.exp(np.broadcast_to(logs, (9, 32, 2, 8))), logs


def test_an_artifact_with_a_local_covariance_round_trips_and_records_it(tmp_path):
    """The local covariance is saved (format /3) and loaded back with the same version and the same
    covariance at any θ (bit for bit); a pooled artifact keeps format /2 and a version without it.
    The recorded per-point ratios are each point's Var(ln C_ℓ) over the pooled variance (both
    artifacts) and over the local one (the local artifact), recomputed here with numpy from the
    realisations and the recorded width (1e-12). Over the pooled
    variance it is about e/1.57 = 1.7 and e⁻¹/1.57 = 0.23 at the σ² edges (the variance ∝ e^{z_σ²}),
    over the local one within 1/1.5-1.5 at every point (32 realisations leave about 25 % per point)."""
    design, spectra, logs = _spectra(np.random.default_rng(3))
    build = lambda s: artifact_from_spectra(
        BOX, design, spectra, np.zeros((9, 32, 2)), (1.0, 2.0), Analysis("full"), 4, ells=np.arange(1, 6), degree=1,
        sky_scatter=s,
    )  # fmt: skip
    local, pooled = build("local"), build(SkyScatter.POOLED)
    assert local.version != pooled.version
    for art, fmt in ((local, ARTIFACT_FORMAT), (pooled, "jaxcr-emulator/2")):
        path = art.save(tmp_path / f"{art.version}.npz")
        assert load_checkpoint(path, kind="artifact")[1]["format"] == fmt
        back = EmulatorArtifact.load(path)
        assert back.version == art.version
        theta = np.array([0.1, -2.5])
        assert np.array_equal(back.log_emulator.log_covariance(theta, 1), art.log_emulator.log_covariance(theta, 1))
    var = np.var(logs[:, :, 0, 1:6], axis=1, ddof=1)  # (K, L)
    record = local.provenance["sky_scatter"]
    z = np.asarray(local.log_emulator.point_z)
    w = np.exp(-0.5 * np.sum((z[:, None] - z[None]) ** 2, -1) / record["bandwidth"] ** 2)
    model = (w / w.sum(1, keepdims=True)) @ var
    ratio = np.asarray(local.provenance["point_scatter"]["ratio_local"])
    assert ratio == pytest.approx(np.mean(var / model, axis=1), rel=1e-12)
    pooled_ratio = np.asarray(pooled.provenance["point_scatter"]["ratio"])
    assert pooled_ratio == pytest.approx(np.mean(var / var.mean(0), axis=1), rel=1e-12)
    assert local.provenance["point_scatter"]["ratio"] == pooled.provenance["point_scatter"]["ratio"]
    assert "ratio_local" not in pooled.provenance["point_scatter"]
    assert pooled_ratio.max() > 1.5 and pooled_ratio.min() < 1 / 1.5  # the pooled variance is off at the edges
    assert 1 / 1.5 < ratio.min() and ratio.max() < 1.5
    assert record["kind"] == "local" and pooled.provenance["sky_scatter"] == dict(kind="pooled")
    assert max(record["leave_one_out"]["score"]) > record["leave_one_out"]["pooled"]
    assert "× the local one, width" in local.summary() and "× the pooled one" in pooled.summary()


def test_an_unknown_sky_scatter_is_refused_before_any_work():
    design, spectra, _ = _spectra(np.random.default_rng(3))
    with pytest.raises(ValueError, match="sky_scatter must be a SkyScatter or one of 'pooled', 'local'; got 'linear'"):
        artifact_from_spectra(BOX, design, spectra, np.zeros((9, 32, 2)), (1.0, 2.0), Analysis("full"), 4,
                              sky_scatter="linear")  # fmt: skip


def test_toys_drawn_with_the_local_covariance_give_the_critical_value_of_the_true_law():
    """Intervals calibrated by toys (jaxcr.inference.neyman) on a likelihood that keeps the pooled
    covariance. The 68 % critical value of the likelihood ratio of θ at the design point (−⅓, ⅓),
    where the known law's variance of ln C_ℓ is about half the pooled one, computed three ways with
    400 toys each (the law's mean made 3 times steeper in θ, so that the box does not cut the
    ratio). The reference draws the toys from the true covariance there. Drawn with
    ``toy_emulator``, the local covariance estimated from 16 points × 32 realisations, they give a
    critical value within 0.7-1.4 of the reference: a quantile from 400 toys has about 10 %
    sampling error, one point's variance from 32 realisations about 25 %; measured over five seeds
    0.86-1.23. Drawn with the likelihood's own pooled covariance they give more than 1.4 times the
    reference (measured 1.62-2.27): the toys scatter as much as the pooled covariance says, so
    the intervals would be too wide there."""
    import jax.numpy as jnp

    from jaxcr.inference.likelihood import LogNormalSky
    from jaxcr.inference.neyman import LEVEL_PROBABILITIES, likelihood_ratios

    means, covs = _campaign_moments(np.random.default_rng(11))
    means = means + 2 * true_log_mean(Z)
    local = SpectrumEmulator.fit_log(Z, means, covs, 32, 2, np.zeros(2), np.ones(2), scatter=SkyScatter.LOCAL)
    truth = jnp.array([-1 / 3, 1 / 3])
    exact = eqx.tree_at(lambda e: e.point_covs, local, np.broadcast_to(true_covariance(truth), covs.shape).copy())
    like = LogNormalSky(
        emulator=local.pooled(), toy_emulator=local, observed=local.log_mean(truth), variance=jnp.full(L, 1e-4),
        rows=jnp.arange(L), log_amplitude=jnp.asarray(0.0), log_amplitude_range=None, names=("z_s", "z_r"),
        dof=None,
    )  # fmt: skip
    measurement = 1e-4 * np.eye(L)
    assert np.asarray(like.moments(truth)[1]) == pytest.approx(
        np.asarray(local.pooled().log_covariance(truth, 1)) + measurement
    )
    assert np.asarray(like.toy_blocks(truth)[0][1]) == pytest.approx(
        np.asarray(local.log_covariance(truth, 1)) + measurement
    )

    def c68(toy_emulator, seed):
        t = likelihood_ratios(
            eqx.tree_at(lambda m: m.toy_emulator, like, toy_emulator, is_leaf=lambda x: x is None),
            truth, jnp.array([True, True]), truth, jax.random.key(seed), 400, 1e-6, 100,
        )  # fmt: skip
        return float(np.quantile(np.asarray(t), LEVEL_PROBABILITIES["68"]))

    reference, with_local, with_pooled = c68(exact, 1), c68(local, 2), c68(None, 3)
    assert 0.7 < with_local / reference < 1.4, (reference, with_local, with_pooled)
    assert with_pooled / reference > 1.4, (reference, with_local, with_pooled)


def test_a_fit_on_a_local_artifact_keeps_the_pooled_likelihood_and_draws_its_toys_locally():
    """On an artifact built with the local covariance a fit's likelihood is still the pooled one (the
    same best fit as on the pooled artifact, to 1e-10, and the same −2 ln L there), its profile intervals are
    flagged where the nearest point's realisations scatter beyond 1/1.5-1.5 of the pooled variance
    (here 1.7 at the high-σ² edge), and calibrated intervals draw their toys with the local
    covariance (recorded, said in the summary, and the flag dropped: they follow that scatter).
    Asking for the local covariance inside the likelihood of a pooled artifact is refused."""
    from jaxcr.inference.fit import FitOptions
    from jaxcr.inference.neyman import NeymanCalibration
    from jaxcr.inference.sky_fit import fit_sky
    from jaxcr.observations import ObservedSpectrum

    design, spectra, _ = _spectra(np.random.default_rng(3))
    build = lambda s: artifact_from_spectra(
        BOX, design, spectra, np.zeros((9, 32, 2)), (1.0, 2.0), Analysis("full"), 4, ells=np.arange(1, 6), degree=1,
        sky_scatter=s,
    )  # fmt: skip
    local, pooled = build(SkyScatter.LOCAL), build(SkyScatter.POOLED)
    theta = BOX.coordinates(dict(sigma2=1.9, rho=0.1))
    cl = np.exp(np.asarray(local.log_emulator.log_mean(theta)) + 0.1)
    sky = ObservedSpectrum(np.arange(1, 6), cl, 1e-3 * cl, "test", 10.0, 0.0, analysis=Analysis("full"))
    fits = {
        name: fit_sky(sky, art, amplitude=1.0, progress=False) for name, art in (("local", local), ("pooled", pooled))
    }
    assert fits["local"].as_dict()["settings"]["toys"] is None
    for name in ("sigma2", "rho"):
        assert fits["local"].parameters[name] == pytest.approx(fits["pooled"].parameters[name], rel=1e-10)
    assert fits["local"].m2lnl == pytest.approx(fits["pooled"].m2lnl, rel=1e-12)
    flag = [f for f in fits["local"].flags if "times the variance of ln C_ℓ that the likelihood pools" in f]
    assert len(flag) == 1 and "too narrow" in flag[0]
    calibrated = fit_sky(
        sky, local, amplitude=1.0, progress=False,
        options=FitOptions(calibration=NeymanCalibration(toys=50, points=3)),
    )  # fmt: skip
    assert calibrated.as_dict()["settings"]["toys"] == "local"
    assert "drawn with the artifact's local covariance" in calibrated.summary()
    assert not any("times the variance of ln C_ℓ" in f for f in calibrated.flags)
    with pytest.raises(ValueError, match="sky_scatter='local' needs .* --sky-scatter local.*this artifact pools it"):
        fit_sky(sky, pooled, amplitude=1.0, sky_scatter="local", progress=False)
