"""A semi-analytic ⟨C_ℓ⟩ of the converged sky from pairs of trajectories (Eq. 7 with a closure).

Eq. 7 writes the converged spectrum as the Legendre transform of the correlation of two CRs that
arrive at an angle θ = arccos μ, Γ(μ) = ⟨(r₁·g)(r₂·g)⟩ over the ensemble and over the pair's
orientation: ⟨C_ℓ⟩ = 2π ∫₋₁¹ dμ P_ℓ(μ) Γ(μ). The closure (lengths in r_L, times in 1/Ω, c = 1):

1. **Mean sky.** Every sky carries the ensemble's Fick dipole δ = 3Kg (Eq. 5), whose power is
   Eq. 6: 4π|Kg|², at ℓ = 1 only.
2. **Pairs.** Two CRs arriving at angle θ share one path until their separation, growing
   exponentially at the rate 1/τ (chaotic divergence in the turbulence), reaches the scale on which
   they see different fields; from then on they diffuse independently. Their common displacement
   has variance 2 t_s gᵀKg, where t_s = t₀ + τ ln(1/|p̂₁ − p̂₂|) is the separation time of chord
   distance |p̂₁ − p̂₂| = √(2(1 − μ)). With ∫₋₁¹ P_ℓ(μ) ln(1 − μ) dμ = −2/(ℓ(ℓ+1)) for ℓ ≥ 1 (t₀
   and the other constants integrate to zero against P_ℓ):

       ⟨C_ℓ⟩ = 4π|Kg|² δ_ℓ1 + 4π τ gᵀKg / (ℓ(ℓ+1)),   ℓ ≥ 1.

The pair part falls as 1/(ℓ(ℓ+1)) (slope −2 at large ℓ, flatter than Eq. 4's −3), and it obeys the
sum rule (Eq. 8): the multipoles up to L form by the time T = t₀ + τ ln L, and their pair power
Σ_{ℓ≤L} (2ℓ+1)⟨C_ℓ⟩/4π = τ gᵀKg (H_L + H_{L+1} − 1) = 2τ gᵀKg (ln L + γ − ½ + O(1/L)) grows as
2T gᵀKg, Eq. 8 with K̃s → K (H_L harmonic numbers, γ Euler's constant).

τ (the pair e-folding time) and K are transport properties of the turbulence at (σ², ρ); they are
measured from simulations (:func:`pair_time_from_spectrum`) and described by power laws in σ² and ρ
(:class:`PairModelLaw`) that carry the model to ρ outside the simulated box.
"""

from __future__ import annotations

import json
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, ArrayLike, Float

__all__ = ["pair_spectrum", "pair_time_from_spectrum", "PairModelLaw", "PairModelBaseline", "shipped_pair_model_law"]

SHIPPED_LAW = Path(__file__).parent / "data" / "pair_model_law.json"


def pair_spectrum(
    ell: ArrayLike,
    diffusion_tensor: Float[ArrayLike, "3 3"],
    gradient: Float[ArrayLike, "3"],
    pair_time: ArrayLike,
) -> Float[Array, " L"]:
    """⟨C_ℓ⟩ = 4π|Kg|² δ_ℓ1 + 4π τ gᵀKg/(ℓ(ℓ+1)) (module docstring) for multipoles ℓ ≥ 1.

    Args:
        ell: multipoles ℓ ≥ 1.
        diffusion_tensor: K in r_L·c.
        gradient: g = ∇n/n in 1/r_L.
        pair_time: τ, the e-folding time of pair separation, in 1/Ω.
    Returns:
        ⟨C_ℓ⟩ per ℓ (dimensionless); differentiable in K, g and τ.
    """
    if not isinstance(ell, jax.core.Tracer) and np.any(np.asarray(ell) < 1):
        raise ValueError(f"ell must be >= 1 (the pair part is a spectrum of ℓ ≥ 1); got {np.asarray(ell).tolist()}")
    ell = jnp.asarray(ell, dtype=float)
    k, g = jnp.asarray(diffusion_tensor, dtype=float), jnp.asarray(gradient, dtype=float)
    if k.shape != (3, 3) or g.shape != (3,):
        raise ValueError(f"diffusion_tensor must be (3, 3) and gradient (3,); got {k.shape} and {g.shape}")
    kg = k @ g
    fick = 4 * jnp.pi * jnp.sum(kg**2) * (ell == 1)
    return fick + 4 * jnp.pi * jnp.asarray(pair_time) * jnp.dot(g, kg) / (ell * (ell + 1))


