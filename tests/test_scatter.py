"""One sky's scatter of ln C_ℓ that follows θ (``SpectrumEmulator.fit_log(scatter_degree=1)``): the
variance model against known variances, the χ² of fresh skies, the artifact file, the flags."""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from jaxcr.analysis import Analysis  # noqa: E402
from jaxcr.inference.artifact import ARTIFACT_FORMAT, EmulatorArtifact  # noqa: E402
from jaxcr.inference.artifact_build import artifact_from_spectra  # noqa: E402
from jaxcr.inference.emulator import SpectrumEmulator  # noqa: E402
from jaxcr.io import load_checkpoint  # noqa: E402
from jaxcr.parametrisation import plane_wave_parametrisation  # noqa: E402

L = 5
Z = np.array([(a, b) for a in np.linspace(-1, 1, 4) for b in np.linspace(-1, 1, 4)])  # 16 design points
CORRELATION = 0.5 ** np.abs(np.subtract.outer(np.arange(L), np.arange(L)))
BASE = 0.5 + 0.1 * np.arange(L)  # Var(ln C_ℓ) at the box centre
SLOPE = np.array([0.7, -0.7])  # ln Var grows with z_σ², falls with z_ρ (as on the wide box)


def true_covariance(z):
    sd = np.sqrt(BASE * np.exp(np.asarray(z) @ SLOPE))
    return sd[:, None] * CORRELATION * sd[None, :]


def true_log_mean(z):
    z = np.asarray(z)
    return -np.log1p(np.arange(L)) + 0.8 * z[..., :1] - 0.5 * z[..., 1:] + 0.2 * z[..., :1] * z[..., 1:]


def test_a_log_linear_variance_is_recovered_exactly_at_the_design_points():
    """Per-point covariances whose variances are exactly log-linear in z (no sampling noise): the
    θ-following model reproduces each point's variances to round-off (1e-12 relative) and keeps the
    pooled correlation across ℓ; the pooled emulator (scatter_degree 0) gives the mean covariance
    everywhere. The model's mean over the points is the pooled variance by construction (1e-12)."""
    covs = np.array([true_covariance(z) for z in Z])
    means = true_log_mean(Z)
    follows = SpectrumEmulator.fit_log(Z, means, covs, 10**12, 2, np.zeros(2), np.ones(2), scatter_degree=1)
    pooled = SpectrumEmulator.fit_log(Z, means, covs, 10**12, 2, np.zeros(2), np.ones(2))
    for z, cov in zip(Z, covs):
        got = np.asarray(follows.log_covariance(z, 1))  # the emulator's own error is 10⁻¹² here
        assert np.diag(got) == pytest.approx(np.diag(cov), rel=1e-9)
        corr = got / np.sqrt(np.outer(np.diag(got), np.diag(got)))
        pooled_corr = covs.mean(0) / np.sqrt(np.outer(np.diag(covs.mean(0)), np.diag(covs.mean(0))))
        assert corr == pytest.approx(pooled_corr, rel=1e-9)
        assert np.asarray(pooled.log_covariance(z, 1)) == pytest.approx(covs.mean(0), rel=1e-9)
    factor = np.asarray(follows.scatter_factor(Z))
    assert factor.mean(0) == pytest.approx(np.ones(L), rel=1e-12)
    assert np.asarray(pooled.scatter_factor(Z)) == pytest.approx(np.ones((16, L)), abs=0)


