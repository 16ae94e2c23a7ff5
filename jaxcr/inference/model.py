"""The fits' forward model: the spectrum of a model sky as a function of θ = (ln σ², ln ρ).

ρ = r_L/λ_c sets the spectrum's shape (λ_min/λ_c and λ_max/λ_c fixed). For N_B field
realisations (keys from :func:`jaxcr.random.realisation_keys`, the same fields
:func:`jaxcr.run_ensemble` and :meth:`jaxcr.PlaneWaveTurbulence.sample` give for the same seed
and index) every pixel of a HEALPix sky is backtracked to ΩT = ``time``; the map δI = r(−T)·ĝ
(Eq. 7, unit gradient ĝ, B0 along ``b0_direction``, both in the observatory's equatorial frame)
goes through the observatory's mask (declination band), optional removal of the fitted ℓ ≤ L
structure, and the pseudo-C_ℓ estimator (healpy ``anafast`` equivalent). All of it is
:func:`jaxcr.forward.final_spectra` of the :class:`jaxcr.SkyModel` that
:meth:`SpectrumModel.sky_model` builds.
"""

from __future__ import annotations

import dataclasses
import enum

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from .. import _checks
from ..chaos import lyapunov_exponent
from ..conventions import BackgroundMethod, Estimator
from ..dynamics import Boris, check_step_resolves, default_step
from ..field import as_option
from ..forward import SkyModel, final_spectra, sample_fields
from ..observations import ObservedSpectrum
from ..random import realisation_keys
from ..sky import declination_band_mask
from ..spectra import max_lmax
from ..turbulence import TurbulenceNoise, TurbulenceParameters

__all__ = [
    "SpectrumModel",
    "realisation_spectra",
    "spectra_at",
    "model_moments",
    "model_lyapunov",
    "score_terms",
    "turbulence_at",
    "spectrum_covariance",
]