def pair_time_from_spectrum(ell, cl, cl_se, diffusion_tensor, gradient) -> tuple[float, float]:
    """τ (1/Ω) and its standard error from a measured ⟨C_ℓ⟩ ± SE at ℓ ≥ 2 (the Fick dipole left
    out): the inverse-variance weighted mean of ℓ(ℓ+1)⟨C_ℓ⟩ / (4π gᵀKg)."""
    ell, cl, se = (np.asarray(a, dtype=float) for a in (ell, cl, cl_se))
    keep = ell >= 2
    if keep.sum() < 1:
        raise ValueError("pair_time_from_spectrum needs at least one multipole ℓ >= 2")
    g = np.asarray(gradient, dtype=float)
    scale = ell[keep] * (ell[keep] + 1) / (4 * np.pi * float(g @ np.asarray(diffusion_tensor) @ g))
    tau, tau_se = cl[keep] * scale, se[keep] * scale
    w = 1 / tau_se**2
    return float(np.sum(w * tau) / np.sum(w)), float(1 / np.sqrt(np.sum(w)))


class PairModelLaw(eqx.Module):
    """Power laws q = A (σ²)^b ρ^c of the model's transport inputs, fitted to simulations: K∥ and
    K⊥ (r_L·c, B0 along ẑ) and the pair time τ (1/Ω). :meth:`spectrum` gives ⟨C_ℓ⟩ at any (σ², ρ)
    from them; outside the (σ², ρ) the laws were fitted on it is an extrapolation."""

    k_parallel: tuple[float, float, float]
    k_perpendicular: tuple[float, float, float]
    pair_time: tuple[float, float, float]
    sigma2_range: tuple[float, float] = eqx.field(static=True)
    rho_range: tuple[float, float] = eqx.field(static=True)

    @staticmethod
    def power_law(coefficients, sigma2, rho):
        a, b, c = coefficients
        return a * jnp.asarray(sigma2, dtype=float) ** b * jnp.asarray(rho, dtype=float) ** c

    @classmethod
    def fit(cls, sigma2, rho, k_parallel, k_perpendicular, pair_time, pair_time_se) -> PairModelLaw:
        """Least-squares power laws in ln q over the simulated points (τ weighted by its error)."""
        s2, r = np.asarray(sigma2, dtype=float), np.asarray(rho, dtype=float)
        if len(s2) < 4:
            raise ValueError(f"fitting three coefficients per law needs >= 4 points; got {len(s2)}")
        design = np.stack([np.ones_like(s2), np.log(s2), np.log(r)], 1)

        def law(q, weights):
            w = np.sqrt(weights)[:, None]
            coef, *_ = np.linalg.lstsq(design * w, np.log(q) * w[:, 0], rcond=None)
            return (float(np.exp(coef[0])), float(coef[1]), float(coef[2]))

        tau, tau_se = np.asarray(pair_time, dtype=float), np.asarray(pair_time_se, dtype=float)
        ones = np.ones_like(s2)
        return cls(
            k_parallel=law(np.asarray(k_parallel), ones),
            k_perpendicular=law(np.asarray(k_perpendicular), ones),
            pair_time=law(tau, (tau / tau_se) ** 2),
            sigma2_range=(float(s2.min()), float(s2.max())),
            rho_range=(float(r.min()), float(r.max())),
        )

    def as_dict(self) -> dict:
        return dict(
            k_parallel=list(self.k_parallel),
            k_perpendicular=list(self.k_perpendicular),
            pair_time=list(self.pair_time),
            sigma2_range=list(self.sigma2_range),
            rho_range=list(self.rho_range),
        )

    @classmethod
    def from_dict(cls, d: dict) -> PairModelLaw:
        """The law from :meth:`as_dict` (or the ``law`` record of ``experiments/pair_model.py``)."""
        keys = ("k_parallel", "k_perpendicular", "pair_time", "sigma2_range", "rho_range")
        missing = [k for k in keys if k not in d]
        if missing:
            raise ValueError(f"a pair-model law needs {list(keys)}; missing {missing}")
        triples = {k: tuple(float(x) for x in d[k]) for k in keys[:3]}
        ranges = {k: tuple(float(x) for x in d[k]) for k in keys[3:]}
        if any(len(v) != 3 for v in triples.values()) or any(len(v) != 2 for v in ranges.values()):
            raise ValueError(f"a pair-model law has (A, b, c) per quantity and (low, high) ranges; got {d}")
        if any(v[0] <= 0 for v in triples.values()):
            raise ValueError(f"the laws' amplitudes A must be > 0; got {triples}")
        return cls(**triples, **ranges)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path=None) -> PairModelLaw:
        """The law in the JSON file ``path`` (its ``law`` record, as ``experiments/pair_model.py``
        writes it); the law shipped with jaxcr when ``path`` is None."""
        path = SHIPPED_LAW if path is None else Path(path)
        if not path.is_file():
            raise ValueError(
                f"pair-model law {str(path)!r} does not exist (write one: python experiments/pair_model.py)"
            )
        return cls.from_dict(json.loads(path.read_text())["law"])

    def diffusion_tensor(self, sigma2, rho) -> Float[Array, "3 3"]:
        """diag(K⊥, K⊥, K∥) in r_L·c at (σ², ρ), B0 along ẑ."""
        kpar = self.power_law(self.k_parallel, sigma2, rho)
        kperp = self.power_law(self.k_perpendicular, sigma2, rho)
        return jnp.diag(jnp.stack([kperp, kperp, kpar]))

    def spectrum(self, sigma2, rho, ell, gradient_direction=(0.0, 0.0, 1.0)) -> Float[Array, " L"]:
        """⟨C_ℓ⟩ for a unit gradient (|g| = 1/r_L) along ``gradient_direction`` at (σ², ρ)."""
        g = jnp.asarray(gradient_direction, dtype=float)
        return pair_spectrum(ell, self.diffusion_tensor(sigma2, rho), g, self.power_law(self.pair_time, sigma2, rho))


