"""Whether a campaign's model spectrum has stopped changing with the backtracking time.

The paper's statement (Eq. 7-9) is about the limit T → ∞, where the multipoles are finite; a model
stored at several times ΩT_j is converged from the earliest time after which its noise-corrected
⟨C_ℓ⟩ no longer changes within the errors (:func:`convergence_table`). A multipole is resolved
where the simulation's pixel noise N̂ t_ℓ (Eq. 12, through the analysis) is at most
``MAX_NOISE_FRACTION`` of ⟨C_ℓ⟩ (:func:`passing_ell_max`).
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "convergence_table",
    "points_holding_back",
    "convergence_time",
    "infinite_time_limit",
    "approach_fit",
    "paired_change",
    "change_p_value",
    "POINT_ALPHA",
    "separation_time",
    "SEPARATION_LAW",
    "MAX_NOISE_FRACTION",
    "passing_ell_max",
    "noise_error",
]

MAX_NOISE_FRACTION = 1.0  # the pixel noise may be at most ⟨C_ℓ⟩ itself at a fitted ℓ
POINT_ALPHA = 0.05  # false-alarm probability of the per-point change test over a whole design


def convergence_table(
    c_by_time, times, z_margin: float = 2.0, point_alpha: float = POINT_ALPHA
) -> tuple[list[dict], int]:
    """The convergence diagnostic of the noise-corrected spectra ``c_by_time`` (K points, R, T, L; or
    a sequence of K arrays (R_k, T, L) where the points have different numbers of realisations).

    For each stored time T_j and design point k, the paired differences of every realisation's
    ⟨C_ℓ⟩ at T_j and at the last time give z_kℓ = mean/SE; q_k = mean over ℓ of z_kℓ² is ≈ 1
    when the spectrum no longer changes. T_j counts as converged when both

    * the mean of q_k over the points exceeds 1 by at most ``z_margin`` standard errors of that
      mean (the spread over points carries the correlation between multipoles), and
    * no single point changes: every point's sign-flip p-value of q_k (:func:`change_p_value`)
      exceeds ``point_alpha``/K (Bonferroni: a false alarm anywhere in the design with
      probability ≤ ``point_alpha``). The pooled test alone averages one drifting column of the
      design away.

    The chosen index is the earliest T_j from which every later time is converged; the last time
    when none is (then flagged). Also reported: the mean relative shift of ⟨C_ℓ⟩ from T_j to the
    last time, the smallest point p-value, the points that change (``points_changing``) and those
    with p ≤ ``point_alpha`` uncorrected (``points_suspect``: where a pooled excess of q comes from
    when no single point is significant).
    """
    points = [np.asarray(ck, dtype=float) for ck in c_by_time]
    n_points, n_t = len(points), points[0].shape[1]
    if not 0 < point_alpha < 1:
        raise ValueError(f"point_alpha must be in (0, 1); got {point_alpha!r}")
    rows, ok = [], []
    for j in range(n_t):
        d = [ck[:, j] - ck[:, -1] for ck in points]  # K × (R_k, L)
        if j == n_t - 1:
            rows.append(
                dict(time=float(times[j]), q=1.0, q_se=0.0, relative_shift=0.0, converged=True,
                     point_p_min=1.0, points_changing=[], points_suspect=[])
            )  # fmt: skip
            ok.append(True)
            continue
        p_points = np.array([change_p_value(d[k]) for k in range(n_points)])
        changing = [int(k) for k in np.flatnonzero(p_points <= point_alpha / n_points)]
        # uncorrected: where a pooled excess of q comes from when no single point is significant
        suspect = [int(k) for k in np.flatnonzero(p_points <= point_alpha)]
        q = np.array([_paired_q(dk) for dk in d])  # (K,)
        q_se = q.std(ddof=1) / np.sqrt(len(q)) if len(q) > 1 else np.inf
        last = np.array([ck[:, -1].mean(0) for ck in points])
        now = np.array([ck[:, j].mean(0) for ck in points])
        shift = float(np.mean((now - last) / np.where(np.abs(last) > 0, np.abs(last), 1.0)))
        converged = bool(q.mean() - 1.0 <= z_margin * q_se) and not changing
        rows.append(
            dict(time=float(times[j]), q=float(q.mean()), q_se=float(q_se), relative_shift=shift, converged=converged,
                 point_p_min=float(p_points.min()), points_changing=changing, points_suspect=suspect)
        )  # fmt: skip
        ok.append(converged)
    return rows, _earliest_settled(ok)


def points_holding_back(row: dict) -> list[int]:
    """The design points that keep one row of :func:`convergence_table` from converging: those that
    change (``points_changing``) or, where only the pooled test fails, those with p ≤ ``point_alpha``
    uncorrected (``points_suspect``); none for a converged row. For the row of the last two stored
    times these are the points to follow longer (:meth:`jaxcr.inference.campaign.Campaign.lengthen`)."""
    return list(row.get("points_changing") or ([] if row.get("converged", True) else row.get("points_suspect", [])))


def _earliest_settled(ok: list[bool]) -> int:
    """The earliest index from which every entry of ``ok`` is true (the last index when only it
    is, or none is)."""
    first = len(ok) - 1
    for j in range(len(ok) - 1, -1, -1):
        if not ok[j]:
            break
        first = j
    return first


def paired_change(c, j: int) -> np.ndarray:
    """q of one point's noise-corrected spectra c (R, T, L) between time j and the last: the mean
    over ℓ of z_ℓ², z_ℓ = ⟨C_ℓ(T_j) − C_ℓ(T_last)⟩/SE over the R realisations (paired)."""
    return _paired_q(np.asarray(c[:, j] - c[:, -1], dtype=float))


def _paired_q(d: np.ndarray) -> np.ndarray:
    """q = mean over ℓ of z_ℓ² of paired differences d (..., R, L); zero SE counts as no change
    (z = 0), as for identical spectra."""
    return _q_of_moments(d.mean(-2), d.var(-2, ddof=1), d.shape[-2])


def _q_of_moments(mean, var, n_real: int) -> np.ndarray:
    """Mean over ℓ (the last axis) of z_ℓ² = mean_ℓ²/(var_ℓ/R); z = 0 where var is 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.mean(np.where(var > 0, mean**2 / (var / n_real), 0.0), axis=-1)


