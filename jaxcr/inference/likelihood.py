"""Likelihoods of observed spectra: one abstract interface, one final −2 ln L.

Every likelihood here is Gaussian, or a multivariate Student-t (:mod:`jaxcr.inference.tails`),
in some data vector y (C_ℓ − N, or ln(C_ℓ − N)) with a mean μ(φ) and a covariance Σ(φ) that both
depend on the parameters φ (the coordinates of named parameters, :mod:`jaxcr.parametrisation`). A
subclass says only what μ and Σ are (:meth:`AbstractLikelihood.moments`), what y is and where the
emulated box ends; the value is computed once, here, for all of them:

    −2 ln L(φ) = D² + ln det Σ,   D² = rᵀ Σ⁻¹ r,   r = y − μ(φ),

or, with ν degrees of freedom, (ν + n) ln(1 + D²/(ν − 2)) + ln det Σ + n ln((ν − 2)/ν), with Σ
factored by Cholesky. The determinant is kept: where Σ grows with the model, leaving it out
would favour a larger model simply because it claims larger errors. Outside the box of an
emulator (which does not extrapolate) the objective adds ``BARRIER``·Σ(|z| − 1)² in the box
coordinates z. A non-finite value raises, also under ``jit``.

One sky on an emulator artifact (:class:`LogNormalSky`, :class:`GaussianSky`): the sky is one
realisation of the local turbulence, so its spectrum scatters about the ensemble mean ⟨C_ℓ⟩(θ)
by the cosmic variance, correlated across ℓ (a sky that wanders far raises every multipole).
With the amplitude a = (|∇n/n| r_L)²:

* ``LogNormalSky`` (the default): y = ln(Ĉ_ℓ − N), μ = ln a + ⟨ln C_ℓ⟩(θ), Σ = Λ(θ) +
  diag(σ_ℓ²/(Ĉ_ℓ − N)²), Λ the covariance of ln C_ℓ of single skies (the emulator's error included;
  pooled over the design, or local to θ where the artifact's emulator has it:
  :meth:`jaxcr.inference.emulator.SpectrumEmulator.log_covariance`);
* ``GaussianSky``: y = Ĉ_ℓ − N, μ = a⟨C_ℓ⟩(θ), Σ = a² S(θ) + diag(σ_ℓ²);
* ``OffsetLogNormalSky``: the offset log-normal form of band powers with noise (Bond, Jaffe &
  Knox 2000, ApJ 533, 19): y = ln Ĉ_ℓ (the spectrum with its noise), μ = ln(s_ℓ + N_ℓ) with the
  median signal s_ℓ = a·exp⟨ln C_ℓ⟩(θ), Σ = (w wᵀ)∘Λ(θ) + diag(σ_ℓ²/Ĉ_ℓ²), w_ℓ = s_ℓ/(s_ℓ + N_ℓ).
  Where the signal dominates it is ``LogNormalSky``; where the noise does, the sky's scatter
  fades (w → 0) and y scatters by the measurement alone. It takes every multipole, Ĉ_ℓ ≤ N_ℓ
  included (only Ĉ_ℓ > 0 is needed, which a spectrum with its noise always has).

Each takes ``dof`` ν: None (Gaussian), or a multivariate t of the same mean and covariance with ν
degrees of freedom, whose tails are heavier (:mod:`jaxcr.inference.tails`).

N is the noise level of the spectrum file; the sky forms take it per multipole, N_ℓ, the mean
spectrum of isotropic skies through the analysis (the file's isotropic band), where the file has
one: the ring-mean removal of time-scrambling takes the noise's m = 0 part, so the flat level
overstates the noise at small ℓ (by 2.4× at ℓ = 1 for IceCube's band).

Several spectra (energies, observatories) are fitted together by :class:`JointLikelihood`: their
data vectors are independent, so −2 ln L is the sum of the members' (:meth:`~AbstractLikelihood.blocks`), with the
parameters of the same name shared; :class:`Reparametrised` writes a member in other parameters
(spectra at several energies share λ_c while each has its own ρ = r_L(E)/λ_c).
"""

from __future__ import annotations

import abc
import enum

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float

from . import tails
from .emulator import SpectrumEmulator

