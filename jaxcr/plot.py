"""Figures: the paper's Fig. 2, the Liouville gedankenexperiment (Sec. 2) and sky maps of δI, from run Datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import theory

__all__ = ["plot_fig2", "plot_gedanken", "plot_sky_maps", "plot_fit", "save_figure"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _ticker():
    import matplotlib.ticker

    return matplotlib.ticker


def save_figure(fig, path, dpi: int = 120, tight: bool = True) -> Path:
    """Write ``fig`` to ``path`` (folders made) and close it; ``tight``: matplotlib's tight layout
    first (not for healpy's Mollweide axes, which place themselves)."""
    import matplotlib.pyplot as plt

    if tight:
        fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    plt.close(fig)
    return path


def plot_fig2(
    ds, path, medium_ells=(4, 8, 16), title: str | None = None, years_per_unit_time: float | None = None,
    time_note: str = "",
) -> Path:  # fmt: skip
    """⟨C_ℓ⟩(T) vs ΩT as in the paper's Fig. 2 (left) and ⟨C_ℓ⟩/⟨C_1⟩ vs ℓ (right).

    Solid: gradient ∥ B0 ("parallel"); dotted: ⊥ ("perpendicular"). Black ⟨C_1⟩, blue ⟨C_0⟩,
    green medium ℓ, each with a band of ± its standard error over the realisations; red the
    noise level (Eq. 12); magenta the C_1 of the realisation-averaged map (standard diffusion, as
    in the paper) and, thick and pale, Eq. 6 with the run's Green-Kubo K(T) (the value the
    scripts print), thin dashed with its Einstein K(T) = ⟨ΔrΔr⟩/2T, which lags the asymptotic K by
    ~τ_c/T. C_ℓ are for |∇n/n| = 1/r_L (they scale as |∇n/n|²). ``years_per_unit_time`` (r_L/c
    in years) adds a top axis in years, for the energy and field that ``time_note`` states.
    """
    plt = _pyplot()
    t = ds.time.values
    styles = {"parallel": "-", "perpendicular": ":"}
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(14, 5.8), gridspec_kw=dict(width_ratios=(1.35, 1)))
    lmax = int(ds.ell.values[-1])
    ells = [ell for ell in medium_ells if ell <= lmax]
    greens = plt.cm.Greens(np.linspace(0.5, 0.95, max(len(ells), 1)))
    first = True
    for g in ds.gradient.values:
        ls = styles.get(str(g), "--")
        sub = ds.sel(gradient=g)
        lab = (lambda s: s) if first else (lambda s: None)
        first = False
        for ell, color in [(1, "k"), (0, "tab:blue"), *zip(ells, greens)]:
            mean, sem = sub.cl_mean.values[:, ell], sub.cl_sem.values[:, ell]
            ax.plot(t, mean, ls, color=color, label=lab(rf"$\langle C_{{{ell}}}\rangle$ ± s.e."))
            ax.fill_between(t, np.maximum(mean - sem, 1e-300), mean + sem, color=color, alpha=0.12, lw=0)
        ax.plot(t, sub.noise_level.values, ls, color="tab:red", label=lab("noise (Eq. 12)"))
        ax.plot(t, sub.cl_standard_diffusion.values[:, 1], ls, color="m", label=lab(r"$C_1$ of the mean map"))
        ax.plot(
            t, sub.standard_diffusion_dipole_eq6_green_kubo.values, ls, color="m", alpha=0.35, lw=3,
            label=lab("Eq. 6, Green-Kubo K(T)"),
        )  # fmt: skip
        ax.plot(t, sub.standard_diffusion_dipole_eq6.values, ls, color="m", lw=0.8, label=lab("Eq. 6, Einstein K(T)"))
    top = float(ds.cl_mean.max())
    ax.set_ylim(1e-6 * top, 3 * top)
    ax.set(xscale="log", yscale="log", xlabel="ΩT (backtracking time in units of 1/Ω)")
    ax.set_ylabel(r"$\langle C_\ell\rangle$  [$(r_L\,|\nabla n/n|)^2$]")
    ax.legend(
        fontsize=7.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), title="solid: ∇n ∥ B0\ndotted: ∇n ⊥ B0",
        title_fontsize=7.5, frameon=False,
    )  # fmt: skip
    _years_axis(ax, years_per_unit_time, time_note)
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
            label=f"ΩT = {t[ti]:.4g}",
        )
    ax2.plot(ell, np.asarray(theory.asymptotic_ratio(ell)), "k--", label="Eq. 4 (large T)")
    ax2.set_ylim(1e-5, 3)
    ax2.set(xscale="log", yscale="log", xlabel=r"$\ell$")
    ax2.set_ylabel(r"$\langle C_\ell\rangle / \langle C_1\rangle$")
    ax2.set_title(f"spectrum shape ({ds.gradient.values[0]} gradient)", fontsize=10)
    ax2.legend(fontsize=7.5)
    fig.suptitle(title or _fig2_title(ds), fontsize=10)
    return save_figure(fig, path)


