"""Campaigns, emulator artifacts and one-sky fits: pixel noise, convergence, resumption, coverage."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import healpy as hp
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcr.conventions import BackgroundMethod
from jaxcr.inference import campaign as cp
from jaxcr.inference import scheduling as sc
from jaxcr.inference.artifact import EmulatorArtifact, build_artifact, convergence_table, noise_transfer
from jaxcr.inference.emulator import SpectrumEmulator, poly_features
from jaxcr.inference.model import SpectrumModel
from jaxcr.inference.precision import expected_precision
from jaxcr.inference.sky_fit import fit_sky
from jaxcr.observations import ObservedSpectrum
from jaxcr.sky import declination_band_mask

TINY_MODEL = SpectrumModel(nside=4, n_realisations=3, n_modes=8)


def _tiny_spec(points=2):
    return cp.CampaignSpec(
        model=TINY_MODEL,
        times=(1.0, 2.0),
        analyses=(cp.Analysis("full"), cp.Analysis("south", -90.0, 0.0, BackgroundMethod.TIME_SCRAMBLING)),
        design=cp.design_grid((0.5, 2.0), (0.05, 0.2), points),
    )


def test_pixel_noise_level_of_white_and_smooth_maps():
    """White noise of pixel variance v has N̂ = 4πv/N_pix (Eq. 12's white level); a band-limited
    map (ℓ ≤ 3) has none. Tolerances: 5 sampling SEs of the noise variance (32 maps of 3072 pixels
    → SE ≈ 0.45 %), and 1e-3 of the smooth map's own C_ℓ level (the transform's iterations)."""
    nside, n = 16, 32
    rng = np.random.default_rng(0)
    alm = hp.synalm(np.r_[0.0, 1.0, 0.5, 0.2], lmax=3, new=True)
    smooth = hp.alm2map(alm, nside)
    maps = smooth + rng.normal(size=(n, 12 * nside**2)) * 0.3
    cl = np.stack([hp.anafast(m, lmax=2 * nside - 1, iter=3) for m in maps])
    expected = 4 * np.pi * 0.09 / (12 * nside**2)
    assert np.mean(cp.pixel_noise_level(maps, cl)) == pytest.approx(expected, rel=5 * np.sqrt(2 / (n * 3072)) * 1.5)
    clean = cp.pixel_noise_level(smooth[None], hp.anafast(smooth, lmax=2 * nside - 1, iter=3)[None])
    assert clean[0] < 1e-3 * 0.2


@pytest.mark.slow
def test_noise_transfer_full_sky_and_band():
    """Full sky, known background: white noise of level 1 gives t_ℓ = 1 and v_ℓ = 2/(2ℓ+1) (a
    χ² of 2ℓ+1 modes). A band: the pseudo-C_ℓ of masked white noise is f_sky times the level.
    Tolerances: 4 SEs of the Monte Carlo (400 maps)."""
    t, v = noise_transfer(cp.Analysis("full"), 4)
    ell = np.arange(len(t))
    se = np.sqrt(2 / (2 * ell[1:] + 1) / 400)
    assert np.all(np.abs(t[1:] - 1) < 4 * se)
    assert np.allclose(v[1:] * (2 * ell[1:] + 1) / 2, 1.0, atol=4 * np.sqrt(2 / 400))
    t_band, v_band = noise_transfer(cp.Analysis("north", 0.0, 90.0), 4)
    mask = np.asarray(declination_band_mask(4, 0.0, 90.0))
    noise = np.random.default_rng(0).normal(size=(400, 192)) * np.sqrt(192 / (4 * np.pi))
    cl = np.stack([hp.anafast(mask * m, lmax=7, iter=3) for m in noise])  # healpy, the same maps
    assert np.allclose(t_band, cl.mean(0), rtol=1e-9) and np.allclose(v_band, cl.var(0, ddof=1), rtol=1e-8)
    assert np.mean(t_band[1:]) == pytest.approx(mask.mean(), rel=0.05)  # ≈ f_sky (exact for iter = 0)


def test_convergence_table_picks_the_first_stable_time():
    """Spectra that grow until the third of five times and stay put afterwards (with noise of
    known SE): the diagnostic must choose index 2, and call the drifting times not converged."""
    rng = np.random.default_rng(1)
    level = np.array([0.2, 0.6, 1.0, 1.0, 1.0])
    noise = rng.normal(size=(20, 64, 1, 6)) * 0.05
    c = level[None, None, :, None] + noise + rng.normal(size=(20, 64, 5, 6)) * 0.01
    rows, chosen = convergence_table(c, (10.0, 20.0, 40.0, 80.0, 160.0))
    assert chosen == 2
    assert [r["converged"] for r in rows] == [False, False, True, True, True]
    assert rows[0]["relative_shift"] == pytest.approx(-0.8, abs=0.01)


def test_campaign_spec_and_design_errors(tmp_path):
    with pytest.raises(ValueError, match="times must be > 0"):
        dataclasses.replace(_tiny_spec(), times=(0.0, 1.0))
    with pytest.raises(ValueError, match="dec_min_deg < dec_max_deg"):
        cp.Analysis("bad", 10.0, -10.0)
    with pytest.raises(ValueError, match="analysis names must be unique"):
        dataclasses.replace(_tiny_spec(), analyses=(cp.Analysis("a"), cp.Analysis("a")))
    with pytest.raises(ValueError, match="points must be >= 2"):
        cp.design_grid((0.5, 2.0), (0.05, 0.2), 1)
    with pytest.raises(ValueError, match=r"sigma2_range\[0\]"):
        cp.design_grid((2.0, 0.5), (0.05, 0.2), 3)
    campaign = cp.Campaign.create(tmp_path / "c", _tiny_spec())
    with pytest.raises(ValueError, match="index must be an integer"):
        campaign.run_task(99)
    with pytest.raises(ValueError, match="already holds a campaign"):
        cp.Campaign.create(tmp_path / "c", dataclasses.replace(_tiny_spec(), times=(1.0, 3.0)))
    with pytest.raises(ValueError, match="not done"):
        build_artifact(campaign)
    with pytest.raises(ValueError, match="not a campaign folder"):
        cp.Campaign.open(tmp_path / "nothing")


@pytest.fixture(scope="module")
def tiny_campaign(tmp_path_factory):
    """A 4-point campaign computed straight through (nside 4, 3 realisations, ΩT ≤ 2)."""
    campaign = cp.Campaign.create(tmp_path_factory.mktemp("straight") / "c", _tiny_spec())
    sc.run_campaign(campaign, progress=False)
    return campaign


def test_interrupted_and_extended_campaign_gives_the_same_artifact(tiny_campaign, tmp_path):
    """Points computed in another order, with an interruption, give bit-identical point files and
    the same artifact version; extending keeps the old points and indices."""
    other = cp.Campaign.create(tmp_path / "c", _tiny_spec())
    sc.run_campaign(other, indices=[3, 1], progress=False)  # "killed" after two points
    assert other.pending() == [0, 2]
    sc.run_campaign(cp.Campaign.open(tmp_path / "c"), progress=False)  # resumed
    for k in range(4):
        a, _ = tiny_campaign.load_point(k)
        b, _ = other.load_point(k)
        assert all(np.array_equal(a[key], b[key]) for key in a)
    kw = dict(analysis="full", ells=np.arange(1, 3), degree=1, time=1.0)
    assert build_artifact(other, **kw).version == build_artifact(tiny_campaign, **kw).version
    added = other.extend(cp.design_grid((0.5, 4.0), (0.05, 0.2), 2))
    assert added == [4, 5] and other.pending() == [4, 5]
    assert np.allclose(cp.Campaign.open(tmp_path / "c").spec.design[:4], tiny_campaign.spec.design)


def test_artifact_round_trip_and_damage(tiny_campaign, tmp_path):
    art = build_artifact(tiny_campaign, "full", ells=np.arange(1, 3), degree=1, time=1.0)
    path = art.save(tmp_path / "a.npz")
    back = EmulatorArtifact.load(path)
    assert back.version == art.version and back.analysis == art.analysis
    assert back.provenance["campaign"]["digest"] == tiny_campaign.spec.digest()
    arrays = dict(np.load(path))
    arrays["coef"] = arrays["coef"] * 1.001
    np.savez(tmp_path / "b.npz", **arrays)
    with pytest.raises(ValueError, match="do not match its recorded version"):
        EmulatorArtifact.load(tmp_path / "b.npz")


@pytest.mark.slow
def test_process_pool_runner_computes_the_same_points(tiny_campaign, tmp_path):
    """Two worker processes (spawned) compute the same point files as the straight run."""
    other = cp.Campaign.create(tmp_path / "c", _tiny_spec())
    assert sorted(sc.run_campaign(other, workers=2, progress=False)) == [0, 1, 2, 3]
    for k in range(4):
        a, b = tiny_campaign.load_point(k)[0], other.load_point(k)[0]
        assert all(np.array_equal(a[key], b[key]) for key in a)


@pytest.mark.slow
def test_dask_runner_computes_the_same_points(tiny_campaign, tmp_path):
    """Two pending points run as tasks of an in-process Dask cluster equal the straight run's."""
    from distributed import Client

    other = cp.Campaign.create(tmp_path / "c", _tiny_spec())
    sc.run_campaign(other, indices=[0, 1], progress=False)
    with Client(processes=False, n_workers=1, threads_per_worker=1, dashboard_address=None) as client:
        assert sorted(sc.run_campaign_dask(other, client)) == [2, 3]
    for k in (2, 3):
        a, b = tiny_campaign.load_point(k)[0], other.load_point(k)[0]
        assert all(np.array_equal(a[key], b[key]) for key in a)