__all__ = [
    "BARRIER",
    "LikelihoodForm",
    "AbstractLikelihood",
    "AbstractSkyLikelihood",
    "LogNormalSky",
    "GaussianSky",
    "OffsetLogNormalSky",
    "JointLikelihood",
    "Reparametrised",
]

BARRIER = 1e4  # −2 ln L penalty per (|z| − 1)² outside an emulator's box (the emulator does not extrapolate)


class LikelihoodForm(enum.StrEnum):
    """The distribution of one sky's spectrum: LOGNORMAL (Gaussian in ln(C_ℓ − N),
    :class:`LogNormalSky`, the default), GAUSSIAN (Gaussian in C_ℓ − N, :class:`GaussianSky`) or
    OFFSET_LOGNORMAL (Gaussian in ln C_ℓ with the noise inside, :class:`OffsetLogNormalSky`)."""

    LOGNORMAL = "lognormal"
    GAUSSIAN = "gaussian"
    OFFSET_LOGNORMAL = "offset-lognormal"


class AbstractLikelihood(eqx.Module):
    """A Gaussian or Student-t likelihood of a data vector with parameter-dependent mean and
    covariance (module docstring). Subclasses give :attr:`names`, :meth:`data`, :meth:`moments`
    and :meth:`box_excess`; the value (:meth:`terms`, :meth:`objective`) is final."""

    names: eqx.AbstractVar[tuple[str, ...]]

    @abc.abstractmethod
    def data(self) -> Float[Array, " n"]:
        """The data vector y."""

    @abc.abstractmethod
    def moments(self, phi: Float[Array, " p"]) -> tuple[Float[Array, " n"], Float[Array, "n n"]]:
        """Mean μ(φ) and covariance Σ(φ) of y, the measurement errors included."""

    @abc.abstractmethod
    def box_excess(self, phi: Float[Array, " p"]) -> Float[Array, ""]:
        """Σ max(|z| − 1, 0)² over the box coordinates z of the emulated parameters (0 inside)."""

    def blocks(self, phi: Float[Array, " p"]) -> tuple[tuple[Array, Array, Array, float | None], ...]:
        """The independent parts of y, each (y_b, μ_b, Σ_b, ν_b) at φ (ν_b None: Gaussian, else the
        degrees of freedom of a multivariate t). One Gaussian block by default; a sky likelihood's
        may be a t, and a :class:`JointLikelihood` has its members' blocks."""
        return ((self.data(), *self.moments(phi), None),)

    def toy_blocks(self, phi: Float[Array, " p"]) -> tuple[tuple[Array, Array, float | None], ...]:
        """(μ_b, Σ_b, ν_b) of the toy data drawn at φ to calibrate intervals
        (:mod:`jaxcr.inference.neyman`, :func:`draw_toys`): by default the likelihood's own; a sky
        likelihood whose artifact holds each design point's own scatter draws them with that
        (:class:`AbstractSkyLikelihood`)."""
        return tuple(b[1:] for b in self.blocks(phi))

    def block_distances(self, phi: Float[Array, " p"]) -> tuple[tuple[Array, Array, int, float | None], ...]:
        """Per block (:meth:`blocks`) at φ: (D²_b = r_bᵀΣ_b⁻¹r_b, ln det Σ_b, n_b, ν_b), Σ_b factored
        by Cholesky; what −2 ln L (:meth:`terms`) and the goodness of fit are made of."""
        out = []
        for y, mean, cov, dof in self.blocks(phi):
            chol = jnp.linalg.cholesky(cov)
            w = jax.scipy.linalg.solve_triangular(chol, y - mean, lower=True)
            out.append((jnp.dot(w, w), 2 * jnp.sum(jnp.log(jnp.diag(chol))), int(y.shape[0]), dof))
        return tuple(out)

    def terms(self, phi: Float[Array, " p"]) -> tuple[Float[Array, ""], Float[Array, ""]]:
        """(−2 ln L, D² = Σ_b r_bᵀΣ_b⁻¹r_b) at φ; raises when either is not finite."""
        m2lnl, chi2 = jnp.zeros(()), jnp.zeros(())
        for d2, log_det, n, dof in self.block_distances(phi):
            chi2 = chi2 + d2
            m2lnl = m2lnl + (d2 + log_det if dof is None else tails.student_m2lnl(d2, log_det, n, dof))
        m2lnl = eqx.error_if(
            m2lnl,
            ~jnp.isfinite(m2lnl),
            "−2 ln L is not finite: the covariance is not positive definite or the data or model are not finite "
            "(check σ_ℓ > 0, finite C_ℓ, and the artifact)",
        )
        return m2lnl, chi2

    def objective(self, phi: Float[Array, " p"]) -> Float[Array, ""]:
        """−2 ln L plus the box barrier: what the fit minimises."""
        return self.terms(phi)[0] + BARRIER * self.box_excess(phi)

    def with_data(self, y: Float[Array, " n"]) -> AbstractLikelihood:
        """The same likelihood of another data vector y, e.g. a toy drawn from :meth:`moments`
        (the toys that calibrate intervals, :mod:`jaxcr.inference.neyman`). A subclass holding its
        data says how to replace it."""
        raise NotImplementedError(
            f"{type(self).__name__} does not say how to replace its data vector (with_data), which calibrated "
            "intervals need; use FitOptions(calibration=None) or give the class a with_data method"
        )

    @property
    def n_data(self) -> int:
        return int(self.data().shape[0])


