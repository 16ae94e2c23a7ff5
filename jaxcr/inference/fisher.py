"""Fisher algebra of the fits: the Gauss-Newton Fisher matrix with profiled amplitudes
marginalised and Jacobian noise removed, its constrained inverse, Newton steps and the parameter
combinations the data do not constrain. Everything in ln-parameters (errors ≈ relative errors).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "fisher_matrix",
    "constrained_inverse",
    "fisher_eigen",
    "fisher_covariance",
    "fisher_step",
    "degenerate_directions",
    "directions_against_prior",
    "POORLY_CONSTRAINED",
]

POORLY_CONSTRAINED = 0.5  # one-sky fits flag a direction whose 1σ exceeds this fraction of the prior half-range


def fisher_matrix(blocks, n_phi, debias: bool = False):
    """Gauss-Newton Fisher matrix of the ln-parameters with the profiled amplitudes marginalised.

    Each block's rows ∂μ/∂(φ, ln a) are whitened with the Cholesky factor of its covariance Σ;
    F = DᵀD, and the amplitudes are marginalised by the Schur complement.

    With ``debias`` the noise of the estimated Jacobian is subtracted: the mean over N_B
    realisations J̄ = J + ε gives E[J̄ᵀΣ⁻¹J̄] = JᵀΣ⁻¹J + E[εᵀΣ⁻¹ε], and E[εᵀΣ⁻¹ε] is estimated from
    the spread of the per-realisation Jacobians (whitened), divided by N_B. Without it the
    Fisher errors come out too small wherever the Jacobian is noisy (long T, chaos); directions
    in which the noise is as large as the signal become unconstrained, as they should.
    """
    n_amp = sum(1 for b in blocks if b["profiled"])
    rows, k, noise = [], n_phi, np.zeros((n_phi, n_phi))
    for b in blocks:
        d = np.zeros((b["m"].shape[0], n_phi + n_amp))
        d[:, :n_phi] = b["D_phi"]
        if b["profiled"]:
            d[:, k] = b["a"] * b["m"]  # ∂μ/∂ln a
            k += 1
        chol = np.linalg.cholesky(b["cov"])
        rows.append(np.linalg.solve(chol, d))
        if debias:
            per = b["D_phi_per"]  # (N_B, n_ell, n_phi): per-realisation ∂(a C_ℓ)/∂φ
            dev = np.linalg.solve(chol[None], per - per.mean(0))
            noise += np.einsum("rlp,rlq->pq", dev, dev) / (per.shape[0] * (per.shape[0] - 1))
    D = np.concatenate(rows)
    F = D.T @ D
    F[:n_phi, :n_phi] -= noise
    Fm = F[:n_phi, :n_phi]
    if n_amp:  # Schur complement: marginalise the amplitudes
        Fm = Fm - F[:n_phi, n_phi:] @ np.linalg.solve(F[n_phi:, n_phi:], F[n_phi:, :n_phi])
    return 0.5 * (Fm + Fm.T)


def constrained_inverse(fisher):
    """Inverse of F on its constrained subspace, and the null directions (eigenvalue ≤ 1e-9 of
    the largest |eigenvalue|) along which the data say nothing. A debiased F can have negative
    eigenvalues (Jacobian noise larger than its signal): those directions are null too, and they
    set the scale, so an exactly-zero direction is never mistaken for a constrained one."""
    vals, vecs, null = fisher_eigen(fisher)
    return (vecs[:, ~null] / vals[~null]) @ vecs[:, ~null].T, vecs[:, null].T


def fisher_eigen(fisher):
    """Eigenvalues, eigenvectors and the null mask of a Fisher matrix (rule in
    :func:`constrained_inverse`)."""
    vals, vecs = np.linalg.eigh(fisher)
    return vals, vecs, vals <= 1e-9 * max(np.abs(vals).max(), 1e-300)


def fisher_covariance(fisher):
    """(covariance, null_directions): F⁻¹ on the constrained subspace, infinite variance for every
    parameter involved in a null direction."""
    cov, null = constrained_inverse(fisher)
    for v in null:
        involved = np.abs(v) > 0.05
        cov = np.where(np.outer(involved, involved), np.inf, cov)
    return cov, null


def fisher_step(fisher, grad):
    """Newton step of χ² with the Gauss-Newton Hessian 2F, δ = −(2F)⁺ g (zero along null
    directions), and its length in standard deviations, sqrt(δᵀFδ)."""
    inv, _ = constrained_inverse(fisher)
    step = -0.5 * inv @ np.asarray(grad)
    return step, float(np.sqrt(max(step @ fisher @ step, 0.0)))


def degenerate_directions(cov, null_directions, names, threshold=1.0):
    """Parameter combinations the data do not constrain: Fisher null directions, and directions
    whose 1σ width exceeds ``threshold`` e-folds."""

    def combo(vec):
        vec = vec / np.max(np.abs(vec))
        return " ".join(f"{c:+.2f}·ln {n}" for c, n in zip(vec, names) if abs(c) > 0.05)

    out = [f"{combo(v)} is unconstrained (null direction of the Fisher matrix)" for v in null_directions]
    finite = np.where(np.isfinite(cov), cov, 0.0)
    vals, vecs = np.linalg.eigh(finite)
    for v, vec in zip(vals, vecs.T):
        if np.sqrt(max(v, 0)) > threshold:
            out.append(f"{combo(vec)} is poorly constrained (1σ = {np.sqrt(v):.3g} e-folds)")
    return out


def directions_against_prior(fisher, half, free_amp: bool, threshold: float = 0.5):
    """Eigen-directions of the (ln σ², ln ρ) Fisher matrix (amplitude marginalised), their 1σ and
    the prior (box) half-range along them; flags for the poorly constrained ones."""
    cov = np.linalg.pinv(fisher)[:2, :2]  # marginal covariance of (ln σ², ln ρ)
    vals, vecs = np.linalg.eigh(0.5 * (cov + cov.T))
    out, flags = [], []
    for v, vec in zip(vals, vecs.T):
        vec = vec / np.max(np.abs(vec)) * np.sign(vec[np.argmax(np.abs(vec))])
        unit = vec / np.linalg.norm(vec)
        prior = float(1.0 / np.max(np.abs(unit) / half))  # distance from the centre to the box edge along it
        sigma = float(np.sqrt(v)) if v > 0 else float("inf")
        combo = " ".join(f"{c:+.2f}·ln {n}" for c, n in zip(vec, ("σ²", "ρ")) if abs(c) > 0.05)
        poor = not sigma < threshold * prior
        out.append(
            dict(
                combination=combo,
                vector=unit.tolist(),
                sigma=sigma,
                prior_half_range=prior,
                fraction_of_prior=sigma / prior,
                poorly_constrained=poor,
            )
        )
        if poor:
            flags.append(
                f"{combo} is poorly constrained: its 1σ ({sigma:.3g} e-folds) exceeds {threshold:g} of the "
                f"prior half-range along it ({prior:.3g}){' with the amplitude free' if free_amp else ''}"
            )
    return out, flags