def _fig2_title(ds) -> str:
    """The run's parameters and map equation, from the Dataset's attributes."""
    a = ds.attrs
    rho = float(a.get("turbulence_larmor_radius", np.nan)) / float(a.get("turbulence_coherence_length", np.nan))
    config = json.loads(a["config"]) if "config" in a else {}
    equation = "Eq. 5 (with −3p̂·K·g)" if config.get("fick_term") else "Eq. 7 (δI = r(−T)·∇n/n)"
    return (
        f"Fig. 2: σ² = {float(a.get('turbulence_sigma2', np.nan)):g}, r_L/λ_c = {rho:.3g}, "
        f"N = {int(float(a.get('turbulence_n_modes', 0)))} modes, nside {config.get('nside', '?')}, "
        f"N_B = {ds.sizes.get('realisation', config.get('n_realisations', '?'))} realisations, "
        f"Boris dt = {a.get('dt', '?')}, map {equation}"
    )


def _years_axis(ax, years_per_unit_time: float | None, time_note: str) -> None:
    """A top axis giving ΩT in years (``years_per_unit_time`` = r_L/c in years), labelled ``time_note``."""
    if years_per_unit_time:
        top_axis = ax.secondary_xaxis(
            "top", functions=(lambda x: x * years_per_unit_time, lambda y: y / years_per_unit_time)
        )
        top_axis.set_xlabel(time_note or "T [yr]", fontsize=8)


