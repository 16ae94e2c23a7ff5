"""The joint region of the two boxed parameters: against the exact ellipse of a linear-Gaussian
model with a profiled nuisance, the interpolation of calibrated critical values, and its place in
one-sky fits (fit.json, the summary, the refusal of thresholds made for another fit)."""

import dataclasses
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from test_fit import LinearGaussian
from tests_support import analytic_artifact, exact_skies

from jaxcr.inference import fit_sky
from jaxcr.inference.joint_region import CHI2_2, RegionThresholds, joint_region, region_settings
from jaxcr.inference.sky_fit import sky_likelihood
from jaxcr.parametrisation import Parameter, Parametrisation, Transform, plane_wave_parametrisation


def _three_parameter_linear_problem():
    """y ~ N(A φ, C) with φ = (x, y, z), x and y boxed in [−4, 4], z free: profiling z out of a
    Gaussian leaves the marginal, so λ(x, y) = δᵀ Σ₂⁻¹ δ exactly, Σ₂ the (x, y) block of F⁻¹."""
    rng = np.random.default_rng(3)
    a = rng.normal(size=(12, 3))
    cov = np.diag(rng.uniform(0.5, 2.0, 12))
    y = a @ np.array([0.4, -0.3, 0.2]) + rng.multivariate_normal(np.zeros(12), cov)
    like = LinearGaussian(design=jnp.asarray(a), y=jnp.asarray(y), cov=jnp.asarray(cov), names=("x", "y", "z"))
    fisher = a.T @ np.linalg.solve(cov, a)
    best = np.linalg.solve(fisher, a.T @ np.linalg.solve(cov, y))
    params = Parametrisation(
        (
            Parameter("x", -4.0, 4.0, Transform.LINEAR),
            Parameter("y", -4.0, 4.0, Transform.LINEAR),
            Parameter("z", -np.inf, np.inf, Transform.LINEAR),
        )
    )
    return like, params, best, np.linalg.inv(fisher)[:2, :2]


def test_joint_region_is_the_ellipse_of_a_gaussian_likelihood_with_a_profiled_nuisance():
    """On a 41 × 41 grid: λ at every node equals δᵀΣ₂⁻¹δ (1e-6: the nuisance's minimisation
    stops at |∇| < 1e-8); each extent is bracketed by the exact ellipse, from inside by the
    outermost node inside it and from outside by the ellipse's own extent on the grid's lines
    (linear interpolation of a convex λ between nodes falls inside the true crossing), and the
    ellipse's projection √(c Σ_ii) is within one grid step of both; the region's share of the box
    is the ellipse's area π c √det Σ₂ / 64 within the share of nodes along its boundary."""
    like, params, best, sigma2 = _three_parameter_linear_problem()
    m2lnl = float(like.terms(jnp.asarray(best))[0])
    region = joint_region(like, params, best, m2lnl, points=41)
    axis = np.asarray(region["coordinate"][0])
    gx, gy = np.meshgrid(axis, axis, indexing="ij")
    delta = np.stack([gx - best[0], gy - best[1]], -1)
    exact = np.einsum("...i,ij,...j->...", delta, np.linalg.inv(sigma2), delta)
    assert np.allclose(region["delta_m2lnl"], exact, atol=1e-6)
    h = axis[1] - axis[0]
    for level, c in CHI2_2.items():
        inside = exact <= c
        for i, name in enumerate(("x", "y")):
            lo, hi, closed_lo, closed_hi = region["levels"][level]["extent"][name]
            assert closed_lo and closed_hi
            along = (gx, gy)[i]
            # the ellipse's extent on each grid line of the other parameter: from δ_j, the quadratic in δ_i
            p = np.linalg.inv(sigma2)
            j = 1 - i
            dj = axis - best[j]
            disc = (p[i, j] * dj) ** 2 - p[i, i] * (p[j, j] * dj**2 - c)
            line_hi = best[i] + (-p[i, j] * dj[disc >= 0] + np.sqrt(disc[disc >= 0])) / p[i, i]
            line_lo = best[i] + (-p[i, j] * dj[disc >= 0] - np.sqrt(disc[disc >= 0])) / p[i, i]
            assert along[inside].max() - 1e-9 <= hi <= line_hi.max() + 1e-9
            assert line_lo.min() - 1e-9 <= lo <= along[inside].min() + 1e-9
            half = np.sqrt(c * sigma2[i, i])
            assert abs(hi - (best[i] + half)) < h and abs(lo - (best[i] - half)) < h
        area = np.pi * c * np.sqrt(np.linalg.det(sigma2)) / 64.0
        boundary = np.mean(
            np.abs(np.sqrt(exact) - np.sqrt(c)) < h * np.sqrt(np.abs(np.linalg.eigvalsh(np.linalg.inv(sigma2))).max())
        )
        assert abs(region["levels"][level]["box_share"] - area) <= boundary
    assert region["thresholds"] == "chi2_2" and region["calibrated_share"] == 0.0


