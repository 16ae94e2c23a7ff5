"""A smooth emulator of the model spectrum: ln⟨C_ℓ⟩ as a polynomial in θ, the coordinates of the
named parameters (:class:`jaxcr.parametrisation.Parametrisation`; for the paper's model
θ = (ln σ², ln ρ)), of any number of parameters.

At long backtracking times the model at neighbouring θ is decorrelated by chaos, so each design
point carries its own sampling noise; the emulator pools them into a smooth, differentiable
⟨C_ℓ⟩(θ) and cosmic variance S(θ). With a baseline (:class:`jaxcr.pair_model.PairModelBaseline`)
the polynomial describes only the departure from the pair model's ln⟨C_ℓ⟩(θ), which then carries
the dependence on θ beyond the design.
"""

from __future__ import annotations

import itertools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..options import SkyScatter, as_option
from ..pair_model import PairModelBaseline

__all__ = ["monomial_exponents", "poly_features", "SpectrumEmulator", "local_bandwidth", "BANDWIDTHS"]

#: widths tried for the LOCAL covariance's Gaussian weights, in box coordinates (the box spans −1..1;
#: a 4-point axis has design spacing 2/3); the widest is nearly the pooled mean
BANDWIDTHS = tuple(float(b) for b in np.geomspace(0.2, 6.4, 11))


def local_bandwidth(z, covs, n_realisations) -> tuple[float, dict]:
    """The width b of the Gaussian weights of the LOCAL covariance (:meth:`SpectrumEmulator.sky_log_covariance`)
    that best predicts each design point's covariance from the others': the leave-one-out Gaussian
    log-likelihood of the points' realisations (their sample covariances S_k of ``n_realisations``
    N_B,k, one for all or one per point), Σ_k −(N_B,k − 1)/2 [tr(Λ₋ₖ(z_k)⁻¹ S_k) + ln det Λ₋ₖ(z_k)],
    maximised over :data:`BANDWIDTHS`. Returns
    b and {"bandwidth": the widths, "score": their scores, "pooled": the score of the other points' mean}."""
    z, covs = np.asarray(z, dtype=float), np.asarray(covs, dtype=float)
    if len(z) < 3:
        raise ValueError(f"a local covariance needs at least 3 design points; got {len(z)}")
    d2 = np.sum((z[:, None] - z[None]) ** 2, -1)
    nearest = np.min(d2 + np.diag(np.full(len(z), np.inf)), axis=1, keepdims=True)  # of the other points
    half = (_counts(n_realisations, len(z)) - 1) / 2

    def score(weights):
        total = 0.0
        for k in range(len(z)):
            w = np.delete(weights[k], k)
            lam = np.einsum("j,jab->ab", w / w.sum(), np.delete(covs, k, axis=0))
            total -= half[k] * (np.trace(np.linalg.solve(lam, covs[k])) + np.linalg.slogdet(lam)[1])
        return float(total)

    scores = [score(np.exp(-0.5 * (d2 - nearest) / b**2)) for b in BANDWIDTHS]  # no underflow at small b
    table = dict(bandwidth=list(BANDWIDTHS), score=scores, pooled=score(np.ones_like(d2)))
    return BANDWIDTHS[int(np.argmax(scores))], table


def _counts(n_realisations, k_points: int) -> np.ndarray:
    """N_B,k per design point (K,) from one N_B for all or one per point."""
    counts = np.broadcast_to(np.asarray(n_realisations, dtype=float), (k_points,))
    if np.any(counts < 2):
        raise ValueError(f"every design point needs at least 2 realisations; got {counts.tolist()}")
    return counts


def monomial_exponents(n_parameters: int, degree: int) -> list[tuple[int, ...]]:
    """Exponents (e_1, …, e_P) of every monomial of total degree ≤ ``degree``, in lexicographic order."""
    return [e for e in itertools.product(range(degree + 1), repeat=n_parameters) if sum(e) <= degree]


