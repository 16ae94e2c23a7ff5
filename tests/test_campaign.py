"""Campaigns and emulator artifacts: pixel noise, noise response, convergence, resumption, runners,
the command line end to end."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import healpy as hp
import numpy as np
import pytest
from tests_support import analytic_artifact

from jaxcr.analysis import Analysis
from jaxcr.conventions import BackgroundMethod
from jaxcr.field import FieldPrecision
from jaxcr.inference import campaign as cp
from jaxcr.inference import scheduling as sc
from jaxcr.inference.artifact import EmulatorArtifact
from jaxcr.inference.artifact_build import artifact_from_spectra, build_artifact
from jaxcr.inference.convergence import change_p_value, convergence_table
from jaxcr.inference.emulator import SpectrumEmulator
from jaxcr.io import CheckpointError
from jaxcr.parametrisation import Parametrisation, plane_wave_parametrisation
from jaxcr.sky import declination_band_mask
from jaxcr.spectrum_model import SpectrumModel, pixel_noise_level
from jaxcr.turbulence_model import PlaneWaveGJ99

TINY_MODEL = SpectrumModel(nside=4, n_realisations=3, turbulence=PlaneWaveGJ99(n_modes=8))
BOX = plane_wave_parametrisation((0.5, 2.0), (0.05, 0.2))


def _tiny_spec(points=2, model=TINY_MODEL):
    analyses = (Analysis("full"), Analysis("south", -90.0, 0.0, BackgroundMethod.TIME_SCRAMBLING))
    return cp.CampaignSpec.on_grid(model, (1.0, 2.0), analyses, BOX, points)


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
    assert np.mean(pixel_noise_level(maps, cl)) == pytest.approx(expected, rel=5 * np.sqrt(2 / (n * 3072)) * 1.5)
    clean = pixel_noise_level(smooth[None], hp.anafast(smooth, lmax=2 * nside - 1, iter=3)[None])
    assert clean[0] < 1e-3 * 0.2


@pytest.mark.slow
def test_noise_transfer_full_sky_and_band():
    """Full sky, known background: white noise of level 1 gives t_ℓ = 1 and v_ℓ = 2/(2ℓ+1) (a
    χ² of 2ℓ+1 modes). A band: the pseudo-C_ℓ of masked white noise is f_sky times the level.
    Tolerances: 4 SEs of the Monte Carlo (400 maps)."""
    t, v = Analysis("full").noise_response(4)
    ell = np.arange(len(t))
    se = np.sqrt(2 / (2 * ell[1:] + 1) / 400)
    assert np.all(np.abs(t[1:] - 1) < 4 * se)
    assert np.allclose(v[1:] * (2 * ell[1:] + 1) / 2, 1.0, atol=4 * np.sqrt(2 / 400))
    t_band, v_band = Analysis("north", 0.0, 90.0).noise_response(4)
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


def test_convergence_table_flags_one_drifting_design_point_the_pooled_mean_hides():
    """16 design points, one of which still moves at the earlier time by 1 of the paired
    differences' SDs at every ℓ (z ≈ 4 with 32 realisations) while the others have settled. The
    mean of q over the points stays within 2 of its SEs of 1 (the pooled test alone calls it
    converged), but the per-point test must name point 5 and call the time not converged."""
    rng = np.random.default_rng(3)
    c = rng.normal(size=(16, 32, 2, 10))
    c[5, :, 0] += 1.4  # SD of the paired difference is sqrt(2)
    rows, chosen = convergence_table(c, (1.0, 2.0))
    q_pooled_ok = rows[0]["q"] - 1 <= 2 * rows[0]["q_se"]
    assert q_pooled_ok and rows[0]["points_changing"] == [5] and not rows[0]["converged"] and chosen == 1
    c[5, :, 0] -= 1.4
    rows, chosen = convergence_table(c, (1.0, 2.0))
    assert rows[0]["points_changing"] == [] and rows[0]["converged"] and chosen == 0


@pytest.mark.parametrize("kind", ["gaussian", "heavy-tailed"])
def test_change_p_value_false_alarm_rate_is_nominal_when_nothing_changes(kind):
    """Paired spectra of 32 realisations at two times, 10 multipoles, alike in distribution (the
    converged state): Gaussian, and log-normal with a factor shared by a realisation's two times
    and by all its multipoles (heavy tails and correlations as C_ℓ's have). Over 400 draws the
    share of p ≤ 0.05 must be 0.05 within 4 binomial SEs (±0.044). A mean shift of 0.8 SD at every
    ℓ must give p ≤ 0.05/16 (the per-point threshold for 16 points) in at least 95 % of 40 draws."""
    rng = np.random.default_rng(11)

    def pair_difference(shift=0.0):
        if kind == "gaussian":
            x = rng.normal(size=(32, 2, 10))
        else:
            shared = 0.8 * rng.normal(size=(32, 1, 1)) + 0.85 * rng.normal(size=(32, 1, 10))
            x = np.exp(shared + 0.85 * rng.normal(size=(32, 2, 10)))
        d = x[:, 0] - x[:, 1]
        return d + shift * d.std()

    p = np.array([change_p_value(pair_difference(), n_flips=2000, seed=i) for i in range(400)])
    assert abs(np.mean(p <= 0.05) - 0.05) <= 4 * np.sqrt(0.05 * 0.95 / 400)
    p_shift = np.array([change_p_value(pair_difference(0.8), n_flips=2000) for _ in range(40)])
    assert np.mean(p_shift <= 0.05 / 16) >= 0.95


def test_change_p_value_is_exact_over_all_sign_patterns():
    """With 2^R ≤ n_flips every sign pattern is enumerated: for R = 8 the p-value equals the share
    of the 256 patterns, computed one by one with paired_change, whose q reaches the observed one."""
    import itertools

    from jaxcr.inference.convergence import paired_change

    d = np.random.default_rng(2).normal(size=(8, 5)) + 0.5
    q_obs = float(paired_change(np.stack([d, np.zeros_like(d)], 1), 0))
    q_all = [float(paired_change(np.stack([np.array(s)[:, None] * d, np.zeros_like(d)], 1), 0))
             for s in itertools.product([1.0, -1.0], repeat=8)]  # fmt: skip
    assert change_p_value(d) == np.mean(np.array(q_all) >= q_obs * (1 - 1e-12))
    assert change_p_value(d) < 0.05  # the 0.5 shift is found


def test_infinite_time_limit_recovers_the_limit_and_its_error():
    """Spectra that approach their limit as ln⟨C_ℓ⟩(T) = ln C_∞ − b·t/T exactly (a realisation's
    scatter normalised away): the fit returns ln C_∞ and b to 1e-12. With log-normal scatter
    (0.8 per realisation, shared by its times, and 0.3 per time), over 200 repeats of 32
    realisations the bootstrap SE must match the spread of the estimates within 25 % (its own
    sampling error with 32 realisations is ≈ 13 %, and the bootstrap is biased low by ≈ √(31/32)
    plus the log-normal's skew) and the mean error must be below 0.3 of that spread."""
    from jaxcr.inference.convergence import infinite_time_limit

    rng = np.random.default_rng(0)
    times = np.array([1.0, 2.0, 4.0, 8.0]) * 100
    limit, b = np.log([5.0, 2.0, 1.0]), np.array([2.0, 1.5, 1.0])
    law = np.exp(limit - b * 100 / times[:, None])  # (T, L)
    scatter = np.exp(rng.normal(size=(32, 1, 3)) * 0.8 + rng.normal(size=(32, 4, 3)) * 0.1)
    got, se, slope = infinite_time_limit(law * scatter / scatter.mean(0), times, t_scale=100.0)
    assert np.allclose(got, limit, atol=1e-12) and np.allclose(slope, b, atol=1e-12) and np.all(se > 0)
    bias = 0.8**2 / 2 + 0.3**2 / 2  # ln E[scatter]
    errors, ses = [], []
    for i in range(200):
        scatter = np.exp(rng.normal(size=(32, 1, 3)) * 0.8 + rng.normal(size=(32, 4, 3)) * 0.3)
        got, se, _ = infinite_time_limit(law * scatter, times, t_scale=100.0, n_resamples=400, seed=i)
        errors.append(got - limit - bias)
        ses.append(se)
    spread = np.std(errors, axis=0)
    assert np.all(np.abs(np.mean(ses, axis=0) / spread - 1) < 0.25)
    assert np.all(np.abs(np.mean(errors, axis=0)) < 0.3 * spread)
    with pytest.raises(ValueError, match="T >= 3 times"):
        infinite_time_limit(law[None, :2] * np.ones((8, 1, 1)), times[:2])


def test_the_nearest_design_point_is_found_with_its_distance_in_coordinates():
    """CampaignSpec.nearest_point on a 3×3 grid over (ln σ², ln ρ): each design point is its own
    nearest at distance 0 (round-off of exp/log, 1e-12), and values 0.1 e-fold off in ln ρ from
    point 4 (the centre) return it with distance 0.1 (1e-12), the largest |Δθ| over coordinates."""
    spec = _tiny_spec(points=3)
    for k in range(9):
        index, distance = spec.nearest_point({n: float(v) for n, v in spec.values(k).items()})
        assert index == k and distance < 1e-12
    centre = {n: float(v) for n, v in spec.values(4).items()}
    index, distance = spec.nearest_point(dict(sigma2=centre["sigma2"], rho=centre["rho"] * np.exp(0.1)))
    assert index == 4 and distance == pytest.approx(0.1, abs=1e-12)


def test_campaign_spec_and_design_errors(tmp_path):
    with pytest.raises(ValueError, match="times must be > 0"):
        dataclasses.replace(_tiny_spec(), times=(0.0, 1.0))
    with pytest.raises(ValueError, match="dec_min_deg < dec_max_deg"):
        Analysis("bad", 10.0, -10.0)
    with pytest.raises(ValueError, match="analysis names must be unique"):
        dataclasses.replace(_tiny_spec(), analyses=(Analysis("a"), Analysis("a")))
    with pytest.raises(ValueError, match="points must be >= 2"):
        BOX.grid(1)
    with pytest.raises(ValueError, match="need low < high"):
        plane_wave_parametrisation((2.0, 0.5), (0.05, 0.2))
    with pytest.raises(ValueError, match=r"design must be finite points of shape \(K, 2\)"):
        dataclasses.replace(_tiny_spec(), design=np.zeros((3, 3)))
    with pytest.raises(ValueError, match="missing"):
        dataclasses.replace(_tiny_spec(), parameters=Parametrisation(BOX.parameters[:1]), design=np.zeros((2, 1)))
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
    added = other.extend(plane_wave_parametrisation((0.5, 4.0), (0.05, 0.2)).grid(2))
    assert added == [4, 5] and other.pending() == [4, 5]
    assert np.allclose(cp.Campaign.open(tmp_path / "c").spec.design[:4], tiny_campaign.spec.design)


def test_a_later_stored_time_leaves_the_earlier_spectra_bit_for_bit(tiny_campaign, tmp_path):
    """The same campaign storing only ΩT = 1 gives, at ΩT = 1, the spectra of the one storing 1 and
    2, bit for bit: each save interval is integrated on its own (⌈ΔT/dt⌉ equal steps), so a stop
    after T does not touch the orbit before it. A remake that keeps the original's stops up to T
    therefore reproduces its spectra at T on the same machine; one with other stops before T takes
    other steps, and chaos makes other samples of them."""
    import dataclasses

    short = cp.Campaign.create(tmp_path / "c", dataclasses.replace(tiny_campaign.spec, times=(1.0,)))
    sc.run_campaign(short, progress=False)
    for k in range(len(short.spec.design)):
        for name in ("cl_full", "cl_south", "pixel_noise"):
            assert np.array_equal(short.load_point(k)[0][name][:, 0], tiny_campaign.load_point(k)[0][name][:, 0])


def test_lengthened_point_is_recomputed_later_from_the_same_realisations(tiny_campaign, tmp_path, capsys):
    """Lengthening design point 1 by 2 moves its file aside and recomputes only it, at ΩT = 2, 4 for
    1, 2: its spectra at ΩT = 2 equal the old file's at ΩT = 2 (same realisations; to 1e-3
    relative, the Boris error of the two runs' steps, which differ where ⌈ΔT/dt⌉ rounds each save
    interval differently: 2e-4 measured; other realisations differ by O(1)), the other points' files are
    untouched, the spec survives its JSON with the same digest, a file of the old times is refused,
    and an artifact gives each θ the time scale of its nearest design point."""
    import shutil

    folder = tmp_path / "c"
    shutil.copytree(tiny_campaign.folder, folder)
    campaign = cp.Campaign.open(folder)
    old = {k: campaign.load_point(k)[0] for k in range(4)}
    assert campaign.lengthen([1], 2.0) == [1] and campaign.pending() == [1]
    assert (folder / "points" / "superseded" / "point_00001_x1.npz").exists()
    spec = cp.Campaign.open(folder).spec
    assert spec.digest() == tiny_campaign.spec.digest() and spec.lengthened() == [1]
    assert spec.point_times(1) == (2.0, 4.0) and spec.point_times(0) == (1.0, 2.0)
    assert "×2 at 1 of 4 points: [1]" in spec.times_text()
    sc.run_campaign(cp.Campaign.open(folder), progress=False)
    new = cp.Campaign.open(folder)
    for name in ("cl_full", "cl_south"):
        np.testing.assert_allclose(new.load_point(1)[0][name][:, 0], old[1][name][:, 1], rtol=1e-3, atol=0)
        assert not np.allclose(new.load_point(1)[0][name][:, 1], old[1][name][:, 1], rtol=1e-3)  # ΩT = 4 ≠ 2
        for k in (0, 2, 3):
            assert np.array_equal(new.load_point(k)[0][name], old[k][name])
    shutil.copy(folder / "points" / "superseded" / "point_00001_x1.npz", new.point_path(1))
    with pytest.raises(ValueError, match="backtracked to 1× the times, not the spec's 2×; delete it"):
        new.load_point(1)
    new.point_path(1).unlink()
    for bad in (1.0, 0.5, True, float("nan")):
        with pytest.raises(ValueError, match="factor must be a number > 1"):
            new.lengthen([0], bad)
    for bad in ([], [4], [-1], [0.5]):
        with pytest.raises(ValueError, match=r"points must be design-point indices in \[0, 3\]"):
            new.lengthen(bad)
    with pytest.raises(ValueError, match="time_scales must be one finite factor > 0 per design point, shape \\(4,\\)"):
        dataclasses.replace(spec, time_scales=np.ones(3))
    art = dataclasses.replace(analytic_artifact(BOX), time=2.0, provenance=dict(campaign=spec.as_dict()))
    near_1, near_0 = (
        dict(zip(("sigma2", "rho"), (float(v) for v in BOX.values(spec.design[k]).values()))) for k in (1, 0)
    )
    assert art.time_at(near_1) == 4.0 and art.time_at(near_0) == 2.0
    assert "×2 at 1 of 4 design points" in art.time_text()
    from jaxcr.recipes.campaign import main

    assert main(["lengthen", str(folder), "--points", "2", "--factor", "3"]) == 0
    out = capsys.readouterr().out
    t2 = ", ".join(f"{t:.4g}" for t in (3.0, 6.0))
    assert f"ΩT = {t2}" in out and "work: " in out and "×2, ×3 at 2 of 4 points: [1, 2]" in out


def test_added_realisations_keep_those_done_and_equal_a_campaign_made_with_them(tiny_campaign, tmp_path, capsys):
    """Raising N_B from 3 to 5 at design point 2 keeps its file's 3 realisations bit for bit and
    computes realisations 3 and 4 of the same stream: the file then equals that of a campaign made
    with N_B = 5 from the start (to 1e-12 of the largest entry: the same orbits in batches of other
    sizes differ only in round-off, ≤ 2e-14 measured), the other points are untouched, the spec keeps its
    digest and survives its JSON, the work left counts only the missing realisations, and an
    artifact weights each point by its own N_B."""
    import shutil

    folder = tmp_path / "c"
    shutil.copytree(tiny_campaign.folder, folder)
    campaign = cp.Campaign.open(folder)
    old = {k: campaign.load_point(k)[0] for k in range(4)}
    work = campaign.spec.point_particle_steps()
    assert campaign.add_realisations([2], 5) == [2] and campaign.pending() == [2]
    assert campaign.work_left() == pytest.approx({2: work[2] * 2 / 3}, rel=1e-12)
    spec = cp.Campaign.open(folder).spec
    assert spec.digest() == tiny_campaign.spec.digest() and spec.more_realisations() == [2]
    assert [spec.n_realisations(k) for k in range(4)] == [3, 3, 5, 3]
    assert "N_B 3 (#2: 5)" in cp.Campaign.open(folder).status()
    sc.run_campaign(cp.Campaign.open(folder), progress=False)
    new = cp.Campaign.open(folder)
    assert new.pending() == [] and new.realisations_done(2) == 5
    reference = cp.Campaign.create(tmp_path / "r", _tiny_spec(model=TINY_MODEL.replace(n_realisations=5)))
    reference.run_task(2)
    for name in ("cl_full", "cl_south", "pixel_noise"):
        grown = new.load_point(2)[0][name]
        assert np.array_equal(grown[:3], old[2][name])
        same = reference.load_point(2)[0][name]
        np.testing.assert_allclose(grown, same, rtol=0, atol=1e-12 * np.abs(same).max())
        for k in (0, 1, 3):
            assert np.array_equal(new.load_point(k)[0][name], old[k][name])
    art = build_artifact(new, analysis="full", ells=np.arange(1, 3), degree=1, time=1.0)
    assert art.n_realisations == 3 and art.provenance["realisations"] == [3, 3, 5, 3]
    assert "3-5 realisations" in art.summary()
    for bad in ([2], [0, 2]):
        with pytest.raises(ValueError, match="n_realisations must be an integer above the 5 realisations"):
            new.add_realisations(bad, 5)
    with pytest.raises(ValueError, match=r"points must be design-point indices in \[0, 3\]"):
        new.add_realisations([7], 9)
    with pytest.raises(ValueError, match="realisations must be at least the model's N_B = 3"):
        dataclasses.replace(spec, realisations=np.array([2, 3, 3, 3]))
    with pytest.raises(ValueError, match="holds 5 realisations, more than the spec's 3"):
        cp.Campaign(folder, tiny_campaign.spec).load_point(2)  # the spec before N_B was raised
    from jaxcr.recipes.campaign import main

    assert main(["more-realisations", str(folder), "--points", "0", "1", "--realisations", "4"]) == 0
    out = capsys.readouterr().out
    assert "4 realisations each" in out and "work: " in out and "(#0: 4, #1: 4, #2: 5)" in out


def test_a_point_with_twice_the_realisations_weighs_as_that_point_twice():
    """The emulator of design points of N_B,k = 32 with one at 64 equals, in its polynomial, its
    covariance of the coefficients and its residual sum of squares, the unweighted fit to the same design with
    that point repeated (two points of 32 at one θ with the same mean): weighted least squares
    with weights N_B,k. Tolerance 1e-10 relative: one solve against another of the same system."""
    rng = np.random.default_rng(3)
    design = BOX.grid(3)
    means = rng.normal(size=(9, 4)) + design @ rng.normal(size=(2, 4))
    a = rng.normal(size=(4, 4))
    covs = np.broadcast_to(a @ a.T + np.eye(4), (10, 4, 4))  # one covariance: the pooled one is the same in both
    box = ((BOX.coordinate_low + BOX.coordinate_high) / 2, (BOX.coordinate_high - BOX.coordinate_low) / 2)
    counts = np.full(9, 32)
    counts[4] = 64
    weighted = SpectrumEmulator.fit_log(design, means, covs[:9], counts, 2, *box)
    twice = np.r_[np.arange(9), 4]
    repeated = SpectrumEmulator.fit_log(design[twice], means[twice], covs, 32, 2, *box)
    for name in ("coef", "ftf_inv"):
        np.testing.assert_allclose(getattr(weighted, name), getattr(repeated, name), rtol=1e-10, atol=1e-12)
    # the same residual sum of squares, over 9 − 6 and 10 − 6 degrees of freedom
    np.testing.assert_allclose(weighted.reduced_chi2 * 3, repeated.reduced_chi2 * 4, rtol=1e-10)
    uniform = SpectrumEmulator.fit_log(design, means, covs[:9], 32, 2, *box)
    assert not np.allclose(weighted.coef, uniform.coef, rtol=1e-6)


def test_artifact_prefers_a_narrower_converged_range_to_a_wider_unconverged_one():
    """Spectra whose ℓ ≤ 3 have settled by the first of three times while ℓ 4-7 grow to the last (9
    design points, 32 log-normal realisations, no pixel noise): the artifact emulates ℓ 1..3,
    converged at the first time, rather than ℓ 1..7 at the last time, unconverged; with every ℓ
    still growing it falls back to ℓ 1..7 at the last time, flagged NOT converged. The wider range that
    did not converge is recorded with the points holding it back (here all nine)."""
    rng = np.random.default_rng(5)
    design = BOX.grid(3)
    ell = np.arange(8)
    level = np.exp(-2 * np.log1p(ell) + 0.3 * design[:, :1] - 0.2 * design[:, 1:])  # (K, L), smooth in θ
    sky = np.exp(0.3 * rng.normal(size=(9, 32, 1, 8)))  # each realisation's own sky, the same at every time
    jitter = np.exp(0.01 * rng.normal(size=(9, 32, 3, 8)))  # what changes between times within the noise

    def spectra(growth):  # growth (3 times, L)
        return level[:, None, None, :] * sky * growth[None, None] * jitter

    settled = np.where(ell <= 3, 1.0, np.array([[0.5], [0.75], [1.0]]))
    art = artifact_from_spectra(
        BOX, design, spectra(settled), np.zeros((9, 32, 3)), (1.0, 2.0, 4.0), Analysis("full"), 4
    )
    assert list(art.ells) == [1, 2, 3] and art.time == 1.0 and art.provenance["convergence"]["converged"]
    assert art.provenance["convergence"]["wider_unconverged"] == dict(ell_max=7, points=list(range(9)))
    growing = np.broadcast_to(np.array([[0.5], [0.75], [1.0]]), (3, 8))
    art = artifact_from_spectra(
        BOX, design, spectra(growing), np.zeros((9, 32, 3)), (1.0, 2.0, 4.0), Analysis("full"), 4
    )
    assert list(art.ells) == list(range(1, 8)) and art.time == 4.0 and not art.provenance["convergence"]["converged"]
    assert art.provenance["convergence"]["wider_unconverged"] is None


def test_artifact_records_each_design_points_scatter_and_a_fit_there_is_flagged():
    """Log-normal realisations (9 points × 32, no pixel noise) whose ln C_ℓ scatter 2× wider (4× the
    variance) at point 0 than elsewhere: the pooled artifact (sky_scatter "pooled") records per point the
    mean over ℓ of Var(ln C_ℓ) over the pooled variance. It equals the ratio computed from the realisations with
    numpy (1e-12), its mean over points is 1 (the pooled variance is the points' mean, exactly), and
    point 0's is about 4/(12/9) = 3. A fit nearest point 0 is flagged as too narrow; one nearest a
    point whose ratio lies within 1/1.5-1.5 is not."""
    from types import SimpleNamespace

    from jaxcr.inference.flags import fit_warnings

    rng = np.random.default_rng(8)
    design = BOX.grid(3)
    ell = np.arange(8)
    width = np.where(np.arange(9) == 0, 0.6, 0.3)[:, None, None, None]
    logs = -2 * np.log1p(ell) + 0.3 * design[:, :1, None, None] + width * rng.normal(size=(9, 32, 1, 8))
    spectra = np.exp(np.broadcast_to(logs, (9, 32, 2, 8)))  # the same at both times: converged
    art = artifact_from_spectra(BOX, design, spectra, np.zeros((9, 32, 2)), (1.0, 2.0), Analysis("full"), 4,
                                ells=np.arange(1, 6), degree=1, sky_scatter="pooled")  # fmt: skip
    ratio = np.asarray(art.provenance["point_scatter"]["ratio"])
    var = np.var(logs[:, :, 0, 1:6], axis=1, ddof=1)  # (K, L)
    assert ratio == pytest.approx(np.mean(var / var.mean(0), axis=1), rel=1e-12)
    assert ratio.mean() == pytest.approx(1.0, rel=1e-12) and 2.4 < ratio[0] < 3.6 and ratio[1:].max() < 1.5
    assert f"Var(ln C_ℓ) {ratio.min():.2g}-{ratio.max():.2g} × the pooled one" in art.summary()
    fit_at = lambda k: SimpleNamespace(phi=design[k], p_value=np.nan)
    flags = fit_warnings(art, fit_at(0), art.parameters)  # type: ignore[arg-type]
    assert any("times the variance of ln C_ℓ" in f and "too narrow" in f for f in flags), flags
    assert not any("variance of ln C_ℓ" in f for f in fit_warnings(art, fit_at(8), art.parameters))  # type: ignore[arg-type]


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
    (tmp_path / "c.npz").write_bytes(path.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="artifact .* damaged .* `jaxcr campaign artifact"):
        EmulatorArtifact.load(tmp_path / "c.npz")


@pytest.mark.slow
def test_campaign_at_the_float32_field_level_is_recorded_and_close_to_float64(tiny_campaign, tmp_path):
    """A campaign whose model evaluates the field with the float32 cosine: the level is in the
    campaign file and the artifact's provenance, and its spectra at ΩT = 1 (before chaos
    decorrelates the orbits: λT ≈ 0.2) agree with the float64 campaign's to 1e-4 relative (the
    field differs by ~3e-7 of b_rms)."""
    model = TINY_MODEL.replace(field_precision="float32")
    campaign = cp.Campaign.create(tmp_path / "c", _tiny_spec(model=model))
    sc.run_campaign(campaign, indices=[0], progress=False)
    assert json.loads((tmp_path / "c" / "campaign.json").read_text())["model"]["field_precision"] == "float32"
    assert cp.Campaign.open(tmp_path / "c").spec.model.field_precision == FieldPrecision.FLOAT32
    a, b = tiny_campaign.load_point(0)[0], campaign.load_point(0)[0]
    assert np.allclose(b["cl_full"][:, 0], a["cl_full"][:, 0], rtol=1e-4)
    sc.run_campaign(campaign, progress=False)
    art = build_artifact(campaign, "full", ells=np.arange(1, 3), degree=1, time=1.0)
    assert art.provenance["campaign"]["model"]["field_precision"] == "float32"


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
        dict(sigma2=1.0, rho=0.1), model, obs, time=4.0, amplitude=1e-8, n_skies=1, seed=3, lmax=5, events=1e11
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
    other = dataclasses.replace(sky, analysis=dataclasses.replace(sky.analysis, dec_max_deg=60.0))
    save_spectrum(other, tmp_path / "other.csv")
    assert main(["fit", str(tmp_path / "other.csv"), "--artifact", str(art)]) == 2
    assert "another analysis" in capsys.readouterr().err
    assert main(["fit", str(tmp_path / "sky.csv"), "--artifact", str(tmp_path / "none.npz")]) == 2
    assert "jaxcr campaign artifact" in capsys.readouterr().err


def test_convergence_time_of_one_point_and_times_in_separation_times(tmp_path):
    """Spectra of 64 realisations that grow until the third of five times and stay put (noise of
    known SE): T_conv is the third time; spectra still growing between the last two times give
    T_conv = inf. A campaign with separation_times stores at each point times × t_sep(σ², ρ)
    (t_sep = 13.9·(σ²)^−0.5·ρ^−1.1, exact to 1e-12), counts its work to each point's own last time,
    has its own digest, survives its JSON, and an artifact of it converts its time back to ΩT."""
    from jaxcr.inference.convergence import convergence_time, separation_time

    rng = np.random.default_rng(3)
    times = (10.0, 20.0, 40.0, 80.0, 160.0)
    level = np.array([0.2, 0.6, 1.0, 1.0, 1.0])
    c = level[None, :, None] + rng.normal(size=(64, 1, 8)) * 0.3 + rng.normal(size=(64, 5, 8)) * 0.01
    t_conv, p, alpha = convergence_time(c, times)
    assert t_conv == 40.0 and p[0] <= alpha < p[2] and alpha == 0.05
    growing = c * np.array([1.0, 1.0, 1.0, 1.0, 1.5])[None, :, None]
    assert convergence_time(growing, times)[0] == float("inf")
    assert float(separation_time(0.3, 0.05)) == pytest.approx(13.9 * 0.3**-0.5 * 0.05**-1.1, rel=1e-12)
    params = plane_wave_parametrisation((0.3, 3.0), (0.05, 0.2))
    model = SpectrumModel(nside=4, n_realisations=4, dt=0.05)
    spec = cp.CampaignSpec(model, (0.5, 4.0), (Analysis("full"),), params, params.grid(2), separation_times=True)
    for k in range(4):
        v = spec.values(k)
        t_sep = 13.9 * float(v["sigma2"]) ** -0.5 * float(v["rho"]) ** -1.1
        assert spec.point_times(k) == pytest.approx((0.5 * t_sep, 4 * t_sep), rel=1e-12)
        assert spec.point_particle_steps()[k] == pytest.approx(4 * 192 * 4 * t_sep / 0.05, rel=1e-12)
    absolute = cp.CampaignSpec(model, (0.5, 4.0), (Analysis("full"),), params, params.grid(2))
    assert absolute.point_times(3) == (0.5, 4.0) and absolute.digest() != spec.digest()
    assert cp.CampaignSpec.from_dict(json.loads(json.dumps(spec.as_dict()))).point_times(1) == spec.point_times(1)
    art = dataclasses.replace(analytic_artifact(params), time=4.0, provenance=dict(campaign=spec.as_dict()))
    assert art.time_at(dict(sigma2=1.0, rho=0.1)) == pytest.approx(4 * float(separation_time(1.0, 0.1)), rel=1e-12)
    assert (
        "t_sep" in art.summary()
        and analytic_artifact(params).time_at(dict(sigma2=1.0, rho=0.1)) == analytic_artifact(params).time
    )


def test_time_left_counts_compilation_once(tmp_path, monkeypatch):
    # Points done with 10 s of compiling in the first one and 2 s per 1e6 particle-steps after it: the
    # time left is the pending work at the median rate plus one compilation (not a mean over points,
    # which counts the compiling at every point). Exact arithmetic: 1e-9 relative.
    spec = _tiny_spec(points=3)
    campaign = cp.Campaign.create(tmp_path / "c", spec)
    m = spec.model
    work = [m.n_realisations * 12 * m.nside**2 * spec.times[-1] / dt for dt in spec.steps()]
    wall = {k: 2e-6 * work[k] + (10.0 if k == 0 else 0.0) for k in range(4)}
    for k in range(4):  # files of points 0-3 (their contents come from load_point below)
        campaign.point_path(k).touch()
    monkeypatch.setattr(campaign, "pending", lambda: list(range(4, 9)))
    monkeypatch.setattr(
        campaign, "load_point", lambda k: ({}, {"wall_time_s": wall[k], "n_realisations": m.n_realisations})
    )
    left = campaign.time_left()
    assert left["compile_s"] == pytest.approx(10.0, rel=1e-9)
    assert left["seconds"] == pytest.approx(2e-6 * sum(work[4:]) + 10.0, rel=1e-9)
    assert left["rate"] == pytest.approx(5e5, rel=1e-9)


@pytest.mark.slow
def test_mock_skies_through_the_observatory_average_to_the_campaign_ensemble(tmp_path):
    # Single skies against the campaign they should match, at the four corners of a box: 40 campaign realisations
    # (noise-corrected analysis spectra, what the artifact emulates) against 40 independent mock
    # skies made by the same physics (jaxcr.synthetic.mock_skies: backtracked, observed with
    # Poisson counts and a time-scrambled background, spectrum file, its pixel noise and the shot
    # noise's isotropic mean subtracted, divided by the amplitude). Per point and ℓ the two means
    # differ by z = Δ/SE; over 4 points × 5 multipoles Σz²/20 must stay below 2.2 (the z are
    # correlated across ℓ, which widens the spread of Σz²: a 2.5× offset, the one reported at
    # 0.2, gives z of 3-10 at these errors), and no |z| above 3.5.
    from jaxcr.observations import OBSERVATORIES
    from jaxcr.synthetic import mock_skies

    icecube = OBSERVATORIES["icecube"]
    n, ells, amplitude = 40, np.arange(1, 6), 1e-8
    model = SpectrumModel(nside=8, n_realisations=n, turbulence=PlaneWaveGJ99(n_modes=32), dt=0.05, seed=3)
    spec = cp.CampaignSpec.on_grid(model, (10.0, 40.0), (icecube.analysis,), BOX, 2)
    campaign = cp.Campaign.create(tmp_path / "c", spec)
    sc.run_campaign(campaign, progress=False)
    t_ell, _ = icecube.analysis.noise_response(model.nside)
    z = []
    for k in range(len(spec.design)):
        arrays, _ = campaign.load_point(k)
        ensemble = (arrays["cl_icecube"][:, -1] - arrays["pixel_noise"][:, -1, None] * t_ell)[:, ells]
        skies = mock_skies(spec.values(k), model, icecube, time=40.0, amplitude=amplitude, n_skies=n, seed=900 + k,
                           lmax=int(ells[-1]), n_resamples=4)  # fmt: skip
        single = np.stack([(s.spectrum.cl - s.spectrum.isotropic_mean)[ells - 1] for s in skies]) / amplitude
        se = np.hypot(ensemble.std(0, ddof=1), single.std(0, ddof=1)) / np.sqrt(n)
        z.append((single.mean(0) - ensemble.mean(0)) / se)
    z = np.array(z)
    assert np.sum(z**2) / z.size < 2.2 and np.abs(z).max() < 3.5, np.round(z, 2)


@pytest.mark.slow
def test_a_mock_sky_of_a_campaign_realisation_has_that_realisations_spectrum(tmp_path):
    """The same field through both paths: a campaign point's realisations (seed, stream 1 + k),
    remade as mock IceCube skies with ``stream=1 + k``, give per field and ℓ the point's
    noise-corrected analysis spectrum, to 2e-3. Both subtract the same map's pixel noise N̂ t_ℓ;
    what differs is (a) the observation's ratio counts/background, (δI − m)/(1 + m) on a ring of
    mean m, against the model's δI − m: O(sqrt(a)·|r|) ≈ 3e-4 at a = 10⁻⁸, ΩT = 8; (b) the shot
    noise's cross term with the signal, ≈ 2e-4 with 10¹⁸ events. Measured: at most 4.5e-4. A
    pipeline offset (a missing or doubled noise term, another mask or background, a transfer
    factor, the file's spectrum solved to another ℓ_max) moves fields by more. Fields of another
    stream are other fields (spectra differ by factors)."""
    from jaxcr.observations import OBSERVATORIES
    from jaxcr.synthetic import mock_skies

    icecube = OBSERVATORIES["icecube"]
    model = SpectrumModel(nside=8, n_realisations=3, turbulence=PlaneWaveGJ99(n_modes=16), dt=0.1, seed=11)
    spec = cp.CampaignSpec.on_grid(model, (8.0,), (icecube.analysis,), BOX, 2)
    campaign = cp.Campaign.create(tmp_path / "c", spec)
    k, ells, amplitude = 3, np.arange(1, 8), 1e-8
    sc.run_campaign(campaign, indices=[k], progress=False)
    arrays, _ = campaign.load_point(k)
    t_ell, _ = icecube.analysis.noise_response(model.nside)
    realisations = (arrays["cl_icecube"][:, 0] - arrays["pixel_noise"][:, 0, None] * t_ell)[:, ells]

    def observed(stream):
        skies = mock_skies(spec.values(k), model, icecube, time=8.0, amplitude=amplitude, n_skies=3, seed=11,
                           stream=stream, events=1e18, lmax=int(ells[-1]), n_resamples=2)  # fmt: skip
        return np.stack([(s.spectrum.cl - s.spectrum.isotropic_mean)[ells - 1] for s in skies]) / amplitude

    assert observed(1 + k) == pytest.approx(realisations, rel=2e-3)
    assert np.max(np.abs(np.log(observed(0) / realisations))) > 0.5


def test_campaign_create_keeps_gyro_resonant_modes_at_every_design_point(tmp_path, capsys):
    """2π r_L < λ_min means no mode resonates. By default λ_min/λ_c is 0.1, or π·ρ_min to one digit
    where smaller, with 16 modes per decade: the default box (ρ from 0.05) keeps 32 modes over
    0.1-10 λ_c; a box from ρ = 0.01 gets 40 over 0.03-10 λ_c (16·log10(333) = 40.4) and says so. A
    λ_min given as 0.1 there gets the warning, naming the 3 of 9 points and the λ_min that fixes
    it; 0.03 given does not."""
    from jaxcr.cli import main

    base = [
        "campaign",
        "create",
        "--nside",
        "4",
        "--realisations",
        "4",
        "--points",
        "3",
        "--times",
        "10",
        "--dt",
        "0.01",
    ]
    cases = (("default", [], False, (32, 0.1)), ("low", ["--rho", "0.01", "0.1"], False, (40, 0.03)),
             ("given", ["--rho", "0.01", "0.1", "--lambda-min-over-lc", "0.1"], True, (32, 0.1)),
             ("fixed", ["--rho", "0.01", "0.1", "--lambda-min-over-lc", "0.03"], False, (40, 0.03)))  # fmt: skip
    for name, extra, warned, (modes, lambda_min) in cases:
        assert main(base[:2] + [str(tmp_path / name)] + base[2:] + extra) == 0
        out = capsys.readouterr().out
        assert ("no gyro-resonant mode" in out) == warned, out
        turbulence = cp.Campaign.open(tmp_path / name).spec.model.turbulence
        assert (turbulence.n_modes, turbulence.lambda_min_over_lc) == (modes, lambda_min)
        assert ("modes: 40 over 0.03-10 λ_c" in out) == (name == "low")
        if warned:
            assert "3 of 9 design points (r_L/λ_c down to 0.01)" in out and "--lambda-min-over-lc 0.03 or less" in out


def test_campaign_create_prints_a_cost_that_scales_with_the_modes(tmp_path, capsys):
    """The printed CPU time uses the rate measured at the campaign's mode count: it reproduces both
    measured figures (3.3e7 particle-steps/s at N = 32, 1.18e7 at N = 256, to 1e-12) and, for the
    same work, N = 256 costs 3.3e7/1.18e7 = 2.8 times N = 32 (to 1 %: each printed to 3 digits);
    the fast field level counts at its measured 6.8e7 at N = 32, scaled alike."""
    from jaxcr.cli import main
    from jaxcr.recipes.campaign_cost import cpu_rate

    assert cpu_rate(32) == pytest.approx(3.3e7, rel=1e-12) and cpu_rate(256) == pytest.approx(1.18e7, rel=1e-12)
    hours = {}
    for n in (32, 256):
        create = ["campaign", "create", str(tmp_path / f"c{n}"), "--nside", "4", "--realisations", "4", "--modes",
                  str(n), "--points", "2", "--times", "100", "--dt", "0.05"]  # fmt: skip
        assert main(create) == 0
        line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("work:"))
        assert f"N = {n} modes" in line and "H200" in line
        hours[n] = float(line.split("≈ ")[1].split(" h")[0])
    assert hours[256] / hours[32] == pytest.approx(3.3e7 / 1.18e7, rel=1e-2)  # each printed to 3 digits
    assert cpu_rate(32, "fast") == pytest.approx(6.8e7, rel=1e-12)  # the fast level's measured campaign rate
    create[2] = str(tmp_path / "fast")
    assert main(create + ["--field-precision", "fast"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("work:"))
    assert "field fast" in line and float(line.split("≈ ")[1].split(" h")[0]) == pytest.approx(
        hours[256] * 1.18e7 / cpu_rate(256, "fast"), rel=1e-2
    )