def _thresholds(critical_68, points=((0.0, 0.0), (2.0, 0.0), (0.0, 2.0), (2.0, 2.0)), fit=None):
    k = len(points)
    return RegionThresholds(
        names=("x", "y"),
        points=np.asarray(points, dtype=float),
        critical={"68": np.asarray(critical_68, dtype=float), "95": np.full(k, 5.0)},
        skies=np.full(k, 30),
        refused=np.zeros(k, int),
        settings=dict(fit=fit or dict(form="lognormal"), campaigns=[dict(folder="c", seed=1)], points=k),
    )


def test_calibrated_critical_values_are_linear_between_points_and_chi2_outside(tmp_path):
    """Critical values linear in θ at the points (c = 1 + x + 2y) are reproduced exactly inside
    their hull (a linear function is its own piecewise-linear interpolant), a value within 1e-3 of
    a point snaps to it, outside the hull it is χ²₂'s and marked uncalibrated; the file round-trips;
    bad thresholds are refused with what to fix."""
    pts = np.array([(0.0, 0.0), (2.0, 0.0), (0.0, 2.0), (2.0, 2.0)])
    t = _thresholds(1 + pts[:, 0] + 2 * pts[:, 1])
    query = np.array([(0.5, 0.25), (1.9, 1.2), (2.0005, 2.0), (3.0, 1.0), (-1.0, -1.0)])
    critical, calibrated = t.at(query)
    assert calibrated.tolist() == [True, True, True, False, False]
    assert np.allclose(critical["68"][:2], 1 + query[:2, 0] + 2 * query[:2, 1], atol=1e-12)
    assert critical["68"][2] == pytest.approx(7.0) and critical["68"][3:] == pytest.approx(CHI2_2["68"])
    assert CHI2_2["68"] == pytest.approx(2.2957, abs=1e-4) and CHI2_2["95"] == pytest.approx(6.1801, abs=1e-4)
    t.save(tmp_path / "t.json")
    again = RegionThresholds.load(tmp_path / "t.json")
    assert np.array_equal(again.points, t.points) and np.array_equal(again.critical["68"], t.critical["68"])
    with pytest.raises(ValueError, match="at least 3 calibration points not on one line"):
        _thresholds([1.0, 2.0, 3.0], points=((0, 0), (1, 1), (2, 2)))
    with pytest.raises(ValueError, match="finite values"):
        _thresholds([1.0, np.nan, 1.0, 1.0])
    with pytest.raises(ValueError, match="not a region-thresholds file"):
        (tmp_path / "bad.json").write_text("{}")
        RegionThresholds.load(tmp_path / "bad.json")
    with pytest.raises(ValueError, match="form: thresholds 'lognormal', fit 'gaussian'"):
        t.check_matches(dict(form="gaussian"))


BOX = plane_wave_parametrisation((0.3, 3.0), (0.04, 0.25))


def test_one_sky_fit_reports_its_joint_region_and_uses_calibrated_thresholds():
    """fit_sky on an exact sky: no node of the region's grid lies below the best fit, the lowest
    is within a grid step of it, its 68 % extent contains the one-parameter 68 % interval (a projection
    of the Δ ≤ 2.30 region holds the Δ ≤ 1 profile interval); thresholds of 1.0 everywhere (the
    hull is the box) shrink the region to inside the χ²₂ one; thresholds made for another form
    are refused before the fit."""
    artifact = analytic_artifact(BOX)
    a = 1e-8
    sky = exact_skies(1, a, 5, lognormal=True)[0]
    fit = fit_sky(sky, artifact, amplitude=a, progress=False)
    region = fit.joint_region
    assert region is not None and region["parameters"] == ["sigma2", "rho"]
    lam = np.asarray(region["delta_m2lnl"])
    i, j = np.unravel_index(np.argmin(lam), lam.shape)
    steps = [np.diff(region["coordinate"][k])[0] for k in (0, 1)]
    assert lam.min() >= -1e-9  # no node below the best fit: it is the maximum
    assert abs(region["coordinate"][0][i] - np.log(fit.parameters["sigma2"])) <= steps[0]
    assert abs(region["coordinate"][1][j] - np.log(fit.parameters["rho"])) <= steps[1]
    for name in ("sigma2", "rho"):
        lo, hi = fit.intervals[name]["68"][:2]
        r_lo, r_hi = region["levels"]["68"]["extent"][name][:2]
        assert r_lo <= lo * (1 + 1e-9) and r_hi >= hi * (1 - 1e-9)
    assert "joint region of (σ², r_L/λ_c)" in fit.summary()
    corners = np.array([[u, v] for u in BOX.parameters[0].coordinate_box for v in BOX.parameters[1].coordinate_box])
    settings = region_settings(artifact, sky_likelihood(sky, artifact, amplitude=a), "lognormal", "pooled", False)
    tight = dataclasses.replace(_thresholds(np.ones(4), points=corners, fit=settings), names=("sigma2", "rho"))
    calibrated = fit_sky(sky, artifact, amplitude=a, region_thresholds=tight, progress=False).joint_region
    assert calibrated["thresholds"] == "calibrated" and calibrated["calibrated_share"] == 1.0
    assert calibrated["levels"]["68"]["box_share"] < region["levels"]["68"]["box_share"]
    with pytest.raises(ValueError, match="region_thresholds were calibrated for another fit"):
        fit_sky(sky, artifact, amplitude=a, form="gaussian", region_thresholds=tight, progress=False)