def poly_features(z, degree: int, xp=np):
    """Monomials Π_k z_k^e_k (Σ e_k ≤ degree) of box coordinates z (..., P), shape (..., n_coef)."""
    columns = []
    for exponents in monomial_exponents(z.shape[-1], degree):
        term = z[..., 0] ** exponents[0]
        for k in range(1, len(exponents)):
            term = term * z[..., k] ** exponents[k]
        columns.append(term)
    return xp.stack(columns, -1)


class SpectrumEmulator(eqx.Module):
    """ln⟨C_ℓ⟩ as a polynomial in θ (P named parameters' coordinates) fitted to independent design points.

    At long backtracking times the model at neighbouring θ is decorrelated by chaos, so each
    design point carries its own sampling noise; the emulator pools them. Per multipole,
    ln⟨C_ℓ⟩ is fitted by a polynomial of ``degree`` in the box coordinates z = (θ − centre)/scale
    (least squares; standard errors from the pooled relative variance), and the cosmic variance
    is modelled as S(θ) = ⟨C⟩⟨C⟩ᵀ ∘ R̄ with R̄ the relative covariance S/(⟨C⟩⟨C⟩ᵀ) averaged over
    the points (assumes the relative scatter varies little across the box; the log emulator's
    covariance may follow θ instead, :meth:`fit_log`'s ``scatter``). The emulator's own
    error in ln⟨C⟩ at θ is h(θ)·D_χ R̄ D_χ/N_B, correlated across ℓ like the realisations are (a
    far-wandering realisation raises every ℓ), with h = fᵀ(FᵀF)⁻¹f the leverage of θ and D_χ the
    reduced-χ² inflation of the polynomial fit where that exceeds 1.
    """

    centre: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (n_coef, L')
    ftf_inv: np.ndarray  # (n_coef, n_coef)
    rel: np.ndarray  # (L', L') pooled relative covariance of one realisation
    rel_emu: np.ndarray  # (L', L') the emulator's error per unit leverage
    reduced_chi2: np.ndarray  # (L',) of the polynomial fit
    degree: int = eqx.field(static=True)
    log_moments: bool = eqx.field(static=True, default=False)  # built by fit_log: exp(poly) = e^{⟨ln C⟩}
    baseline: PairModelBaseline | None = None  # ln⟨C_ℓ⟩ of the pair model, added to the polynomial
    # the local covariance of one sky's ln C_ℓ (fit_log's SkyScatter.LOCAL); None: pooled everywhere
    point_covs: np.ndarray | None = None  # (K, L', L') each design point's
    point_z: np.ndarray | None = None  # (K, P) their box coordinates
    bandwidth: np.ndarray | None = None  # () the Gaussian weights' width in box coordinates

    @classmethod
    def fit(cls, thetas, means, covs, n_realisations, degree: int, centre, scale, baseline=None) -> "SpectrumEmulator":
        """From per-point model means (K, L') and covariances (K, L', L') of ``n_realisations``
        realisations at ``thetas`` (K, P) (one N_B for all points, or N_B,k per point (K,): the
        polynomial then weights each point by its N_B,k). With a ``baseline`` (a
        :class:`jaxcr.pair_model.PairModelBaseline`) the polynomial fits ln⟨C_ℓ⟩ − baseline(θ): the
        transfer from the pair model's full-sky spectrum to the analysis', while the baseline carries
        the dependence on θ, also beyond the design."""
        means, covs = np.asarray(means), np.asarray(covs)
        bad = ~(np.all(np.isfinite(means), axis=1) & np.all(np.isfinite(covs), axis=(1, 2)))
        if bad.any():
            raise FloatingPointError(
                f"non-finite model spectra at the design point θ = "
                f"{np.round(np.asarray(thetas)[np.argmax(bad)], 3).tolist()}: check the model "
                "settings (dt, time) there"
            )
        if np.any(means <= 0):
            raise ValueError("the emulator needs positive model spectra at every design point")
        rel = np.mean(covs / (means[:, :, None] * means[:, None, :]), axis=0)
        # SE² of ln⟨C_ℓ⟩ from the pooled relative variance, the same at every point: weights from
        # each point's own sample variance would be biased, since for these skewed spectra a high
        # mean comes with a high variance (a far-wandering realisation) and would be down-weighted.
        counts = _counts(n_realisations, len(means))
        log_m = np.log(means) + np.diag(rel) / counts[:, None] / 2  # E[ln mean] ≈ ln⟨C⟩ − var/2 (delta method)
        return cls._polynomial(thetas, log_m, rel, n_realisations, degree, centre, scale, False, baseline)

    @classmethod
    def fit_log(
        cls,
        thetas,
        log_means,
        log_covs,
        n_realisations,
        degree: int,
        centre,
        scale,
        baseline=None,
        scatter: SkyScatter = SkyScatter.POOLED,
    ) -> "SpectrumEmulator":
        """The emulator of ⟨ln C_ℓ⟩ and Cov(ln C_ℓ, ln C_ℓ') from per-point means (K, L') and
        covariances (K, L', L') of the logarithms of ``n_realisations`` spectra (as for :meth:`fit`): ⟨ln C_ℓ⟩ is a
        polynomial of ``degree`` in θ; the covariance of one sky's ln C is :meth:`log_covariance`
        (``rel`` holds the points' mean; ``mean`` returns exp⟨ln C⟩); ``baseline`` as for :meth:`fit`.

        ``scatter`` POOLED takes the points' mean covariance everywhere. LOCAL keeps each point's
        and averages them about θ with Gaussian weights in the box coordinates
        (:meth:`sky_log_covariance`), the width chosen by :func:`local_bandwidth`: on the wide box
        one sky's variance of ln C_ℓ varies 9-12-fold between the points, and the correlation across
        ℓ with it, which a single pooled matrix cannot follow. In the likelihood, on mock skies, LOCAL
        makes χ² right at the truth but biases the fits (docs/fitting.md); fits on a LOCAL artifact
        keep the pooled covariance (:meth:`pooled`) and draw calibration toys with the local one."""
        log_means, log_covs = np.asarray(log_means), np.asarray(log_covs)
        if not (np.all(np.isfinite(log_means)) and np.all(np.isfinite(log_covs))):
            raise FloatingPointError("non-finite ln C_ℓ moments: every realisation's spectrum must be > 0")
        scatter = as_option(SkyScatter, "scatter", scatter)
        emulator = cls._polynomial(
            thetas, log_means, np.mean(log_covs, axis=0), n_realisations, degree, centre, scale, True, baseline
        )
        if scatter == SkyScatter.POOLED:
            return emulator
        z = np.asarray(emulator.box_coordinates(np.asarray(thetas, dtype=float)))
        width, _ = local_bandwidth(z, log_covs, n_realisations)
        return eqx.tree_at(
            lambda e: (e.point_covs, e.point_z, e.bandwidth),
            emulator,
            (log_covs, z, np.asarray(width)),
            is_leaf=lambda x: x is None,
        )

    @classmethod
    def _polynomial(cls, thetas, targets, rel, n_realisations, degree, centre, scale, log_moments, baseline):
        """Least-squares polynomial of ``degree`` in the box coordinates through ``targets``
        (K, L') less the baseline, standard errors sqrt(diag(rel)/N_B,k) (weights N_B,k); the
        emulator error inflated by the fit's reduced χ² where that exceeds 1. ``ftf_inv`` is
        (Fᵀ W F)⁻¹ with W = diag(N_B,k/N_ref) and ``rel_emu`` carries 1/N_ref, N_ref the smallest
        N_B,k (with one N_B for all, W = 1)."""
        centre, scale = np.asarray(centre, dtype=float), np.asarray(scale, dtype=float)
        if baseline is not None:
            targets = targets - np.asarray(baseline(np.asarray(thetas, dtype=float)))
        F = poly_features((np.asarray(thetas) - centre) / scale, degree)  # (K, n_coef)
        if F.shape[0] < F.shape[1]:
            raise ValueError(f"a degree-{degree} emulator needs at least {F.shape[1]} design points; got {F.shape[0]}")
        counts = _counts(n_realisations, len(F))
        n_ref = counts.min()
        weights = counts / n_ref
        var = np.diag(rel) / n_ref
        # Every ℓ has the same design and weights, so one least-squares solve serves all.
        ftf_inv = np.linalg.inv(F.T @ (weights[:, None] * F))
        coef = ftf_inv @ F.T @ (weights[:, None] * targets)
        red = np.sum(weights[:, None] * (targets - F @ coef) ** 2, 0) / var / max(len(F) - F.shape[1], 1)
        inflate = np.sqrt(np.maximum(red, 1.0))
        return cls(
            centre=centre,
            scale=scale,
            degree=degree,
            coef=coef,
            ftf_inv=ftf_inv,
            rel=rel,
            rel_emu=inflate[:, None] * rel * inflate[None, :] / n_ref,
            reduced_chi2=np.array(red),
            log_moments=log_moments,
            baseline=baseline,
        )

    def sky_log_covariance(self, theta):
        """Cov(ln C_ℓ, ln C_ℓ') of one sky at θ (L', L'), without the emulator's error: the pooled
        ``rel``, or for a LOCAL emulator the design points' covariances C_k averaged with weights
        w_k ∝ exp(−|z − z_k|²/2b²), z the box coordinates of θ and b the ``bandwidth``. A
        positive-weighted mean of covariance matrices, so positive semi-definite everywhere."""
        if self.point_covs is None or self.point_z is None or self.bandwidth is None:
            return jnp.asarray(self.rel)
        d2 = jnp.sum((self.box_coordinates(theta) - self.point_z) ** 2, axis=-1)
        w = jax.nn.softmax(-0.5 * d2 / self.bandwidth**2)
        return jnp.einsum("k,kij->ij", w, self.point_covs)

    @property
    def local(self) -> bool:
        """Whether it holds each design point's own covariance (``SkyScatter.LOCAL``)."""
        return self.point_covs is not None

    def pooled(self) -> "SpectrumEmulator":
        """The same emulator with the pooled covariance everywhere (the local one dropped)."""
        if not self.local:
            return self
        return eqx.tree_at(lambda e: (e.point_covs, e.point_z, e.bandwidth), self, (None, None, None))

    def log_covariance(self, theta, sky_realisations: int):
        """Cov(ln C) of a sky of ``sky_realisations`` about the emulated ⟨ln C⟩, the emulator's own
        error included (emulators from :meth:`fit_log`): :meth:`sky_log_covariance`/R_sky +
        h(θ) D_χ R̄ D_χ/N_B."""
        f = poly_features(self.box_coordinates(theta), self.degree, jnp)
        return self.sky_log_covariance(theta) / sky_realisations + (f @ self.ftf_inv @ f) * self.rel_emu

    def box_coordinates(self, theta):
        return (theta - self.centre) / self.scale

    def log_mean(self, theta):
        """The emulated polynomial (plus the baseline, if any) at θ: ln⟨C_ℓ⟩, or ⟨ln C_ℓ⟩ for an
        emulator from :meth:`fit_log`."""
        poly = poly_features(self.box_coordinates(theta), self.degree, jnp) @ self.coef
        return poly if self.baseline is None else poly + self.baseline(theta)

    def mean(self, theta):
        """Emulated ⟨C_ℓ⟩ at θ (differentiable in θ); exp⟨ln C_ℓ⟩ for an emulator from :meth:`fit_log`."""
        return jnp.exp(self.log_mean(theta))

    def sky_covariance(self, theta, sky_realisations: int):
        """⟨C⟩⟨C⟩ᵀ ∘ (R̄/R_sky + h(θ) D R̄ D/N_B): the scatter of a sky of ``sky_realisations``
        about the emulated mean, the emulator's own error included (unit amplitude)."""
        f = poly_features(self.box_coordinates(theta), self.degree, jnp)
        m = self.mean(theta)
        return m[:, None] * m[None, :] * (self.rel / sky_realisations + (f @ self.ftf_inv @ f) * self.rel_emu)