def plot_gedanken(
    runs: dict, path, ells=(1, 2, 3, 4, 6, 10, 20), ratio_times=(1.0, 3.0, 10.0, 30.0),
    years_per_unit_time: float | None = None, time_note: str = "",
) -> Path:  # fmt: skip
    """Liouville gedankenexperiment: ⟨C_ℓ⟩(T), the conserved sum (Eq. 3) and ratios vs Eq. 4.

    ``runs`` maps a label (e.g. "B0 = 0") to a Dataset with ``liouville_cl``; the right panel
    shows ⟨C_ℓ⟩/⟨C_1⟩ at the grid times nearest to ``ratio_times`` (solid: first run, dashed:
    second). At late times the sky decorrelates on the pixel scale and the ratios go flat (white).
    ``years_per_unit_time`` (r_L/c in years) adds a top axis in years to the two time panels, for
    the energy and field that ``time_note`` states.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.0))
    lmax = 0
    for k, (label, ds) in enumerate(runs.items()):
        t = ds.time.values
        cl = ds.liouville_cl.values.mean(1)  # (time, ell)
        ls = ["-", "--", ":"][k % 3]
        lmax = cl.shape[-1] - 1
        axes[0].plot([], [], ls, color="gray", label=label)  # which line style is which run
        for i, ell in enumerate([e for e in ells if e <= lmax]):
            axes[0].plot(t, cl[:, ell], ls, color=plt.cm.plasma(i / len(ells)), label=f"ℓ = {ell}" if k == 0 else None)
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
    axes[0].set(
        xscale="log", yscale="log", xlabel="ΩT", ylabel="⟨C_ℓ⟩", title="Liouville: ⟨C_ℓ⟩(T) from a dipole at T = 0"
    )
    axes[1].axhline(1 / 3, color="gray", lw=0.8, label="exact 1/3 (all ℓ)")
    axes[1].set(
        xscale="log",
        xlabel="ΩT",
        ylabel="(1/4π) Σ (2ℓ+1)⟨C_ℓ⟩",
        title=f"Eq. 3: the sum over all ℓ is conserved;\nthe sum to ℓ = {lmax} falls as power moves to smaller scales",
    )
    axes[2].set(
        xscale="log",
        yscale="log",
        xlabel="ℓ",
        ylabel="⟨C_ℓ⟩/⟨C_1⟩",
        title="ratios against Eq. 4 (flat: pixel-scale noise)",
    )
    axes[2].set_ylim(1e-4, 3)
    for a in axes[:2]:
        _years_axis(a, years_per_unit_time, time_note)
    for a in axes:
        a.legend(fontsize=6)
    return save_figure(fig, path)


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
    return save_figure(fig, path, dpi=110, tight=False)


def plot_mock_sky(sky, path, title: str = "") -> Path:
    """Mollweide maps of a mock sky (:class:`jaxcr.synthetic.MockSky`): the model's δI and the
    relative intensity the observatory measures, counts/background − 1 in its field of view (shot
    noise included; grey outside), each on its own symmetric colour scale."""
    import healpy as hp

    from .observatory import relative_intensity_from_counts

    plt = _pyplot()
    obs = sky.observation
    measured = relative_intensity_from_counts(obs.counts, obs.background, obs.weights)
    measured = np.where(obs.weights > 0, measured, hp.UNSEEN)
    fig = plt.figure(figsize=(10.4, 4.2))
    for k, (m, what) in enumerate(((sky.relative_intensity, "model sky δI"), (measured, "observed N/⟨N⟩ − 1"))):
        seen = m[m != hp.UNSEEN]
        v = float(np.max(np.abs(seen))) or 1.0
        hp.mollview(
            m, fig=fig.number, sub=(1, 2, k + 1), title=what, cmap="RdBu_r", min=-v, max=v, unit="δI", format="%.1e"
        )
    fig.suptitle(title + " (equatorial coordinates, RING)", fontsize=10)
    return save_figure(fig, path, dpi=110, tight=False)


def plot_fit(result):
    """Data against the best-fit model (with the one-sky cosmic-variance band) and the profile
    likelihoods of a :class:`jaxcr.inference.FitResult`; returns the figure."""
    plt = _pyplot()
    names = [n for n in result.names if n in result.profiles]
    region = getattr(result, "joint_region", None)
    panels = 1 + len(names) + (region is not None)
    fig, axes = plt.subplots(1, panels, figsize=(5.2 + 3.2 * (panels - 1), 4.0))
    ax = axes[0]
    for k, s in enumerate(result.spectra):
        ell, colour = np.asarray(s["ell"]), f"C{k}"
        band = np.asarray(s["model_band"])
        ax.fill_between(ell, band[0], band[1], color=colour, alpha=0.25,
                        label="one sky's 68 % band (cosmic variance)" if k == 0 else None)  # fmt: skip
        ax.plot(ell, s["model"], color=colour, label=f"best-fit model ({s['spectrum']['observatory']})")
        ax.errorbar(ell, s["data"], yerr=s["data_sigma"], fmt="o", ms=3, color=colour if k else "k",
                    label="data Ĉ_ℓ − N" if k == 0 else None)  # fmt: skip
    ax.set_yscale("log")
    ax.set_xlabel("multipole ℓ")
    ax.set_ylabel("C_ℓ")
    fitted = ", ".join(
        f"{result.profiles[n]['label']} = {result.parameters[n]:.3g}" for n in names if not n.startswith("amplitude")
    )
    times = ", ".join(f"{s['artifact']['time']:g}" for s in result.spectra)
    ax.set_title(
        f"{fitted}\nχ² = {result.chi2:.1f} / {result.dof} dof (p = {result.p_value:.2g}), ΩT = {times}", fontsize=9
    )
    ax.legend(fontsize=7)
    ticker = _ticker()
    if region is not None:
        _plot_joint_region(axes[-1], region, [result.parameters[n] for n in region["parameters"]], ticker)
    for ax, name in zip(axes[1:], names):
        prof = result.profiles[name]
        ax.plot(prof["value"], prof["delta_m2lnl"], color="k")
        for level, ls, key in ((1.0, "--", "critical_68"), (4.0, ":", "critical_95")):
            if key in prof:  # critical values calibrated by toys (jaxcr.inference.neyman)
                ax.plot(prof["value"], prof[key], color="grey", ls=ls, lw=0.8, label=f"{key[-2:]} % critical (toys)")
            else:
                ax.axhline(level, color="grey", ls=ls, lw=0.8)
        lo, hi, closed_lo, closed_hi = result.intervals[name]["68"]
        ax.axvspan(lo, hi, color="tab:blue", alpha=0.12, label="68 % interval")
        for end, closed, side in ((lo, closed_lo, "left"), (hi, closed_hi, "right")):
            if not closed:  # the interval reaches the end of the profiled range (the box): open there
                ax.annotate("open: box edge", (end, 8.3), ha=side, fontsize=7, color="tab:red")
                ax.axvline(end, color="tab:red", lw=1.2)
        ax.set_ylim(0, 9)
        if prof["transform"] == "log":
            _log_ticks(ax.xaxis, prof["value"], ticker)
        ax.set_xlabel(prof["label"])
        ax.set_ylabel("Δ(−2 ln L), profile")
        if "critical_68" in prof:
            ax.legend(fontsize=6, loc="upper center")
    fig.tight_layout()
    return fig


def _log_ticks(axis, values, ticker) -> None:
    """A log axis over ``values`` with readable labels (more a decade the fewer decades it spans)."""
    getattr(axis.axes, f"set_{axis.axis_name}scale")("log")
    decades = np.log10(max(values) / min(values))  # over ~2 decades: one label a decade
    subs = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0) if decades < 0.8 else (1.0, 2.0, 5.0) if decades < 1.5 else (1.0,)
    axis.set_major_locator(ticker.LogLocator(subs=subs))
    axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:.3g}"))
    axis.set_minor_formatter(ticker.NullFormatter())


def _plot_joint_region(ax, region: dict, best: list, ticker) -> None:
    """The joint 68 % and 95 % regions of the two boxed parameters (λ = c(θ)) over the whole box,
    whose edges are the panel's, and the best fit."""
    x, y = (np.asarray(v) for v in region["value"])
    lam = np.asarray(region["delta_m2lnl"])
    for (level, critical), style in zip(region["critical"].items(), ("-", "--")):
        excess = (lam - np.asarray(critical)).T
        if excess.min() < 0:
            ax.contourf(
                x, y, excess, levels=[excess.min(), 0.0], colors="tab:blue", alpha=0.3 if level == "68" else 0.12
            )
            ax.contour(x, y, excess, levels=[0.0], colors="k", linestyles=style, linewidths=1.0)
        ax.plot([], [], "k" + style, lw=1.0, label=f"{level} % joint region")
    calibrated = np.asarray(region.get("calibrated", [[False]]), dtype=float)
    if 0 < calibrated.mean() < 1:  # where the critical values come from realisations
        ax.contour(x, y, calibrated.T, levels=[0.5], colors="tab:red", linestyles=":", linewidths=1.0)
        ax.plot([], [], "r:", lw=1.0, label="calibrated area (χ²₂ outside)")
    ax.plot(*best, "k+", ms=9, label="best fit")
    for axis, values, transform in zip((ax.xaxis, ax.yaxis), (x, y), region["transforms"]):
        if transform == "log":
            _log_ticks(axis, values, ticker)
    ax.set_xlim(x[0], x[-1])
    ax.set_ylim(y[0], y[-1])
    ax.set_xlabel(region["labels"][0] + " (panel = the box)")
    ax.set_ylabel(region["labels"][1])
    ax.set_title(
        "λ ≤ c(θ), calibrated on realisations"
        if region["thresholds"] == "calibrated"
        else "Δ(−2 ln L) ≤ χ²₂ (2.30, 6.18)",
        fontsize=8,
    )
    ax.legend(fontsize=6, loc="best")