@pytest.mark.slow
def test_campaign_thresholds_are_the_quantiles_of_lambda_from_full_fits_of_the_realisations(tmp_path):
    """`jaxcr campaign thresholds` on a 4-point campaign (nside 8, 24 realisations, offset-log-normal
    form, which takes every sky): at every design point the thresholds are the 68.27 % and 95.45 %
    quantiles of λ = −2 ln L(θ_k) − min −2 ln L, each minimum from the full fit driver (fit_sky,
    with its profiles) instead of the calibration's own polish (1e-6 relative: both stop at
    |∇| < 1e-8); a fit given the file reports a calibrated region over the whole box (the design
    spans it); a fit of another form is refused with what differs; a campaign of 6 realisations
    is refused with the number needed, and pooled with the first its λ join theirs point by point."""
    import json
    import subprocess
    import sys

    import jax

    from jaxcr.analysis import Analysis
    from jaxcr.inference import campaign as cp
    from jaxcr.inference import scheduling as sc
    from jaxcr.inference.artifact_build import build_artifact
    from jaxcr.inference.neyman import LEVEL_PROBABILITIES
    from jaxcr.inference.realisation_skies import realisation_skies
    from jaxcr.observations import save_spectrum
    from jaxcr.parametrisation import plane_wave_parametrisation as box_of
    from jaxcr.spectrum_model import SpectrumModel
    from jaxcr.turbulence_model import PlaneWaveGJ99

    def jaxcr_cli(*args):
        return subprocess.run([sys.executable, "-m", "jaxcr.cli", *args], capture_output=True, text=True, timeout=600)

    assert jax.config.jax_enable_x64

    def model(realisations):
        return SpectrumModel(nside=8, n_realisations=realisations, turbulence=PlaneWaveGJ99(n_modes=8))

    def spec(realisations):
        return cp.CampaignSpec.on_grid(
            model(realisations), (1.0, 2.0), (Analysis("full"),), box_of((0.5, 2.0), (0.05, 0.2)), 2
        )

    campaign = cp.Campaign.create(tmp_path / "c", spec(24))
    sc.run_campaign(campaign, progress=False)
    artifact = build_artifact(campaign, "full", ells=np.arange(1, 4), degree=1, time=2.0)
    artifact.save(tmp_path / "a.npz")
    out = tmp_path / "t.json"
    proc = jaxcr_cli("campaign", "thresholds", str(tmp_path / "c"), "--artifact", str(tmp_path / "a.npz"),
                     "--out", str(out), "--form", "offset-lognormal", "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    thresholds = RegionThresholds.load(out)
    assert len(thresholds.points) == 4 and thresholds.skies.tolist() == [24] * 4
    lams = []
    for k, point in enumerate(thresholds.points):
        truth = campaign.spec.values(k)
        assert np.allclose(point, campaign.spec.design[k])
        lam = []
        for sky in realisation_skies(campaign, artifact, k):
            fit = fit_sky(sky, artifact, amplitude=1.0, form="offset-lognormal", progress=False)
            like = sky_likelihood(sky, artifact, amplitude=1.0, form="offset-lognormal")
            at_truth = float(like.terms(jnp.asarray(artifact.parameters.coordinates(truth)))[0])
            lam.append(at_truth - min(fit.m2lnl, at_truth))
        for level, p in LEVEL_PROBABILITIES.items():
            assert thresholds.critical[level][k] == pytest.approx(np.quantile(lam, p), rel=1e-6, abs=1e-8)
        lams.append(lam)
    # experiments/region_coverage.py on point 0's own realisations as "mock skies" (a sky_fit_coverage.py
    # folder): the calibrated coverage is the share of their λ at or below its own quantile
    run = tmp_path / "run"
    (run / "skies").mkdir(parents=True)
    for j, realisation in enumerate(realisation_skies(campaign, artifact, 0)):
        save_spectrum(realisation, run / "skies" / f"truth0_sky{j:03d}.csv")
    truth0 = {name: float(v) for name, v in campaign.spec.values(0).items()}
    (run / "coverage.json").write_text(json.dumps(dict(settings=dict(truth=[[truth0["sigma2"], truth0["rho"]]],
                                                                   amplitude=1.0, time_factor=1.0))))  # fmt: skip
    proc = subprocess.run([sys.executable, str(Path(__file__).parents[1] / "experiments" / "region_coverage.py"),
                           "--artifact", str(tmp_path / "a.npz"), "--thresholds", str(out), "--skies-from", str(run),
                           "--out", str(tmp_path / "cov")], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    row = json.loads((tmp_path / "cov" / "coverage.json").read_text())["truths"][0]
    lam0 = np.asarray(row["lam"])
    assert row["calibrated"] and len(lam0) == 24
    for level, p in LEVEL_PROBABILITIES.items():
        assert row["critical"][level] == pytest.approx(thresholds.critical[level][0], rel=1e-12)
        assert row["coverage"][level]["calibrated"] == pytest.approx(np.mean(lam0 <= np.quantile(lam0, p)), abs=1e-12)
        assert row["coverage"][level]["chi2_2"] == pytest.approx(np.mean(lam0 <= CHI2_2[level]), abs=1e-12)
    sky = tmp_path / "sky.csv"
    save_spectrum(realisation_skies(campaign, artifact, 3)[0], sky)
    proc = jaxcr_cli("fit", str(sky), "--artifact", str(tmp_path / "a.npz"), "--amplitude", "1", "--form",
                     "offset-lognormal", "--region-thresholds", str(out), "--out", str(tmp_path / "f"), "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    region = json.loads((tmp_path / "f" / "fit.json").read_text())["joint_region"]
    assert region["thresholds"] == "calibrated" and region["calibrated_share"] == 1.0
    assert "calibrated on the realisations of" in proc.stdout
    proc = jaxcr_cli("fit", str(sky), "--artifact", str(tmp_path / "a.npz"), "--amplitude", "1",
                     "--region-thresholds", str(out), "--out", str(tmp_path / "g"), "--quiet")  # fmt: skip
    assert proc.returncode != 0 and "form: thresholds 'offset-lognormal', fit 'lognormal'" in proc.stderr
    small = cp.Campaign.create(tmp_path / "s", spec(6))
    sc.run_campaign(small, progress=False)
    proc = jaxcr_cli("campaign", "thresholds", str(tmp_path / "s"), "--artifact", str(tmp_path / "a.npz"),
                     "--out", str(tmp_path / "u.json"), "--form", "offset-lognormal", "--quiet")  # fmt: skip
    assert proc.returncode != 0 and "at least 20 needed" in proc.stderr
    # pooled with the first campaign: the same seed, so its 6 are the first 6 of the 24 at each point
    proc = jaxcr_cli("campaign", "thresholds", str(tmp_path / "c"), str(tmp_path / "s"), "--artifact",
                     str(tmp_path / "a.npz"), "--out", str(tmp_path / "p.json"), "--form", "offset-lognormal", "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    pooled = RegionThresholds.load(tmp_path / "p.json")
    assert pooled.skies.tolist() == [30] * 4 and len(pooled.settings["campaigns"]) == 2
    for k, lam in enumerate(lams):
        for level, p in LEVEL_PROBABILITIES.items():
            assert pooled.critical[level][k] == pytest.approx(np.quantile(lam + lam[:6], p), rel=1e-6, abs=1e-8)


def test_fit_command_refuses_region_thresholds_it_cannot_use(tmp_path, capsys):
    """`jaxcr fit --region-thresholds` with two spectra (a joint fit has no single (σ², ρ) pair of
    one likelihood) stops at argument parsing; a missing or foreign file is named with what to do."""
    from jaxcr.recipes import fit as fit_command

    example = str(Path(__file__).parents[1] / "jaxcr" / "data" / "example_icecube_spectrum.csv")
    with pytest.raises(SystemExit):
        fit_command.main([example, example, "--region-thresholds", "t.json", "--out", str(tmp_path / "a")])
    assert "--region-thresholds are for one spectrum" in capsys.readouterr().err
    with pytest.raises(ValueError, match="no such file .*jaxcr campaign thresholds"):
        fit_command.main([example, "--region-thresholds", str(tmp_path / "t.json"), "--out", str(tmp_path / "b")])
    (tmp_path / "t.json").write_text('{"format": "other"}')
    with pytest.raises(ValueError, match="is not a region-thresholds file"):
        fit_command.main([example, "--region-thresholds", str(tmp_path / "t.json"), "--out", str(tmp_path / "c")])
    assert not (tmp_path / "b").exists() and not (tmp_path / "c").exists()