def change_p_value(d, n_flips: int = 20_000, seed: int = 0) -> float:
    """The p-value of "this point's spectrum has stopped changing" from its paired differences d
    (R, L) = C_ℓ(T_j) − C_ℓ(T_last) of each realisation: a sign-flip test of q (:func:`paired_change`).

    Converged means stationary: a realisation's spectra at T_j and at T_last are then alike in
    distribution and exchangeable, so each realisation's difference is as likely with either sign
    and all 2^R sign patterns are equally likely. p is the share of patterns whose q is at least
    the observed one; every ℓ of a realisation flips together, so the correlation between
    multipoles is kept. The test is exact whatever the heavy tails of C_ℓ (a bootstrap of the
    centred differences lost all power on them with 16 realisations), and it also flags a change
    of the spectrum's distribution at an unchanged mean. All patterns when 2^R ≤ ``n_flips``, else
    ``n_flips`` random ones (seeded: the same answer every call) and the observed one, so
    p ≥ 1/(n_flips + 1).
    """
    d = np.asarray(d, dtype=float)
    if d.ndim != 2 or d.shape[0] < 3:
        raise ValueError(f"d must be (R >= 3 realisations, L multipoles); got shape {d.shape}")
    n_real = d.shape[0]
    observed = _paired_q(d) * (1 - 1e-12)  # ties (the observed pattern itself) count
    exact = 2**n_real <= n_flips
    if exact:
        signs = 1.0 - 2.0 * ((np.arange(2**n_real)[:, None] >> np.arange(n_real)) & 1)
    else:
        signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=(n_flips, n_real))
    # flipping signs leaves d² alone, so each pattern needs only its mean: (F, R) @ (R, L)
    mean = signs @ d / n_real
    var = np.maximum((d**2).mean(0) - mean**2, 0.0) * n_real / (n_real - 1)
    exceed = int(np.sum(_q_of_moments(mean, var, n_real) >= observed))
    return float(exceed / len(signs)) if exact else float((1 + exceed) / (n_flips + 1))


