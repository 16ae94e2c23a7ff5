"""Figures: the paper's Fig. 2, the Liouville gedankenexperiment (Sec. 2) and sky maps of δI, from run Datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import theory

__all__ = ["plot_fig2", "plot_gedanken", "plot_sky_maps"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_fig2(ds, path, medium_ells=(4, 8, 16), title: str | None = None) -> Path:
    """⟨C_ℓ⟩(T) vs ΩT as in the paper's Fig. 2 (left) and ⟨C_ℓ⟩/⟨C_1⟩ vs ℓ (right).

    Solid: gradient ∥ B0 ("parallel"); dotted: ⟂ ("perpendicular"). Black ⟨C_1⟩, blue ⟨C_0⟩,
    green medium ℓ, red the noise level (Eq. 12), magenta the C_1 of the realisation-averaged map
    (standard diffusion, as in the paper) and, thick and pale, Eq. 6 evaluated with the run's
    Einstein K(T) (which lags the asymptotic K by ~τ_c/T). C_ℓ are for |∇n/n| = 1/r_L
    (they scale as |∇n/n|²).
    """
    plt = _pyplot()
    t = ds.time.values
    styles = {"parallel": "-", "perpendicular": ":"}
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(13, 5.2))
    lmax = int(ds.ell.values[-1])
    ells = [ell for ell in medium_ells if ell <= lmax]
    greens = plt.cm.Greens(np.linspace(0.5, 0.95, max(len(ells), 1)))
    for g in ds.gradient.values:
        ls = styles.get(str(g), "--")
        sub = ds.sel(gradient=g)
        lab = (lambda s: f"{s} ({g})") if ls == "-" else (lambda s: None)
        ax.plot(t, sub.cl_mean.values[:, 1], ls, color="k", label=lab("⟨C₁⟩"))
        ax.plot(t, sub.cl_mean.values[:, 0], ls, color="tab:blue", label=lab("⟨C₀⟩"))
        for c, ell in zip(greens, ells):
            ax.plot(t, sub.cl_mean.values[:, ell], ls, color=c, label=lab(f"⟨C_{ell}⟩"))
        ax.plot(t, sub.noise_level.values, ls, color="tab:red", label=lab("noise (Eq. 12)"))
        ax.plot(t, sub.cl_standard_diffusion.values[:, 1], ls, color="m", label=lab("C₁ of ⟨map⟩ (std. diffusion)"))
        ax.plot(
            t, sub.standard_diffusion_dipole_eq6.values, ls, color="m", alpha=0.35, lw=3, label=lab("Eq. 6 with K(T)")
        )
    top = float(ds.cl_mean.max())
    ax.set_ylim(1e-6 * top, 3 * top)
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="ΩT",
        ylabel="⟨C_ℓ⟩  [(r_L ∇n/n)²]",
        title=title or "Fig. 2: ensemble-averaged power spectrum vs backtracking time",
    )
    ax.legend(fontsize=7, ncol=2, title="solid: ∇n ∥ B0, dotted: ∇n ⊥ B0", title_fontsize=7)
    ell = ds.ell.values[1:]
    picks = sorted({int(np.argmin(np.abs(np.log(t / x)))) for x in np.geomspace(max(t[0], 1.0), t[-1], 4)})
    for i, ti in enumerate(picks):
        sub = ds.sel(gradient=ds.gradient.values[0]).isel(time=ti)
        ax2.plot(
            ell,
            sub.cl_mean.values[1:] / sub.cl_mean.values[1],
            "o-",
            ms=3,
            color=plt.cm.viridis(i / len(picks)),
            label=f"ΩT = {t[ti]:.3g}",
        )
    ax2.plot(ell, np.asarray(theory.asymptotic_ratio(ell)), "k--", label="Eq. 4")
    ax2.set_ylim(1e-5, 3)
    ax2.set(
        xscale="log",
        yscale="log",
        xlabel="ℓ",
        ylabel="⟨C_ℓ⟩/⟨C₁⟩",
        title=f"spectrum shape ({ds.gradient.values[0]} gradient)",
    )
    ax2.legend(fontsize=7)
    return _save(fig, path)


def plot_gedanken(runs: dict, path, ells=(1, 2, 3, 4, 6, 10, 20), ratio_times=(1.0, 3.0, 10.0, 30.0)) -> Path:
    """Liouville gedankenexperiment: ⟨C_ℓ⟩(T), the conserved sum (Eq. 3) and ratios vs Eq. 4.

    ``runs`` maps a label (e.g. "B0 = 0") to a Dataset with ``liouville_cl``; the right panel
    shows ⟨C_ℓ⟩/⟨C_1⟩ at the grid times nearest to ``ratio_times`` (solid: first run, dashed:
    second). At late times the sky decorrelates on the pixel scale and the ratios go flat (white).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    for k, (label, ds) in enumerate(runs.items()):
        t = ds.time.values
        cl = ds.liouville_cl.values.mean(1)  # (time, ell)
        ls = ["-", "--", ":"][k % 3]
        lmax = cl.shape[-1] - 1
        for i, ell in enumerate([e for e in ells if e <= lmax]):
            axes[0].plot(
                t, cl[:, ell], ls, color=plt.cm.plasma(i / len(ells)), label=f"ℓ={ell} ({label})" if k == 0 else None
            )
        axes[1].plot(t, ds.liouville_sum.values.mean(1), ls, color="k", label=f"Σ_ℓ≤{lmax} ({label})")
        axes[1].plot(
            t, ds.liouville_mean_square.values.mean(1), ls, color="tab:orange", label=f"pixel ⟨f²⟩, all ℓ ({label})"
        )
        ell = np.arange(1, lmax + 1)
        picks = sorted({int(np.argmin(np.abs(np.log(t / x)))) for x in ratio_times if t[0] <= x <= t[-1]})
        for j, ti in enumerate(picks):
            axes[2].plot(
                ell,
                cl[ti, 1:] / cl[ti, 1],
                "o" + ls,
                ms=2.5,
                color=plt.cm.viridis(j / max(len(picks), 1)),
                label=f"ΩT = {t[ti]:.3g} ({label})",
            )
    ell = np.arange(1, 41)
    axes[2].plot(ell, np.asarray(theory.asymptotic_ratio(ell)), "k-", lw=2, alpha=0.5, label="Eq. 4")
    axes[0].set(xscale="log", yscale="log", xlabel="ΩT", ylabel="⟨C_ℓ⟩", title="Liouville: ⟨C_ℓ⟩(T), dipole start")
    axes[1].set(xscale="log", xlabel="ΩT", ylabel="(1/4π) Σ (2ℓ+1)⟨C_ℓ⟩", title="Eq. 3: conserved sum")
    axes[2].set(xscale="log", yscale="log", xlabel="ℓ", ylabel="⟨C_ℓ⟩/⟨C₁⟩", title="ratios vs Eq. 4")
    axes[2].set_ylim(1e-4, 3)
    for a in axes:
        a.legend(fontsize=6)
    return _save(fig, path)


