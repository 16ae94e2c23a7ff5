"""Shared small configurations for the tests (importable from a child process too)."""

from jaxcr import Boris

# nside 4 (192 pixels), 2 realisations, 12 segments of ΩT ≈ 25 (500 Boris steps each).
RESUME_CONFIG = dict(
    turbulence=dict(sigma2=1.0, coherence_length=10.0, lambda_min=1.0, lambda_max=100.0, n_modes=16),
    nside=4,
    n_realisations=2,
    times=tuple(float(t) for t in range(25, 325, 25)),
    solver=Boris(dt=0.05),
    seed=5,
    fick_term=True,
    liouville_dipole=(0.0, 0.0, 1.0),
)


# --- an exactly known model spectrum for fits: ln⟨C_ℓ⟩ quadratic in θ, a fixed relative covariance ---
import numpy as np  # noqa: E402

from jaxcr.analysis import Analysis  # noqa: E402
from jaxcr.observations import ObservedSpectrum  # noqa: E402

ELLS = np.arange(2, 12)
THETA0 = np.log([1.0, 0.1])  # the truth (σ², ρ) of the exact skies
LOG_SCATTER = 0.1  # Cov(ln C) = 0.1·rel: data precise enough that the box does not truncate the estimates


def analytic_log_mean(theta, ells=ELLS):
    """ln⟨C_ℓ⟩ at θ (..., P): quadratic in (ln σ², ln ρ), and for a third coordinate γ (spectral
    index, linear) a curvature (γ − 11/3) ln²(ℓ/5) (not degenerate with ρ's tilt or σ²'s level)."""
    theta = np.asarray(theta, dtype=float)
    u, v = theta[..., 0:1], theta[..., 1:2]
    out = np.log(5.0 / (ells * (ells + 1.0))) + 0.8 * u - 0.6 * (v - THETA0[1]) * np.log(ells) + 0.1 * u * v
    if theta.shape[-1] > 2:
        out = out + (theta[..., 2:3] - 11.0 / 3.0) * np.log(ells / 5.0) ** 2
    return out


def analytic_relative_covariance(ells=ELLS):
    """A relative covariance with correlation 0.3 across ℓ and variance 2/ℓ."""
    rel = 0.3 * np.ones((len(ells), len(ells))) + 0.7 * np.eye(len(ells))
    return rel * np.outer(1 / np.sqrt(ells), 1 / np.sqrt(ells)) * 2.0


def analytic_artifact(parameters, points=5):
    """An artifact whose emulators reproduce the analytic model exactly (degree 2, N_B = 10⁹)."""
    from jaxcr.inference import EmulatorArtifact, SpectrumEmulator

    design = parameters.grid(points)
    means, rel = np.exp(analytic_log_mean(design)), analytic_relative_covariance()
    covs = means[:, :, None] * means[:, None, :] * rel
    low, high = design.min(0), design.max(0)
    box = ((low + high) / 2, (high - low) / 2)
    emu = SpectrumEmulator.fit(design, means, covs, 10**9, 2, *box)
    log_cov = np.broadcast_to(LOG_SCATTER * rel, covs.shape)
    log_emu = SpectrumEmulator.fit_log(design, np.log(means), log_cov, 10**9, 2, *box)
    return EmulatorArtifact(
        emulator=emu,
        log_emulator=log_emu,
        ells=ELLS,
        analysis=Analysis("full"),
        time=100.0,
        parameters=parameters.design_box(design),
        n_realisations=10**9,
        noise_fraction=np.zeros(len(ELLS)),
        provenance=dict(campaign={}, design_points=len(design)),
    )


def exact_skies(n, amplitude, seed, theta=THETA0, lognormal=False, relative_sigma=1e-3):
    """Skies drawn from the exact model at θ: Gaussian in C_ℓ, or Gaussian in ln C_ℓ."""
    mean, rel = np.exp(analytic_log_mean(np.asarray(theta)[None]))[0], analytic_relative_covariance()
    rng = np.random.default_rng(seed)
    if lognormal:
        draws = np.exp(rng.multivariate_normal(np.log(amplitude * mean), LOG_SCATTER * rel, size=n))
    else:
        draws = rng.multivariate_normal(amplitude * mean, amplitude**2 * np.outer(mean, mean) * rel, size=n)
    return [
        ObservedSpectrum(
            ell=ELLS,
            cl=d,
            sigma=relative_sigma * amplitude * mean,
            observatory="test",
            energy_tev=10.0,
            noise_level=0.0,
            analysis=Analysis("test"),
        )
        for d in draws
    ]