def convergence_time(c, times, alpha: float = POINT_ALPHA) -> tuple[float, list[float], float]:
    """T_conv of one design point: the earliest stored ΩT from which ⟨C_ℓ⟩ (every ℓ of c) no longer
    changes by more than its error up to the last stored time.

    ``c`` (R, T, L): per-realisation noise-corrected spectra at ``times``. For each T_j the paired
    differences to the last time are tested as in the campaigns' per-point test
    (:func:`change_p_value`); T_j counts as unchanged when p_j > ``alpha``. Returns (T_conv, [p_j],
    alpha); T_conv = inf when the last two stored times already differ (the spectrum still changes
    at T_max: T_conv > T_max).
    """
    c = np.asarray(c, dtype=float)
    n_real, n_t, n_ell = c.shape
    if n_real < 4 or n_t < 2:
        raise ValueError(f"need >= 4 realisations and >= 2 times; got {n_real} and {n_t}")
    p = [change_p_value(c[:, j] - c[:, -1]) for j in range(n_t - 1)] + [1.0]
    if p[-2] <= alpha:
        return float("inf"), p, float(alpha)
    return float(times[_earliest_settled([pj > alpha for pj in p])]), p, float(alpha)


def infinite_time_limit(c, times, t_scale: float = 1.0, n_resamples: int = 2000, seed: int = 0):
    """ln⟨C_ℓ⟩ in the limit T → ∞ (the paper's Eq. 7-9 state) from spectra still converging.

    Per multipole, ln⟨C_ℓ⟩(T_j) = ln⟨C_ℓ⟩_∞ − b_ℓ·t_scale/T_j is fitted by least squares to the
    stored times (an approach as 1/T, measured at ρ = 0.01: docs/fitting.md). The errors come from
    resampling realisations with replacement (each keeps its spectra at every time, so the
    correlation between times is kept), ``n_resamples`` times, seeded.

    Args:
        c: noise-corrected spectra (R realisations, T ≥ 3 times, L multipoles), ⟨C_ℓ⟩ > 0.
        times: the T ΩT; t_scale: the unit of the 1/T term (e.g. t_sep(σ², ρ); only b depends on it).

    Returns:
        (ln⟨C_ℓ⟩_∞, its standard error, b_ℓ), each (L,).
    """
    c = np.asarray(c, dtype=float)
    if c.ndim != 3 or c.shape[1] != len(times) or len(times) < 3 or c.shape[0] < 4:
        raise ValueError(f"c must be (R >= 4, T >= 3 times, L) with T = len(times); got {c.shape}, {len(times)} times")
    limit, slope = approach_fit(_log_mean(c), times, t_scale)
    rows = np.random.default_rng(seed).integers(0, c.shape[0], size=(n_resamples, c.shape[0]))
    boot = np.concatenate(
        [approach_fit(_log_mean(c[rows[i : i + 200]]), times, t_scale)[0] for i in range(0, n_resamples, 200)]
    )
    return limit, boot.std(0, ddof=1), slope