def test_fresh_skies_at_the_corners_have_the_chi2_the_likelihood_expects():
    """Realisations drawn from a known Gaussian law of ln C_ℓ (variance ×3.5 at one corner of the
    box, ÷3.5 at the other; 16 points × 32 realisations, as a campaign), the emulator fitted to their
    sample moments, then 4000 fresh skies at each corner: with the variance following θ the mean χ²
    per ℓ (rᵀΛ⁻¹r/L, r about the emulated mean) is 1 within 0.25 (measured 1.03 and 1.07; 0.94-1.13
    over four seeds); the pooled covariance gives 2.8 and 0.22. The tolerance: the fitted ln Var at a corner carries the sampling error of 16
    points' variances from 32 realisations (about 0.25 each, leverage about 0.4 at a corner: 0.16,
    ×1.17 in the variance at 1σ); the Monte-Carlo error of the mean χ² is 1 %."""
    rng = np.random.default_rng(2026)
    sims = np.array([rng.multivariate_normal(true_log_mean(z), true_covariance(z), 32) for z in Z])  # (16, 32, L)
    x = sims - sims.mean(1, keepdims=True)
    covs = np.einsum("kri,krj->kij", x, x) / 31
    emus = {
        s: SpectrumEmulator.fit_log(Z, sims.mean(1), covs, 32, 2, np.zeros(2), np.ones(2), scatter_degree=s)
        for s in (0, 1)
    }
    for corner, pooled_range in (((0.9, -0.9), (2.2, 4.5)), ((-0.9, 0.9), (0.15, 0.5))):
        z = np.array(corner)
        skies = rng.multivariate_normal(true_log_mean(z), true_covariance(z), 4000)
        for s, emu in emus.items():
            r = skies - np.asarray(emu.log_mean(z))
            chi2 = np.einsum("ni,ij,nj->n", r, np.linalg.inv(np.asarray(emu.log_covariance(z, 1))), r) / L
            if s == 1:
                assert 0.75 < chi2.mean() < 1.33, (corner, chi2.mean())
            else:
                assert pooled_range[0] < chi2.mean() < pooled_range[1], (corner, chi2.mean())


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


def test_an_artifact_whose_scatter_follows_theta_round_trips_and_records_it(tmp_path):
    """The θ-following scatter is saved (format /3) and loaded back with the same version and the
    same covariance at any θ (bit for bit); a pooled artifact keeps format /2 and a version
    without the scatter. The recorded per-point ratio is each point's Var(ln C_ℓ) over the
    likelihood's variance there, recomputed with numpy (1e-12); it stays within 1/1.5-1.5 at every
    point, where over the pooled one it is about e/1.57 = 1.7 and e⁻¹/1.57 = 0.23 at the σ² edges
    (the variance ∝ e^{z_σ²}; 32 realisations leave about 25 % per point)."""
    design, spectra, logs = _spectra(np.random.default_rng(3))
    build = lambda s: artifact_from_spectra(
        BOX, design, spectra, np.zeros((9, 32, 2)), (1.0, 2.0), Analysis("full"), 4, ells=np.arange(1, 6), degree=1,
        scatter_degree=s,
    )  # fmt: skip
    follows, pooled = build(1), build(0)
    assert follows.version != pooled.version
    for art, fmt in ((follows, ARTIFACT_FORMAT), (pooled, "jaxcr-emulator/2")):
        path = art.save(tmp_path / f"{art.version}.npz")
        assert load_checkpoint(path, kind="artifact")[1]["format"] == fmt
        back = EmulatorArtifact.load(path)
        assert back.version == art.version
        theta = np.array([0.1, -2.5])
        assert np.array_equal(back.log_emulator.log_covariance(theta, 1), art.log_emulator.log_covariance(theta, 1))
    var = np.var(logs[:, :, 0, 1:6], axis=1, ddof=1)  # (K, L)
    model = np.diag(follows.log_emulator.rel) * np.asarray(follows.log_emulator.scatter_factor(design))
    ratio = np.asarray(follows.provenance["point_scatter"]["ratio"])
    assert ratio == pytest.approx(np.mean(var / model, axis=1), rel=1e-12)
    pooled_ratio = np.asarray(pooled.provenance["point_scatter"]["ratio"])
    assert pooled_ratio.max() > 1.5 and pooled_ratio.min() < 1 / 1.5  # the pooled variance is off at the edges
    assert 1 / 1.5 < ratio.min() and ratio.max() < 1.5
    assert "× the likelihood's (following θ)" in follows.summary() and "× the pooled one" in pooled.summary()


def test_a_scatter_degree_other_than_0_or_1_is_refused_before_any_work():
    design, spectra, _ = _spectra(np.random.default_rng(3))
    with pytest.raises(ValueError, match="scatter_degree must be 0 .* or 1 .*; got 2"):
        artifact_from_spectra(BOX, design, spectra, np.zeros((9, 32, 2)), (1.0, 2.0), Analysis("full"), 4,
                              scatter_degree=2)  # fmt: skip
