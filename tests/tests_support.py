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