@dataclasses.dataclass(frozen=True)
class SpectrumModel:
    """Settings of the forward model (all but θ). Lengths in λ_c, times in 1/Ω.

    ``dt`` is the Boris step (1/Ω); None takes :func:`jaxcr.default_step`, min(0.1, λ_min/20),
    at the θ where a fit or scan starts (:meth:`resolved`), and keeps it for the whole fit so the
    model compiles once (at ρ = 0.1 and λ_min = 0.1 λ_c: λ_min = 1 r_L and dt = 0.05).
    The defaults are small enough for a CPU fit; for real data raise ``nside`` toward the
    observatory's resolution (C_ℓ is compared only for ℓ ≤ 2·nside − 1).
    """

    nside: int = 4
    n_realisations: int = 32
    time: float = 30.0
    n_modes: int = 32
    lambda_min_over_lc: float = 0.1
    lambda_max_over_lc: float = 10.0
    dt: float | None = None
    b0_direction: tuple = (0.0, 0.0, 1.0)
    gradient_direction: tuple = (1.0, 0.0, 0.0)
    dec_min_deg: float = -90.0
    dec_max_deg: float = 90.0
    remove_ell_max: int | None = None
    estimator: Estimator = Estimator.PSEUDO
    background: BackgroundMethod = BackgroundMethod.KNOWN
    gaussian_amplitudes: bool = False
    seed: int = 0

    def validate(self) -> None:
        _checks.check_power_of_two("nside", self.nside)
        _checks.check_positive_int("n_realisations", self.n_realisations)
        if self.n_realisations < 2:
            raise ValueError("n_realisations must be >= 2 (standard errors come from the spread over realisations)")
        _checks.check_positive("time", self.time)
        _checks.check_positive_int("n_modes", self.n_modes)
        if self.dt is not None:
            _checks.check_positive("dt", self.dt)
        _checks.check_positive("lambda_min_over_lc", self.lambda_min_over_lc)
        _checks.check_less("lambda_min_over_lc", self.lambda_min_over_lc, "lambda_max_over_lc", self.lambda_max_over_lc)
        for name in ("b0_direction", "gradient_direction"):
            _checks.check_unit_vectors(name, np.asarray(getattr(self, name), dtype=float))
        _checks.check_bool("gaussian_amplitudes", self.gaussian_amplitudes)
        as_option(Estimator, "estimator", self.estimator)
        as_option(BackgroundMethod, "background", self.background)
        _checks.check_seed("seed", self.seed)

    def as_dict(self) -> dict:
        """The settings as JSON-ready values (options as their strings, directions as lists)."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.value if isinstance(v, enum.Enum) else (list(v) if isinstance(v, tuple) else v)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "SpectrumModel":
        """The model of :meth:`as_dict`'s values."""
        d = dict(d)
        for key in ("b0_direction", "gradient_direction"):
            d[key] = tuple(d[key])
        return cls(**d)

    @classmethod
    def for_spectrum(cls, spectrum: ObservedSpectrum, **settings) -> "SpectrumModel":
        """A model at the data's resolution: the smallest nside whose lmax = 2·nside − 1 reaches the
        spectrum's largest ℓ (at least 2), seen as the spectrum's observatory sees it; ``settings``
        are the other :class:`SpectrumModel` fields."""
        if "nside" in settings:
            raise ValueError("for_spectrum chooses nside from the data; use SpectrumModel(nside=...) to set it")
        nside = 2
        while 2 * nside - 1 < int(np.max(spectrum.ell)):
            nside *= 2
        model = cls(nside=nside, **settings).with_observatory(spectrum)
        model.validate()
        return model

    def with_observatory(self, spectrum: ObservedSpectrum) -> "SpectrumModel":
        """The same model seen as the spectrum's observatory sees it: its band (mask), background
        method (ring means removed if time-scrambled), ℓ ≤ L removal and estimator."""
        return dataclasses.replace(
            self,
            dec_min_deg=spectrum.dec_min_deg,
            dec_max_deg=spectrum.dec_max_deg,
            remove_ell_max=spectrum.remove_ell_max,
            estimator=spectrum.estimator,
            background=spectrum.background,
        )

    def resolved(self, theta) -> "SpectrumModel":
        """The model with ``dt`` fixed: its own, or the default step at θ (concrete)."""
        params = turbulence_at(np.asarray(theta, dtype=float), self)
        if self.dt is not None:
            check_step_resolves(float(self.dt), params.resolution_scales())
            return self
        return dataclasses.replace(self, dt=default_step(params))

    @property
    def lmax(self) -> int:
        return max_lmax(self.nside)

    def sky_model(self, theta, differentiable: bool = False) -> SkyModel:
        """The :class:`jaxcr.SkyModel` at θ = (ln σ², ln ρ) (θ may be traced; ``dt`` must be set).
        ``differentiable``: Boris steps one diffrax step each (``fused=False``), so that JAX can
        differentiate through the orbits."""
        if self.dt is None:
            raise ValueError("SpectrumModel.dt is unset: call model.resolved(theta) first")
        mask = None
        if (self.dec_min_deg, self.dec_max_deg) != (-90.0, 90.0):
            mask = declination_band_mask(self.nside, self.dec_min_deg, self.dec_max_deg)
        return SkyModel(
            turbulence=turbulence_at(theta, self),
            b0_direction=jnp.asarray(self.b0_direction, dtype=float),
            gradients=jnp.asarray([self.gradient_direction], dtype=float),
            gradient_names=("gradient",),
            times=(float(self.time),),
            nside=self.nside,
            solver=Boris(dt=float(self.dt), fused=not differentiable),
            mask=mask,
            remove_ell_max=self.remove_ell_max,
            gaussian_amplitudes=self.gaussian_amplitudes,
            estimator=as_option(Estimator, "estimator", self.estimator),
            background=as_option(BackgroundMethod, "background", self.background),
            dec_band=(float(self.dec_min_deg), float(self.dec_max_deg)),
        )

    def fields(self, theta):
        """The model's N_B field realisations at θ, stacked (:func:`jaxcr.forward.sample_fields`)."""
        model = self.resolved(theta)
        return sample_fields(
            model.sky_model(jnp.asarray(theta, dtype=float)), realisation_keys(self.seed, self.n_realisations)
        )


def turbulence_at(theta, model: SpectrumModel) -> TurbulenceParameters:
    """Turbulence parameters in r_L at θ = (ln σ², ln ρ): λ_c = 1/ρ, λ_min,max = (λ_min,max/λ_c)/ρ."""
    sigma2, rho = jnp.exp(theta[0]), jnp.exp(theta[1])
    return TurbulenceParameters(
        sigma2=sigma2,
        coherence_length=1.0 / rho,
        lambda_min=model.lambda_min_over_lc / rho,
        lambda_max=model.lambda_max_over_lc / rho,
        n_modes=model.n_modes,
    )


