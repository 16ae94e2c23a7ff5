"""Whether a campaign's model spectrum has stopped changing with the backtracking time.

The paper's statement (Eq. 7-9) is about the limit T → ∞, where the multipoles are finite; a model
stored at several times ΩT_j is converged from the earliest time after which its noise-corrected
⟨C_ℓ⟩ no longer changes within the errors (:func:`convergence_table`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["convergence_table"]


def convergence_table(c_by_time, times, z_margin: float = 2.0) -> tuple[list[dict], int]:
    """The convergence diagnostic of the noise-corrected spectra ``c_by_time`` (K points, R, T, L).

    For each stored time T_j and design point k, the paired differences of every realisation's
    ⟨C_ℓ⟩ at T_j and at the last time give z_kℓ = mean/SE; q_k = mean over ℓ of z_kℓ² is ≈ 1
    when the spectrum no longer changes. T_j counts as converged when the mean of q_k over the
    points exceeds 1 by at most ``z_margin`` standard errors of that mean (the spread over points
    carries the correlation between multipoles). The chosen index is the earliest T_j from which
    every later time is converged; the last time when none is (then flagged). Also reported: the
    mean relative shift of ⟨C_ℓ⟩ from T_j to the last time.
    """
    c = np.asarray(c_by_time)
    n_t = c.shape[2]
    rows, ok = [], []
    for j in range(n_t):
        d = c[:, :, j] - c[:, :, -1]  # (K, R, L)
        if j == n_t - 1:
            rows.append(dict(time=float(times[j]), q=1.0, q_se=0.0, relative_shift=0.0, converged=True))
            ok.append(True)
            continue
        se = d.std(1, ddof=1) / np.sqrt(d.shape[1])
        z = d.mean(1) / np.where(se > 0, se, np.inf)
        q = np.mean(z**2, axis=1)  # (K,)
        q_se = q.std(ddof=1) / np.sqrt(len(q)) if len(q) > 1 else np.inf
        last = c[:, :, -1].mean(1)
        shift = float(np.mean((c[:, :, j].mean(1) - last) / np.where(np.abs(last) > 0, np.abs(last), 1.0)))
        converged = bool(q.mean() - 1.0 <= z_margin * q_se)
        rows.append(
            dict(time=float(times[j]), q=float(q.mean()), q_se=float(q_se), relative_shift=shift, converged=converged)
        )
        ok.append(converged)
    chosen = n_t - 1
    for j in range(n_t - 1, -1, -1):
        if not all(ok[j:]):
            break
        chosen = j
    return rows, chosen