class AbstractSkyLikelihood(AbstractLikelihood):
    """One observed sky on an emulator artifact (module docstring).

    ``phi`` = (θ, ln a): θ the artifact's parameter coordinates, ln a only when the amplitude is
    free (``log_amplitude`` None). ``observed``/``variance`` are y and the measurement variance of
    y on the fitted multipoles, ``rows`` their indices among the emulator's ℓ. A free ln a has a
    wide box too, ``log_amplitude_range`` = (centre, half-width): outside it the barrier pulls it
    back. The model is evaluated at most a second half-width beyond either box (:meth:`split`), so
    no step of the optimiser's line search reaches an overflow (a free-amplitude fit once stepped to
    ln ρ ≈ 800 and failed with a non-finite −2 ln L).

    ``toy_emulator``: None, or the same emulator with each design point's own covariance of ln C_ℓ
    (``SkyScatter.LOCAL``) where ``emulator`` pools it. The fit then keeps the pooled covariance,
    and the toys that calibrate its intervals are drawn with the local one (:meth:`toy_blocks`).
    A covariance that follows θ inside the likelihood biases the estimate, while the toys only need
    the right scatter of a sky at each point (docs/fitting.md).

    ``dof``: None for the Gaussian forms; ν for a multivariate t with the same moments
    (:mod:`jaxcr.inference.tails`; toys are drawn from it too)."""

    emulator: SpectrumEmulator
    observed: Float[Array, " n"]
    variance: Float[Array, " n"]
    rows: Array
    log_amplitude: Array | None
    log_amplitude_range: Array | None
    toy_emulator: SpectrumEmulator | None
    names: tuple[str, ...] = eqx.field(static=True)
    dof: float | None = eqx.field(static=True)

    def split(self, phi):
        """(θ, ln a) of φ where the model is evaluated: θ held within twice the box's half-width of its
        centre (the emulator does not extrapolate; the barrier acts beyond the box), a free ln a within
        two half-widths of its range's centre."""
        p = self.emulator.centre.shape[0]
        centre, scale = self.emulator.centre, self.emulator.scale
        theta = centre + scale * jnp.clip((phi[:p] - centre) / scale, -2.0, 2.0)
        if self.log_amplitude is not None:
            return theta, self.log_amplitude
        log_a = phi[p]
        if self.log_amplitude_range is not None:
            middle, half = self.log_amplitude_range[0], self.log_amplitude_range[1]
            log_a = jnp.clip(log_a, middle - 2 * half, middle + 2 * half)
        return theta, log_a

    def data(self):
        return self.observed

    def with_data(self, y):
        """The same sky likelihood of another y; the measurement variance stays the observed one's."""
        return eqx.tree_at(lambda like: like.observed, self, jnp.asarray(y))

    def box_excess(self, phi):
        z = jnp.abs(self.emulator.box_coordinates(phi[: self.emulator.centre.shape[0]]))
        excess = jnp.sum(jnp.maximum(z - 1.0, 0.0) ** 2)
        if self.log_amplitude is None and self.log_amplitude_range is not None:
            centre, half = self.log_amplitude_range[0], self.log_amplitude_range[1]
            excess = excess + jnp.maximum(jnp.abs(phi[self.emulator.centre.shape[0]] - centre) / half - 1.0, 0.0) ** 2
        return excess

    def moments(self, phi):
        mean, sky = self.sky_moments(phi)
        return mean, sky + jnp.diag(self.variance)

    def blocks(self, phi):
        return ((self.data(), *self.moments(phi), self.dof),)

    def toy_blocks(self, phi):
        """The moments with ``toy_emulator``'s covariance where there is one (class docstring)."""
        source = self if self.toy_emulator is None else eqx.tree_at(lambda like: like.emulator, self, self.toy_emulator)
        return ((*source.moments(phi), self.dof),)

    @abc.abstractmethod
    def sky_moments(self, phi) -> tuple[Float[Array, " n"], Float[Array, "n n"]]:
        """Mean and one-sky covariance of y at φ, without the measurement errors."""

    def _log_median_moments(self, phi):
        """ln a + ⟨ln C_ℓ⟩(θ) and Λ(θ) on the fitted multipoles (the log emulator's moments)."""
        theta, log_a = self.split(phi)
        rows = self.rows
        return log_a + self.emulator.log_mean(theta)[rows], self.emulator.log_covariance(theta, 1)[rows][:, rows]

    def _log_median_band(self, phi):
        """The median a·exp⟨ln C_ℓ⟩ and its exp(±1σ) band."""
        mean, sky = self._log_median_moments(phi)
        sd = jnp.sqrt(jnp.diag(sky))
        return jnp.exp(mean), jnp.exp(mean - sd), jnp.exp(mean + sd)

    @abc.abstractmethod
    def spectrum_band(self, phi) -> tuple[Float[Array, " n"], Float[Array, " n"], Float[Array, " n"]]:
        """The model spectrum C_ℓ − N at φ and its one-sky 68 % band (centre, low, high)."""


