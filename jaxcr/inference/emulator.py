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
import jax.numpy as jnp
import numpy as np

from ..pair_model import PairModelBaseline

__all__ = ["monomial_exponents", "poly_features", "SpectrumEmulator"]


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
    variance may follow θ instead, :meth:`fit_log`'s ``scatter_degree``). The emulator's own
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
    # ln of one sky's Var(ln C_ℓ) over the pooled one, a polynomial of degree scatter_degree in z:
    # (n_coef', L'); None: the pooled covariance everywhere (fit_log's scatter_degree 0)
    scatter_coef: np.ndarray | None = None
    scatter_degree: int = eqx.field(static=True, default=0)

    @classmethod
    def fit(
        cls, thetas, means, covs, n_realisations: int, degree: int, centre, scale, baseline=None
    ) -> "SpectrumEmulator":
        """From per-point model means (K, L') and covariances (K, L', L') of ``n_realisations``
        realisations each at ``thetas`` (K, P). With a ``baseline`` (a
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
        log_m = np.log(means) + np.diag(rel) / n_realisations / 2  # E[ln mean] ≈ ln⟨C⟩ − var/2 (delta method)
        return cls._polynomial(thetas, log_m, rel, n_realisations, degree, centre, scale, False, baseline)

    @classmethod
    def fit_log(
        cls,
        thetas,
        log_means,
        log_covs,
        n_realisations: int,
        degree: int,
        centre,
        scale,
        baseline=None,
        scatter_degree: int = 0,
    ) -> "SpectrumEmulator":
        """The emulator of ⟨ln C_ℓ⟩ and Cov(ln C_ℓ, ln C_ℓ') from per-point means (K, L') and
        covariances (K, L', L') of the logarithms of ``n_realisations`` spectra each: ⟨ln C_ℓ⟩ is a
        polynomial of ``degree`` in θ; the covariance of one sky's ln C is :meth:`log_covariance`
        (``rel`` holds the points' mean; ``mean`` returns exp⟨ln C⟩); ``baseline`` as for :meth:`fit`.

        ``scatter_degree`` 0 pools the covariance over the points. 1 lets one sky's variance follow
        θ: ln Var(ln C_ℓ)(θ) is linear in the box coordinates, fitted per ℓ by least squares to the
        points' ln of their variance and scaled so that its mean over the points is the points' mean
        variance (the pooled one); the correlation across ℓ stays pooled (:meth:`scatter_factor`).
        On the wide box's 16 points (32 realisations each) the pooled variance is off by a factor
        0.2-2.6, and the linear form leaves a scatter of 0.16-0.42 in ln Var per ℓ, about the
        sampling error of a variance from 32 heavy-tailed realisations (0.25 for Gaussian ones);
        a quadratic leaves as much (docs/fitting.md)."""
        log_means, log_covs = np.asarray(log_means), np.asarray(log_covs)
        if not (np.all(np.isfinite(log_means)) and np.all(np.isfinite(log_covs))):
            raise FloatingPointError("non-finite ln C_ℓ moments: every realisation's spectrum must be > 0")
        if scatter_degree not in (0, 1):
            raise ValueError(f"scatter_degree must be 0 (pooled) or 1 (linear in θ); got {scatter_degree!r}")
        rel = np.mean(log_covs, axis=0)
        scatter = None
        if scatter_degree:
            z = (np.asarray(thetas, dtype=float) - np.asarray(centre, dtype=float)) / np.asarray(scale, dtype=float)
            F = poly_features(z, scatter_degree)
            if F.shape[0] <= F.shape[1]:
                raise ValueError(
                    f"scatter_degree {scatter_degree} needs more than {F.shape[1]} design points; got {F.shape[0]}"
                )
            variances = np.diagonal(log_covs, axis1=1, axis2=2)  # (K, L')
            scatter = np.linalg.lstsq(F, np.log(variances), rcond=None)[0]
            # the arithmetic mean over the points is the pooled variance (ln of a variance is biased low)
            scatter[0] += np.log(variances.mean(0) / np.exp(F @ scatter).mean(0)) - np.log(np.diag(rel))
        return cls._polynomial(
            thetas, log_means, rel, n_realisations, degree, centre, scale, True, baseline, scatter, scatter_degree
        )

    @classmethod
    def _polynomial(
        cls,
        thetas,
        targets,
        rel,
        n_realisations,
        degree,
        centre,
        scale,
        log_moments,
        baseline,
        scatter=None,
        scatter_degree=0,
    ):
        """Least-squares polynomial of ``degree`` in the box coordinates through ``targets``
        (K, L') less the baseline, standard errors sqrt(diag(rel)/N_B) (times the scatter factor at
        each point, with a ``scatter``); the emulator error inflated by the fit's reduced χ² where
        that exceeds 1."""
        centre, scale = np.asarray(centre, dtype=float), np.asarray(scale, dtype=float)
        if baseline is not None:
            targets = targets - np.asarray(baseline(np.asarray(thetas, dtype=float)))
        z = (np.asarray(thetas) - centre) / scale
        F = poly_features(z, degree)  # (K, n_coef)
        if F.shape[0] < F.shape[1]:
            raise ValueError(f"a degree-{degree} emulator needs at least {F.shape[1]} design points; got {F.shape[0]}")
        var = np.diag(rel) / n_realisations
        if scatter is not None:
            var = var * np.exp(poly_features(z, scatter_degree) @ scatter)  # (K, L')
        # Every ℓ has the same design and uniform weights, so one least-squares solve serves all.
        ftf_inv = np.linalg.inv(F.T @ F)
        coef = ftf_inv @ F.T @ targets
        red = np.sum((targets - F @ coef) ** 2 / var, 0) / max(len(F) - F.shape[1], 1)
        inflate = np.sqrt(np.maximum(red, 1.0))
        return cls(
            centre=centre,
            scale=scale,
            degree=degree,
            coef=coef,
            ftf_inv=ftf_inv,
            rel=rel,
            rel_emu=inflate[:, None] * rel * inflate[None, :] / n_realisations,
            reduced_chi2=np.array(red),
            log_moments=log_moments,
            baseline=baseline,
            scatter_coef=scatter,
            scatter_degree=scatter_degree,
        )

    def scatter_factor(self, theta):
        """One sky's Var(ln C_ℓ) at θ over the pooled one (L',): exp of the scatter polynomial, ones
        for a pooled emulator. Broadcasts over leading axes of θ (..., P)."""
        if self.scatter_coef is None:
            return jnp.ones(jnp.shape(theta)[:-1] + self.rel.shape[:1])
        return jnp.exp(poly_features(self.box_coordinates(theta), self.scatter_degree, jnp) @ self.scatter_coef)

    def log_covariance(self, theta, sky_realisations: int):
        """Cov(ln C) of a sky of ``sky_realisations`` about the emulated ⟨ln C⟩, the emulator's own
        error included (emulators from :meth:`fit_log`): D(R̄/R_sky + h(θ) D_χ R̄ D_χ/N_B)D with
        D = diag(sqrt(:meth:`scatter_factor`)) (the identity for a pooled emulator). The emulator's
        error takes the scale of θ's own variance: the design points near θ weigh most in it."""
        f = poly_features(self.box_coordinates(theta), self.degree, jnp)
        pooled = self.rel / sky_realisations + (f @ self.ftf_inv @ f) * self.rel_emu
        if self.scatter_coef is None:
            return pooled
        d = jnp.sqrt(self.scatter_factor(theta))
        return d[:, None] * pooled * d[None, :]

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