def test_slurm_script_submits_only_pending_points(tmp_path):
    campaign = cp.Campaign.create(tmp_path / "c", _tiny_spec(points=3))
    assert sc._ranges([0, 1, 2, 5, 7, 8]) == "0-2,5,7-8"
    for k in (1, 4):  # pretend these finished
        campaign.point_path(k).write_bytes(b"")
    text = sc.slurm_script(campaign, cpus_per_task=2, partition="short", max_parallel=3)
    assert "#SBATCH --array=0,2-3,5-8%3" in text
    assert "-m jaxcr campaign task" in text and '"$SLURM_ARRAY_TASK_ID"' in text
    assert "#SBATCH --partition=short" in text


# --- one-sky fits on an analytic artifact: the likelihood is then exactly right -------------

ELLS = np.arange(2, 12)
THETA0 = np.log([1.0, 0.1])
LOG_SCATTER = 0.1  # Cov(ln C) = 0.1·rel: data precise enough that the box does not truncate the estimates


def _analytic_moments(theta):
    """ln⟨C_ℓ⟩ quadratic in θ and a fixed relative covariance (correlation 0.3 across ℓ)."""
    u, v = theta[..., 0:1], theta[..., 1:2]
    ell = ELLS
    log_m = np.log(5.0 / (ell * (ell + 1.0))) + 0.8 * u - 0.6 * (v - THETA0[1]) * np.log(ell) + 0.1 * u * v
    rel = 0.3 * np.ones((len(ell), len(ell))) + 0.7 * np.eye(len(ell))
    rel = rel * np.outer(1 / np.sqrt(ell), 1 / np.sqrt(ell)) * 2.0
    return np.exp(log_m), rel


