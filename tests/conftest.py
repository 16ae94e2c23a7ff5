"""Test configuration: float64 everywhere (float32 phases and spherical transforms are not accurate)."""

import jax

jax.config.update("jax_enable_x64", True)

import pytest  # noqa: E402

# A small ensemble run shared by the diffusion and simulation tests: nside 8 (768 pixels),
# 8 realisations, 32 modes with λ_min = 1 r_L (so dt = 0.05 resolves the field), ΩT up to 10³.
SMALL_RUN_TURBULENCE = dict(sigma2=1.0, coherence_length=10.0, lambda_min=1.0, lambda_max=100.0, n_modes=32)


@pytest.fixture(scope="session")
def small_run():
    from jaxcr import Boris, EnsembleConfig, run_ensemble

    cfg = EnsembleConfig(
        turbulence=SMALL_RUN_TURBULENCE,
        nside=8,
        n_realisations=8,
        times=(0.01, 2.0, 20.0, 100.0, 400.0, 1000.0),
        solver=Boris(dt=0.05),
        seed=3,
    )
    return cfg, run_ensemble(cfg, progress=False)