def plot_sky_maps(
    ds, path, realisation: int = 0, years_per_unit_time: float | None = None, time_note: str = ""
) -> Path:
    """Mollweide maps of δI (``jaxcr.skymaps.sky_maps``): one row per ΩT, one column per
    gradient (∥, ⊥ B0), each on its own symmetric colour scale (the largest |δI| of the panel).

    ``years_per_unit_time``: if given (r_L/c in years, :func:`jaxcr.units.time_to_years` of 1),
    the titles also give T in years; ``time_note`` says for which energy and field (caption).
    """
    import healpy as hp

    plt = _pyplot()
    times, gradients = ds.time.values, list(ds.gradient.values)
    fig = plt.figure(figsize=(5.2 * len(gradients), 3.2 * len(times) + 0.9))
    for i, t in enumerate(times):
        for j, g in enumerate(gradients):
            m = ds.sky_map.values[i, realisation, j]
            v = float(np.max(np.abs(m))) or 1.0
            when = f"ΩT = {t:g}" + (f" ({t * years_per_unit_time:.3g} yr)" if years_per_unit_time else "")
            hp.mollview(
                m,
                fig=fig.number,
                sub=(len(times), len(gradients), i * len(gradients) + j + 1),
                title=f"{when}, ∇n {'∥' if g == 'parallel' else '⊥'} B0",
                cmap="RdBu_r",
                min=-v,
                max=v,
                unit="δI  [r_L |∇n/n|]",
                cbar=True,
            )
    turbulence = json.loads(ds.attrs["turbulence"])
    rho = turbulence["larmor_radius"] / turbulence["coherence_length"]
    removed = int(ds.attrs["remove_ell_max"])
    caption = (
        f"δI = r(−T)·∇n/n (Eq. 7){f', ℓ ≤ {removed} removed' if removed >= 0 else ''}; σ² = {turbulence['sigma2']:g}, "
        f"r_L/λ_c = {rho:.3g}, N = {turbulence['n_modes']} modes, nside {ds.attrs['nside']}, "
        f"seed {ds.attrs['seed']}, realisation {realisation}"
    )
    for ax in fig.axes:  # make room for the caption below the panels
        box = ax.get_position()
        ax.set_position([box.x0, 0.07 + 0.92 * box.y0, box.width, 0.92 * box.height])
    fig.text(0.5, 0.008, caption + (f"\n{time_note}" if time_note else ""), ha="center", va="bottom", fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