@pytest.fixture(scope="module")
def analytic_artifact():
    design = cp.design_grid((0.3, 3.0), (0.04, 0.25), 5)
    means, rel = _analytic_moments(design)
    covs = means[:, :, None] * means[:, None, :] * rel
    low, high = design.min(0), design.max(0)
    box = ((low + high) / 2, (high - low) / 2)
    emu = SpectrumEmulator.fit(design, means, covs, 10**9, 2, *box)
    # the log-normal model: ⟨ln C⟩ the same quadratic, Cov(ln C) = LOG_SCATTER·rel
    log_cov = np.broadcast_to(LOG_SCATTER * rel, covs.shape)
    log_emu = SpectrumEmulator.fit_log(design, np.log(means), log_cov, 10**9, 2, *box)
    return EmulatorArtifact(
        emulator=emu,
        log_emulator=log_emu,
        ells=ELLS,
        analysis=cp.Analysis("full"),
        time=100.0,
        theta_low=low,
        theta_high=high,
        n_realisations=10**9,
        noise_fraction=np.zeros(len(ELLS)),
        provenance=dict(campaign={}, design_points=len(design)),
    )


def _draw_skies(n, amplitude, seed, lognormal=False):
    """Skies from the exact model at THETA0: Gaussian in C_ℓ, or Gaussian in ln C_ℓ."""
    mean, rel = _analytic_moments(THETA0[None])
    rng = np.random.default_rng(seed)
    if lognormal:
        draws = np.exp(rng.multivariate_normal(np.log(amplitude * mean[0]), LOG_SCATTER * rel, size=n))
    else:
        cov = amplitude**2 * mean[0][:, None] * mean[0][None, :] * rel
        draws = rng.multivariate_normal(amplitude * mean[0], cov, size=n)
    return [
        ObservedSpectrum(
            ell=ELLS,
            cl=d,
            sigma=1e-3 * amplitude * mean[0],
            observatory="test",
            energy_tev=10.0,
            noise_level=0.0,
            dec_min_deg=-90.0,
            dec_max_deg=90.0,
        )  # fmt: skip
        for d in draws
    ]


