"""The precision one observed sky can give: the Fisher information of the one-sky likelihood.

The likelihood of :mod:`jaxcr.inference.sky_fit` is Gaussian with a mean a⟨C_ℓ⟩(θ) and a covariance
Σ(θ, a) = a² S(θ) + diag(σ_ℓ²) that both depend on the parameters, so its Fisher matrix is
F_ij = ∂_iμᵀ Σ⁻¹ ∂_jμ + ½ tr(Σ⁻¹ ∂_iΣ Σ⁻¹ ∂_jΣ) (derivatives by automatic differentiation of
the emulator). Its inverse forecasts the 1σ of ln σ², ln ρ (and ln a) before any data are fitted.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .artifact import EmulatorArtifact

__all__ = ["expected_precision"]


def expected_precision(
    artifact: EmulatorArtifact,
    sigma2: float,
    rho: float,
    amplitude: float,
    *,
    ell_max: int,
    noise_level: float = 0.0,
    relative_error: float = 0.0,
    amplitude_known: bool = True,
    lognormal: bool = True,
) -> dict:
    """Expected 1σ (e-folds) of ln σ², ln ρ (and ln a) from one sky, by the Fisher information of
    the Gaussian likelihood with θ-dependent mean and covariance,
    F_ij = ∂_iμᵀΣ⁻¹∂_jμ + ½ tr(Σ⁻¹∂_iΣ Σ⁻¹∂_jΣ), for ℓ from the artifact's first to ``ell_max``,
    measurement errors from the shot noise (σ_ℓ ≈ sqrt(2/(2ℓ+1))·N) plus ``relative_error``·C_ℓ.
    ``lognormal``: the likelihood of :func:`jaxcr.inference.sky_fit.fit_sky`'s default form (in
    ln C_ℓ; the errors divided by C_ℓ), else its GAUSSIAN form."""
    rows = np.flatnonzero(artifact.ells <= ell_max)
    if len(rows) < 2:
        raise ValueError(f"ell_max = {ell_max} leaves fewer than 2 of the artifact's ℓ = {artifact.ells.tolist()}")
    ell = artifact.ells[rows]
    emu = artifact.emulator

    def moments(phi):
        theta, a = phi[:2], jnp.exp(phi[2])
        if lognormal:
            log_emu = artifact.log_emulator
            y = phi[2] + log_emu.log_mean(theta)[rows]
            # the errors of ln Ĉ are σ_ℓ/Ĉ_ℓ of the data, fixed (as in the fit): at the fiducial point
            c = jax.lax.stop_gradient(jnp.exp(y))
            var = (jnp.sqrt(2.0 / (2 * ell + 1)) * noise_level / c) ** 2 + relative_error**2
            return y, log_emu.log_covariance(theta, 1)[rows][:, rows] + jnp.diag(var)
        m = a * emu.mean(theta)[rows]
        var = (jnp.sqrt(2.0 / (2 * ell + 1)) * noise_level) ** 2 + (relative_error * m) ** 2
        sky = emu.sky_covariance(theta, 1)[rows][:, rows]
        return m, a**2 * sky + jnp.diag(var)

    phi = jnp.log(jnp.array([sigma2, rho, amplitude], dtype=float))
    mu, sigma = moments(phi)
    dmu = jax.jacfwd(lambda p: moments(p)[0])(phi)
    dsig = jax.jacfwd(lambda p: moments(p)[1])(phi)  # (n, n, 3)
    inv = jnp.linalg.inv(sigma)
    f = dmu.T @ inv @ dmu + 0.5 * jnp.einsum("ab,bci,cd,daj->ij", inv, dsig, inv, dsig)
    f = np.asarray(f)
    if amplitude_known:
        f = f[:2, :2]
    cov = np.linalg.inv(f)
    sd = np.sqrt(np.diag(cov))
    vals, vecs = np.linalg.eigh(cov[:2, :2])  # the best-measured combination of ln σ² and ln ρ
    best = vecs[:, 0] / np.max(np.abs(vecs[:, 0]))
    out = dict(
        best_combination=f"{best[0]:+.2f}·ln σ² {best[1]:+.2f}·ln ρ",
        best_combination_sigma=float(np.sqrt(vals[0]) * np.linalg.norm(best)),
        sigma2=float(sd[0]),
        rho=float(sd[1]),
        ell_max=int(ell_max),
        n_ell=len(rows),
        correlation=float(cov[0, 1] / (sd[0] * sd[1])),
    )
    if not amplitude_known:
        out["amplitude"] = float(sd[2])
    return out