class LogNormalSky(AbstractSkyLikelihood):
    """Gaussian in y = ln(Ĉ_ℓ − N): μ = ln a + ⟨ln C_ℓ⟩(θ), Σ = Λ(θ) + diag(σ_ℓ²/(Ĉ_ℓ − N)²)."""

    def sky_moments(self, phi):
        return self._log_median_moments(phi)

    def spectrum_band(self, phi):
        """The median a·exp⟨ln C_ℓ⟩ times exp(±1σ)."""
        return self._log_median_band(phi)


class GaussianSky(AbstractSkyLikelihood):
    """Gaussian in y = Ĉ_ℓ − N: μ = a⟨C_ℓ⟩(θ), Σ = a² S(θ) + diag(σ_ℓ²)."""

    def sky_moments(self, phi):
        theta, log_a = self.split(phi)
        rows = self.rows
        a = jnp.exp(log_a)
        return a * self.emulator.mean(theta)[rows], a**2 * self.emulator.sky_covariance(theta, 1)[rows][:, rows]

    def spectrum_band(self, phi):
        """a⟨C_ℓ⟩ ± a·sqrt(diag S)."""
        mean, sky = self.sky_moments(phi)
        sd = jnp.sqrt(jnp.diag(sky))
        return mean, mean - sd, mean + sd


class OffsetLogNormalSky(AbstractSkyLikelihood):
    """Gaussian in y = ln Ĉ_ℓ: μ = ln(s_ℓ + N_ℓ), s_ℓ = a·exp⟨ln C_ℓ⟩(θ), Σ = (w wᵀ)∘Λ(θ) + the
    measurement's, w_ℓ = s_ℓ/(s_ℓ + N_ℓ) (module docstring). The measurement's variance of y is the
    model's, v_ℓ(1 + 2s_ℓ/N_ℓ)/(s_ℓ + N_ℓ)² with v_ℓ the variance of isotropic skies
    (``noise_variance``, the file's isotropic band), where the file has it: the variance of a
    pseudo-C_ℓ with noise, (2/(2ℓ+1))(2SN + N²), at the model's signal, so that a sky far from the
    median is not judged by its own errors; else the data's σ_ℓ²/Ĉ_ℓ² (``variance``)."""

    noise: Float[Array, " n"]
    noise_variance: Float[Array, " n"] | None

    def _weight(self, log_s):
        """w_ℓ = s_ℓ/(s_ℓ + N_ℓ) = sigmoid(ln s_ℓ − ln N_ℓ) (stable for any amplitude)."""
        return jax.nn.sigmoid(log_s - jnp.log(self.noise))

    def moments(self, phi):
        mean, sky = self.sky_moments(phi)
        if self.noise_variance is None:
            return mean, sky + jnp.diag(self.variance)
        # v(1 + 2s/N)/(s + N)² = v(1 − w²)/N²
        w = self._weight(self._log_median_moments(phi)[0])
        return mean, sky + jnp.diag(self.noise_variance * (1 - w**2) / self.noise**2)

    def sky_moments(self, phi):
        log_s, log_cov = self._log_median_moments(phi)
        w = self._weight(log_s)
        return jnp.logaddexp(log_s, jnp.log(self.noise)), jnp.outer(w, w) * log_cov

    def spectrum_band(self, phi):
        """The median signal s_ℓ times exp(±1σ) of its log-normal scatter."""
        return self._log_median_band(phi)