@pytest.mark.slow
@pytest.mark.parametrize("form", ["gaussian", "lognormal"])
def test_sky_likelihood_value_and_gradient(analytic_artifact, form):
    """−2 ln L against numpy (slogdet, solve) at a point off the best fit (1e-10 relative), and its
    derivative against central finite differences (step 1e-5, tolerance 1e-6 relative)."""
    from jaxcr.inference.sky_fit import LikelihoodForm, SkyLikelihood

    sky = _draw_skies(1, 1e-8, 0, lognormal=True)[0]
    phi = np.array([0.2, np.log(0.12), np.log(1.1e-8)])
    theta, a = phi[:2], np.exp(phi[2])
    if form == "gaussian":
        emu, y, var = analytic_artifact.emulator, sky.cl, sky.sigma**2
    else:
        emu, y, var = analytic_artifact.log_emulator, np.log(sky.cl), (sky.sigma / sky.cl) ** 2
    like = SkyLikelihood(emu, jnp.asarray(y), jnp.asarray(var), jnp.arange(len(ELLS)), None, LikelihoodForm(form))
    f = poly_features((theta - emu.centre) / emu.scale, emu.degree)
    poly, h = f @ emu.coef, f @ emu.ftf_inv @ f
    if form == "gaussian":
        m = np.exp(poly)
        sig = a**2 * np.outer(m, m) * (emu.rel + h * emu.rel_emu) + np.diag(var)
        r = y - a * m
    else:
        sig = emu.rel + h * emu.rel_emu + np.diag(var)
        r = y - np.log(a) - poly
    expected = r @ np.linalg.solve(sig, r) + np.linalg.slogdet(sig)[1]
    assert float(like.terms(jnp.asarray(phi))[0]) == pytest.approx(expected, rel=1e-10)
    g = np.asarray(jax.grad(lambda p: like.terms(p)[0])(jnp.asarray(phi)))
    h = 1e-5
    fd = [(float(like.terms(jnp.asarray(phi + h * e))[0]) - float(like.terms(jnp.asarray(phi - h * e))[0])) / (2 * h)
          for e in np.eye(3)]  # fmt: skip
    assert np.allclose(g, fd, rtol=1e-6, atol=1e-6 * abs(expected))