def realisation_spectra(
    theta, model: SpectrumModel, adjoint: diffrax.AbstractAdjoint | None = None
) -> Float[Array, "R l"]:
    """Per-realisation pseudo-C_ℓ (R, lmax+1) of the unit-gradient model sky at θ = (ln σ², ln ρ)."""
    return spectra_at(jnp.broadcast_to(jnp.asarray(theta, dtype=float), (model.n_realisations, 2)), model, adjoint)


def spectra_at(thetas, model: SpectrumModel, adjoint: diffrax.AbstractAdjoint | None = None, stream: int = 0):
    """Spectra of realisation i at θ_i (thetas of shape (R, 2)); one backtracking run each.

    Realisation keys are :func:`jaxcr.random.realisation_keys` (seed, R, stream=``stream``);
    they are passed traced, so models that differ only in ``seed`` or stream share one compiled
    function (synthetic skies, design points and fits do not recompile). ``dt`` unset: the
    default step at the first θ.
    """
    if model.dt is None:
        if _checks.is_traced(thetas):
            raise ValueError("SpectrumModel.dt is unset and θ is traced: call model.resolved(theta) before tracing")
        model = model.resolved(np.asarray(thetas)[0])
    keys = realisation_keys(model.seed, model.n_realisations, stream=stream)
    return _spectra_compiled(thetas, keys, dataclasses.replace(model, seed=0), adjoint)


@eqx.filter_jit
def _spectra_compiled(thetas, keys, model: SpectrumModel, adjoint):
    def one(args):
        key, theta = args
        return final_spectra(model.sky_model(theta, differentiable=adjoint is not None), key[None], adjoint)[0, 0]

    # several realisations per map (≈ 2048 particles) keep the vector units busy at small nside
    batch = max(1, min(model.n_realisations, 2048 // (12 * model.nside**2)))
    return jax.lax.map(one, (keys, thetas), batch_size=batch)


def spectrum_covariance(spectra):
    """ℓ-ℓ' covariance S of per-realisation spectra (R, L) → (L, L): the cosmic variance of one sky."""
    x = spectra - spectra.mean(0)
    return x.T @ x / (spectra.shape[0] - 1)


def model_moments(model: SpectrumModel, thetas, first_stream: int):
    """Mean (K, L) and per-realisation covariance (K, L, L) of the model at each θ of ``thetas``;
    point i draws its own N_B realisations from stream ``first_stream + i`` of the model seed
    (independent points for the emulator; the same streams give the same realisations)."""
    means, covs = [], []
    for i, theta in enumerate(np.asarray(thetas, dtype=float)):
        spectra = spectra_at(
            jnp.broadcast_to(jnp.asarray(theta), (model.n_realisations, 2)), model, stream=first_stream + i
        )
        means.append(np.asarray(spectra.mean(0)))
        covs.append(np.asarray(spectrum_covariance(spectra)))
    return np.array(means), np.array(covs)


def score_terms(theta, model: SpectrumModel):
    """d ln p/d ln σ² of each realisation's Gaussian amplitudes (:meth:`TurbulenceNoise.sigma2_score`)."""
    keys = realisation_keys(model.seed, model.n_realisations)
    return jax.vmap(lambda k: TurbulenceNoise.sample(k, model.n_modes, gaussian_amplitudes=True).sigma2_score())(keys)


def model_lyapunov(theta, model: SpectrumModel, n_fields: int = 2, n_orbits: int = 16):
    """λ (units Ω) and its standard error for the model's orbits at θ: the first ``n_fields``
    realisations, ``n_orbits`` pixel directions each, averaged over ΩT = max(T, 30)."""
    model = model.resolved(theta)
    sky = model.sky_model(jnp.asarray(theta, dtype=float))
    fields = sample_fields(sky, realisation_keys(model.seed, min(n_fields, model.n_realisations)))
    dirs = sky.directions
    dirs = dirs[np.linspace(0, dirs.shape[0] - 1, min(n_orbits, dirs.shape[0])).astype(int)]
    assert model.dt is not None  # resolved above
    est = lyapunov_exponent(fields, dirs, max(model.time, 30.0), dt=float(model.dt))
    return float(est.exponent), float(est.stderr)