class JointLikelihood(AbstractLikelihood):
    """Independent likelihoods fitted together: −2 ln L is the sum of the members' (the joint Σ is
    block-diagonal). The joint φ holds every distinct name of the members once, in order of first
    appearance; a parameter named alike in several members is shared by them."""

    members: tuple[AbstractLikelihood, ...]
    names: tuple[str, ...] = eqx.field(static=True)
    indices: tuple[tuple[int, ...], ...] = eqx.field(static=True)

    def __init__(self, members):
        members = tuple(members)
        if not members or not all(isinstance(m, AbstractLikelihood) for m in members):
            raise TypeError("members must be a non-empty sequence of likelihoods (AbstractLikelihood)")
        names: list[str] = []
        for m in members:
            names += [n for n in m.names if n not in names]
        self.members = members
        self.names = tuple(names)
        self.indices = tuple(tuple(names.index(n) for n in m.names) for m in members)

    def _member_phi(self, phi, i):
        return phi[np.asarray(self.indices[i], dtype=int)]

    def data(self):
        return jnp.concatenate([m.data() for m in self.members])

    def with_data(self, y):
        ends = np.cumsum([m.n_data for m in self.members])[:-1]
        return eqx.tree_at(
            lambda like: like.members,
            self,
            tuple(m.with_data(part) for m, part in zip(self.members, jnp.split(y, ends))),
        )

    def moments(self, phi):
        parts = [m.moments(self._member_phi(phi, i)) for i, m in enumerate(self.members)]
        return jnp.concatenate([p[0] for p in parts]), jax.scipy.linalg.block_diag(*[p[1] for p in parts])

    def blocks(self, phi):
        return sum((m.blocks(self._member_phi(phi, i)) for i, m in enumerate(self.members)), ())

    def toy_blocks(self, phi):
        return sum((m.toy_blocks(self._member_phi(phi, i)) for i, m in enumerate(self.members)), ())

    def box_excess(self, phi):
        return sum(m.box_excess(self._member_phi(phi, i)) for i, m in enumerate(self.members))


class Reparametrised(AbstractLikelihood):
    """A likelihood in new parameters φ whose member sees ψ = M φ + c: e.g. the (ln σ², ln ρ) of a
    spectrum at energy E written in (ln σ², ln λ_c) with ln ρ = ln r_L(E) − ln λ_c, so that spectra
    at several energies share λ_c in a :class:`JointLikelihood`."""

    member: AbstractLikelihood
    matrix: Float[Array, "q p"]
    offset: Float[Array, " q"]
    names: tuple[str, ...] = eqx.field(static=True)

    def __check_init__(self):
        if self.matrix.shape != (len(self.member.names), len(self.names)) or self.offset.shape != self.matrix.shape[:1]:
            raise ValueError(
                f"matrix must map the {len(self.names)} parameters {list(self.names)} to the member's "
                f"{len(self.member.names)} {list(self.member.names)}; got matrix {self.matrix.shape}, offset {self.offset.shape}"
            )

    def _member_phi(self, phi):
        return self.matrix @ phi + self.offset

    def data(self):
        return self.member.data()

    def with_data(self, y):
        return eqx.tree_at(lambda like: like.member, self, self.member.with_data(y))

    def moments(self, phi):
        return self.member.moments(self._member_phi(phi))

    def blocks(self, phi):
        return self.member.blocks(self._member_phi(phi))

    def toy_blocks(self, phi):
        return self.member.toy_blocks(self._member_phi(phi))

    def box_excess(self, phi):
        return self.member.box_excess(self._member_phi(phi))