def shipped_pair_model_law() -> PairModelLaw:
    """The law shipped with jaxcr (``jaxcr/data/pair_model_law.json``: fitted by
    ``experiments/pair_model.py`` to the converged spectra of ``experiments/anchors.py``, σ² 0.3-3,
    ρ 0.05-0.2; its provenance is in the file)."""
    return PairModelLaw.load()


class PairModelBaseline(eqx.Module):
    """ln⟨C_ℓ⟩ of the pair model at θ = (ln σ², ln ρ) for a unit gradient at angle ψ to B0: the
    θ-dependence an emulator can carry beyond its design (:class:`jaxcr.inference.emulator.SpectrumEmulator`
    with a baseline fits only the observatory's transfer, ln⟨C_ℓ⟩_obs − ln⟨C_ℓ⟩_pair, to the design)."""

    law: PairModelLaw
    ells: tuple[int, ...] = eqx.field(static=True, converter=lambda e: tuple(int(x) for x in np.asarray(e)))
    cos2_gradient_b0: float = eqx.field(static=True, converter=float)

    def __check_init__(self):
        if not 0.0 <= self.cos2_gradient_b0 <= 1.0:
            raise ValueError(f"cos2_gradient_b0 must be in [0, 1]; got {self.cos2_gradient_b0}")

    def __call__(self, theta: Float[ArrayLike, "... 2"]) -> Float[Array, "... L"]:
        """ln⟨C_ℓ⟩ (unit |∇n/n| r_L) at θ = (ln σ², ln ρ), any leading shape; differentiable in θ."""
        c2 = self.cos2_gradient_b0
        g = np.array([np.sqrt(1.0 - c2), 0.0, np.sqrt(c2)])
        ells = np.asarray(self.ells)

        def one(t):
            return jnp.log(self.law.spectrum(jnp.exp(t[0]), jnp.exp(t[1]), ells, g))

        return jnp.vectorize(one, signature="(2)->(l)")(jnp.asarray(theta, dtype=float))
