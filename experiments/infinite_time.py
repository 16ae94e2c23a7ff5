"""The T → ∞ limit of ⟨C_ℓ⟩ from spectra still converging, validated against longer runs.

    python experiments/infinite_time.py --runs results/convergence_time_long_s6 results/convergence_time_long_s1
        [--fit-min 1] [--fit-max 8] [--out results/infinite_time]

Reads the points of `experiments/convergence_time.py` runs (per realisation and stored time, the
full-sky spectrum of the unit-gradient sky minus its pixel noise). For each point, over the
multipoles that run resolves at its last time, it fits ln⟨C_ℓ⟩(T) = ln⟨C_ℓ⟩_∞ − b_ℓ·t_sep/T
(:func:`jaxcr.inference.convergence.approach_fit`, t_sep(σ², ρ) the separation law) to the stored
times --fit-min·t_sep ≤ T ≤ --fit-max·t_sep only (the law holds once pairs have separated, not in
the ballistic start), and predicts every later stored time. The prediction minus the
measured ln⟨C_ℓ⟩ there, with its error from resampling realisations (the same resample for the
fit and the measurement, so their correlation is kept), says whether the law and its limit
hold: z = Δ/SE per ℓ and time, and χ² over them (correlated, so only a guide). Also the limit from
all stored times against the last one (the rise still to come) and b_ℓ. Writes infinite_time.json
(every number, the runs' settings, versions) and infinite_time.png.
"""

import json
import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import jaxcr
from jaxcr import io
from jaxcr.inference.campaign import software_versions
from jaxcr.inference.convergence import approach_fit, infinite_time_limit, separation_time
from jaxcr.plot import save_figure
from jaxcr.recipes.command import CommandParser, run_command

N_RESAMPLES = 2000


def validate(cl, times, t_sep: float, fit_min: float, fit_max: float, seed: int = 0) -> dict:
    """Fit on fit_min·t_sep ≤ T ≤ fit_max·t_sep, predict the later times; resampled errors of
    prediction − measurement; the limit from every stored time from fit_min·t_sep on."""
    times = np.asarray(times, dtype=float)
    late = times >= fit_min * t_sep * 0.99  # 1 %: stored times are rounded multiples of the law's t_sep
    fit = late & (times <= fit_max * t_sep * 1.01)
    later = times > fit_max * t_sep * 1.01
    if fit.sum() < 3 or not later.any():
        raise ValueError(
            f"--fit-min {fit_min} and --fit-max {fit_max} leave {int(fit.sum())} stored times to fit and "
            f"{int(later.sum())} after them (the stored times are {np.round(times / t_sep, 2).tolist()} separation "
            "times): need >= 3 and >= 1"
        )

    def prediction_minus_measurement(sample):  # (R, T, L) -> (T_later, L)
        log_mean = np.log(sample.mean(0))
        limit, slope = approach_fit(log_mean[fit], times[fit], t_sep)
        return limit - slope * t_sep / times[later, None] - log_mean[later]

    delta = prediction_minus_measurement(cl)
    rows = np.random.default_rng(seed).integers(0, len(cl), size=(N_RESAMPLES, len(cl)))
    boot = np.stack([prediction_minus_measurement(cl[r]) for r in rows])
    se = boot.std(0, ddof=1)
    limit, limit_se, slope = infinite_time_limit(cl[:, late], times[late], t_sep, seed=seed)
    return dict(
        fitted_times_over_tsep=(times[fit] / t_sep).tolist(),
        predicted_times_over_tsep=(times[later] / t_sep).tolist(),
        delta=delta.tolist(),
        delta_se=se.tolist(),
        z=(delta / se).tolist(),
        chi2=float(np.sum((delta / se) ** 2)),
        n=int(delta.size),
        limit_minus_last=(limit - np.log(cl[:, -1].mean(0))).tolist(),
        limit_se=limit_se.tolist(),
        b=slope.tolist(),
    )