def approach_fit(log_means, times, t_scale: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Least squares of ln⟨C_ℓ⟩(T_j) = ln⟨C_ℓ⟩_∞ − b_ℓ·t_scale/T_j over the times (axis −2 of
    ``log_means``, (..., T, L)): (ln⟨C_ℓ⟩_∞, b_ℓ), each (..., L)."""
    times = np.asarray(times, dtype=float)
    solve = np.linalg.pinv(np.stack([np.ones_like(times), -t_scale / times], axis=1))  # (2, T)
    limit, slope = np.einsum("pt,...tl->p...l", solve, np.asarray(log_means, dtype=float))
    return limit, slope


def _log_mean(c: np.ndarray) -> np.ndarray:
    """ln of the mean over realisations (axis −3) of spectra (..., R, T, L)."""
    mean = c.mean(-3)
    if np.any(mean <= 0):
        raise ValueError("⟨C_ℓ⟩ must be > 0 at every stored time to take its logarithm")
    return np.log(mean)


# The time pairs of neighbouring pixels need to separate to λ_c, t_sep = A·(σ²)^b·ρ^c (1/Ω), fitted to
# experiments/convergence_time.py (plane-wave model, λ_min/λ_c = 0.1, λ_max/λ_c = 10, 32 modes, nside 16,
# N_B 16, σ² 0.3-6, ρ 0.01-0.2: 15 of 16 points separated by ΩT = 3000; scatter 0.25 e-folds). Where
# T_conv could be measured it was 0.6-1.1 t_sep at ρ = 0.03 and 2.9-6.8 t_sep at ρ = 0.01 (nside 8,
# ΩT ≤ 2×10⁴); docs/fitting.md has the tables.
SEPARATION_LAW = dict(A=13.9, b=-0.50, c=-1.10, scatter_efolds=0.25)


def separation_time(sigma2, rho):
    """t_sep(σ², ρ) of :data:`SEPARATION_LAW` in 1/Ω: the scale of the time the spectrum needs to converge."""
    law = SEPARATION_LAW
    return law["A"] * np.asarray(sigma2, dtype=float) ** law["b"] * np.asarray(rho, dtype=float) ** law["c"]


def passing_ell_max(corrected, pixel_noise, t_ell, ells) -> list[int | None]:
    """Per stored time, the largest ℓ of ``ells`` up to which every multipole passes the pixel-noise
    rule at every design point (noise N̂ t_ℓ at most MAX_NOISE_FRACTION of the noise-corrected
    ⟨C_ℓ⟩ over the realisations); None where not even the first two do.

    ``corrected``: (K, R, T, lmax+1) noise-corrected spectra; ``pixel_noise``: (K, R, T) (or per
    point (R_k, T, lmax+1) and (R_k, T) where the points have different numbers of realisations)."""
    ells = np.asarray(ells)
    means = np.array([np.asarray(ck).mean(0) for ck in corrected])[..., ells]  # (K, T, L)
    noise = np.array([np.asarray(nk).mean(0) for nk in pixel_noise])[..., None] * t_ell[ells]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = noise / np.where(means > 0, means, np.nan)
    ok = (np.isfinite(frac) & (frac <= MAX_NOISE_FRACTION)).all(0)  # (T, L)
    prefix = np.cumprod(ok, axis=1).sum(1)  # passing multipoles from the first, per time
    return [int(ells[n - 1]) if n >= 2 else None for n in prefix]


def noise_error(frac, times, j, ells, values_at, design, passing) -> ValueError:
    """The error of an ℓ range the pixel noise does not allow (``values_at``: θ → named values)."""
    k, i = np.argwhere(~np.isfinite(frac) | (frac > MAX_NOISE_FRACTION))[0]
    where = ", ".join(f"{n} = {float(v):.3g}" for n, v in values_at(design[k]).items())
    share = f"{100 * frac[k, i]:.0f} %" if np.isfinite(frac[k, i]) else "all"
    return ValueError(
        f"at ΩT = {times[j]:g} the simulation's pixel noise is {share} of ⟨C_ℓ⟩ (at most "
        f"{100 * MAX_NOISE_FRACTION:.0f} % allowed) at ℓ = {ells[i]} (design point {k}, {where}): the model cannot "
        "resolve that multipole there. Raise the campaign's nside (noise ∝ 1/N_pix), choose an earlier time, or fit "
        "fewer ℓ (ells). The largest ℓ that passes at each stored time: "
        + ", ".join(f"ΩT = {t:g}: ℓ ≤ {p}" if p is not None else f"ΩT = {t:g}: none" for t, p in zip(times, passing))
    )