@pytest.mark.slow
@pytest.mark.parametrize("form", ["gaussian", "lognormal"])
def test_sky_fit_coverage_on_exact_skies(analytic_artifact, form):
    """40 skies drawn from the likelihood's own distribution at the truth (Gaussian in C_ℓ or in
    ln C_ℓ): the 68 % profile intervals of σ² and ρ cover the truth in 0.68 ± 3·0.074 of them
    (binomial, 40 skies), the MLE scatter agrees with the expected one-sky precision (Fisher)
    within 35 % (the SE of a standard deviation from 40 draws is 11 %, and the MLE is not exactly
    Gaussian)."""
    a = 1e-8
    skies = _draw_skies(40, a, 2, lognormal=form == "lognormal")
    fits = [fit_sky(s, analytic_artifact, amplitude=a, form=form, profile_points=21, progress=False) for s in skies]
    est = np.log([[f.parameters["sigma2"], f.parameters["rho"]] for f in fits])
    expected = expected_precision(
        analytic_artifact, 1.0, 0.1, a, ell_max=int(ELLS[-1]), relative_error=1e-3, lognormal=form == "lognormal"
    )
    for i, name in enumerate(("sigma2", "rho")):
        cover = np.mean([f.intervals[name]["68"][0] <= np.exp(THETA0[i]) <= f.intervals[name]["68"][1] for f in fits])
        assert abs(cover - 0.68) <= 3 * 0.074, (name, cover)
        assert est[:, i].std(ddof=1) == pytest.approx(expected[name], rel=0.35), name
        assert abs(est[:, i].mean() - THETA0[i]) < 4 * est[:, i].std(ddof=1) / np.sqrt(40), name
    f = fits[0]
    assert f.dof == len(ELLS) - 2 and 0 < f.p_value < 1
    assert f.parameters["gradient_per_pc"] == pytest.approx(np.sqrt(a) / f.parameters["larmor_radius_pc"])


@pytest.mark.slow
def test_sky_fit_reports_gradient_and_flags_an_unconstrained_direction(analytic_artifact, tmp_path):
    """Amplitude free: the gradient interval contains its estimate; with huge measurement errors
    the data carry no information and both directions are flagged poorly constrained."""
    sky = _draw_skies(1, 1e-8, 3, lognormal=True)[0]
    free = fit_sky(sky, analytic_artifact, profile_points=21, progress=False)
    lo, hi, closed_lo, closed_hi = free.intervals["gradient_per_pc"]["68"]
    assert closed_lo and closed_hi and lo < free.parameters["gradient_per_pc"] < hi
    vague = dataclasses.replace(sky, sigma=sky.sigma * 1e5)
    res = fit_sky(vague, analytic_artifact, amplitude=1e-8, profile_points=21, progress=False)
    assert all(d["poorly_constrained"] for d in res.directions)
    assert any("poorly constrained" in flag for flag in res.flags)
    res.save(tmp_path)
    saved = json.loads((tmp_path / "fit.json").read_text())
    assert saved["artifact"]["version"] == analytic_artifact.version and (tmp_path / "fit.png").stat().st_size > 0


def test_sky_fit_input_errors(analytic_artifact):
    sky = _draw_skies(1, 1e-8, 4, lognormal=True)[0]
    with pytest.raises(ValueError, match="another analysis"):
        fit_sky(dataclasses.replace(sky, dec_max_deg=0.0), analytic_artifact, progress=False)
    longer = ObservedSpectrum(ell=np.arange(2, 15), cl=np.ones(13), sigma=np.ones(13), observatory="t",
                              energy_tev=1.0, noise_level=0.0, dec_min_deg=-90.0, dec_max_deg=90.0)  # fmt: skip
    with pytest.raises(ValueError, match=r"ℓ = \[12, 13, 14\] of the spectrum are not in the artifact"):
        fit_sky(longer, analytic_artifact, progress=False)
    with pytest.raises(ValueError, match="not both"):
        fit_sky(sky, analytic_artifact, amplitude=1.0, gradient_per_pc=0.01, progress=False)
    with pytest.raises(ValueError, match="outside the artifact's box"):
        fit_sky(sky, analytic_artifact, start=dict(sigma2=100.0, rho=0.1), progress=False)
    with pytest.raises(ValueError, match="b0_microgauss"):
        fit_sky(sky, analytic_artifact, b0_microgauss=-1.0, progress=False)