def _plot(points, path: Path) -> None:
    fig, axes = plt.subplots(1, len(points), figsize=(4.4 * len(points), 3.6), squeeze=False)
    for ax, p in zip(axes[0], points):
        v = p["validation"]
        x = np.array(v["predicted_times_over_tsep"])
        for i, ell in enumerate(p["ells"]):
            d, s = np.array(v["delta"])[:, i], np.array(v["delta_se"])[:, i]
            ax.errorbar(x * (1 + 0.03 * i), d, s, fmt="o", ms=3, label=f"ℓ = {ell}")
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("T / t_sep")
        ax.set_ylabel(f"predicted − measured ln⟨C_ℓ⟩ (fit {p['fit_min']:g}-{p['fit_max']:g} t_sep)")
        ax.set_title(f"σ² = {p['sigma2']:g}, ρ = {p['rho']:g}", fontsize=9)
        ax.legend(fontsize=7)
    save_figure(fig, path, dpi=120)


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/infinite_time.py", description=__doc__)
    ap.add_argument("--runs", type=Path, nargs="+", required=True, help="convergence_time.py output folders")
    ap.add_argument("--fit-min", type=float, default=1.0, help="fit the stored times T ≥ this × t_sep (default 1)")
    ap.add_argument("--fit-max", type=float, default=8.0, help="fit the stored times T ≤ this × t_sep (default 8)")
    ap.add_argument("--out", type=Path, default=Path("results/infinite_time"), help="output folder")
    args = ap.parse_args(argv)
    if not 0 < args.fit_min < args.fit_max:
        ap.error(f"need 0 < --fit-min < --fit-max; got {args.fit_min} and {args.fit_max}")
    io.check_writable("--out", args.out / "infinite_time.json")
    points, settings = [], {}
    for run in args.runs:
        summary_path = run / "convergence_time.json"
        if not summary_path.exists():
            ap.error(f"{run} is not a convergence_time.py output folder (no convergence_time.json)")
        summary = json.loads(summary_path.read_text())
        settings[str(run)] = summary["settings"]
        for row in summary["rows"]:
            path = run / "points" / f"sigma2_{row['sigma2']:g}_rho_{row['rho']:g}.npz"
            arrays, _ = io.load_checkpoint(path, kind="checkpoint")
            ells = row["resolved_ells"]
            t_sep = float(separation_time(row["sigma2"], row["rho"]))
            if not ells:
                print(
                    f"σ² = {row['sigma2']:g}, ρ = {row['rho']:g}: skipped, the pixel noise hides every ℓ at the last time"
                )
                continue
            try:
                result = validate(arrays["cl"][:, :, ells], summary["times"], t_sep, args.fit_min, args.fit_max)
            except ValueError as err:
                print(f"σ² = {row['sigma2']:g}, ρ = {row['rho']:g}: skipped, {err}")
                continue
            points.append(dict(run=str(run), sigma2=row["sigma2"], rho=row["rho"], t_sep_law=t_sep,
                               fit_min=args.fit_min, fit_max=args.fit_max, ells=ells, validation=result))  # fmt: skip
            z = np.array(result["z"])
            print(f"σ² = {row['sigma2']:g}, ρ = {row['rho']:g}, ℓ = {ells}: fitted T/t_sep = "
                  f"{np.round(result['fitted_times_over_tsep'], 2).tolist()}; predicted − measured at "
                  f"{np.round(result['predicted_times_over_tsep'], 2).tolist()} t_sep (rows), per ℓ (columns):")  # fmt: skip
            for t, d, s in zip(result["predicted_times_over_tsep"], result["delta"], result["delta_se"]):
                print(f"   {t:6.2f}: " + ", ".join(f"{a:+.2f}±{b:.2f}" for a, b in zip(d, s)))
            print(f"   χ² = {result['chi2']:.1f} for {result['n']} (correlated), max |z| = {np.abs(z).max():.1f}; "
                  f"b = {np.round(result['b'], 2).tolist()}; limit − last = "
                  + ", ".join(f"{a:+.2f}±{b:.2f}" for a, b in zip(result["limit_minus_last"], result["limit_se"])))  # fmt: skip
    if not points:
        raise ValueError("no point of --runs has the stored times --fit-min/--fit-max need (see above)")
    meta = dict(settings=dict(fit_min=args.fit_min, fit_max=args.fit_max, runs=[str(r) for r in args.runs], resamples=N_RESAMPLES),
                runs=settings, jaxcr=jaxcr.__version__, versions=software_versions())  # fmt: skip
    io.write_json(args.out / "infinite_time.json", dict(meta=meta, points=points))
    _plot(points, args.out / "infinite_time.png")
    print(f"wrote {args.out / 'infinite_time.json'} and {args.out / 'infinite_time.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python experiments/infinite_time.py", main))