@pytest.mark.slow
def test_campaign_killed_by_signal_resumes_to_the_same_artifact(tiny_campaign, tmp_path):
    """`jaxcr campaign run` killed (SIGKILL) after its first point file, then run again: the same
    point files and artifact as the straight run."""
    folder = tmp_path / "c"
    cp.Campaign.create(folder, _tiny_spec())
    env = dict(os.environ, JAX_ENABLE_X64="1")
    proc = subprocess.Popen([sys.executable, "-m", "jaxcr", "campaign", "run", str(folder), "--quiet"], env=env)
    deadline = time.time() + 300
    while not list((folder / "points").glob("point_*.npz")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait()
    campaign = cp.Campaign.open(folder)
    assert campaign.pending(), "the run finished before it could be killed"
    rc = subprocess.run([sys.executable, "-m", "jaxcr", "campaign", "run", str(folder), "--quiet"], env=env).returncode
    assert rc == 0 and not campaign.pending()
    kw = dict(analysis="full", ells=np.arange(1, 3), degree=1, time=1.0)
    assert build_artifact(campaign, **kw).version == build_artifact(tiny_campaign, **kw).version


@pytest.mark.slow
def test_campaign_and_fit_commands_end_to_end(tmp_path, capsys):
    """`jaxcr campaign create/run/status/artifact` and `jaxcr fit` as a user types them (tiny
    campaign), then the errors a user meets: a spectrum of another analysis, a missing artifact."""
    from jaxcr.cli import main
    from jaxcr.observations import OBSERVATORIES, save_spectrum
    from jaxcr.synthetic import mock_sky_spectra

    folder, art = tmp_path / "c", tmp_path / "a.npz"
    create = ["campaign", "create", str(folder), "--nside", "4", "--realisations", "4", "--modes", "16", "--points", "3",
              "--times", "2", "4", "--observatory", "hawc+icecube", "--sigma2", "0.5", "2", "--rho", "0.05", "0.2"]  # fmt: skip
    assert main(create) == 0
    assert main(["campaign", "run", str(folder), "--quiet"]) == 0
    assert main(["campaign", "status", str(folder)]) == 0
    assert "9/9 design points done" in capsys.readouterr().out
    assert main(["campaign", "artifact", str(folder), "--ell-max", "5", "--time", "4", "--out", str(art)]) == 0
    model = cp.Campaign.open(folder).spec.model
    obs = OBSERVATORIES["hawc+icecube"]
    (sky,) = mock_sky_spectra(
        np.log([1.0, 0.1]), model, obs, time=4.0, amplitude=1e-8, n_skies=1, seed=3, lmax=5, events=1e11
    )
    save_spectrum(sky, tmp_path / "sky.csv")
    out = tmp_path / "fit"
    assert (
        main(
            [
                "fit",
                str(tmp_path / "sky.csv"),
                "--artifact",
                str(art),
                "--amplitude",
                "1e-8",
                "--out",
                str(out),
                "--quiet",
            ]
        )
        == 0
    )
    saved = json.loads((out / "fit.json").read_text())
    assert saved["settings"]["amplitude"] == 1e-8 and saved["dof"] == 3 and (out / "fit.png").exists()
    other = dataclasses.replace(sky, dec_max_deg=60.0)
    save_spectrum(other, tmp_path / "other.csv")
    assert main(["fit", str(tmp_path / "other.csv"), "--artifact", str(art)]) == 2
    assert "another analysis" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "sky.csv"), "--artifact", str(tmp_path / "none.npz")]) == 2
    assert "jaxcr campaign artifact" in capsys.readouterr().err
