"""The semi-analytic pair model of ⟨C_ℓ⟩ (jaxcr.pair_model) against converged simulations.

    python experiments/pair_model.py [--anchors results/anchors/anchors.json] [--ell-max 20]
        [--extrapolate-rho 0.01 0.001] [--out results/pair_model] [--law-out jaxcr/data/pair_model_law.json]

Reads the converged spectra of `experiments/anchors.py` (⟨C_ℓ⟩ ± SE at ΩT = 4 t_sep, pixel noise
removed, gradients ∥ and ⊥ B0, with the diffusion tensor K at that time) and, per point (σ², ρ):

* the pair time τ from each gradient's ℓ ≥ 2 (jaxcr.pair_model.pair_time_from_spectrum); the model
  says one τ serves both (the gradient enters only through gᵀKg);
* power laws K∥, K⊥, τ = A (σ²)^b ρ^c over all points (jaxcr.pair_model.PairModelLaw);
* the ratio simulation / model per ℓ ≤ --ell-max with its error, for the model from the laws fitted
  on all points and, the predictive test, on all points but this one (leave one out); and χ²
  over the multipoles;
* the model carried to --extrapolate-rho (outside the simulated box: an extrapolation of the laws).

Writes pair_model.json and pair_model.png under --out, and the laws fitted on all points with their
provenance to --law-out (by default the law shipped with jaxcr, jaxcr.pair_model.shipped_pair_model_law,
which artifacts with a pair-model baseline use).
"""

import json
import sys
from pathlib import Path

import numpy as np

from jaxcr import io
from jaxcr.inference.campaign import software_versions
from jaxcr.pair_model import PairModelLaw, pair_spectrum, pair_time_from_spectrum
from jaxcr.plot import save_figure
from jaxcr.recipes.command import CommandParser, run_command

GRADIENTS = {"parallel": np.array([0.0, 0.0, 1.0]), "perpendicular": np.array([1.0, 0.0, 0.0])}


def _measured(row, name, ell_max):
    p = row[name]
    ell = np.asarray(p["ells"])
    keep = ell <= ell_max
    return ell[keep], np.asarray(p["mean"])[keep], np.asarray(p["se"])[keep]


def _pair_times(row, ell_max) -> dict:
    k = np.asarray(row["diffusion_tensor"])
    out = {}
    for name, g in GRADIENTS.items():
        ell, mean, se = _measured(row, name, ell_max)
        out[name] = pair_time_from_spectrum(ell, mean, se, k, g)
    (t1, e1), (t2, e2) = out.values()
    w1, w2 = 1 / e1**2, 1 / e2**2
    out["combined"] = ((w1 * t1 + w2 * t2) / (w1 + w2), 1 / np.sqrt(w1 + w2))
    out["parallel_over_perpendicular"] = (t1 / t2, t1 / t2 * np.hypot(e1 / t1, e2 / t2))
    return out


def _law(rows, taus) -> PairModelLaw:
    k = np.array([r["diffusion_tensor"] for r in rows])
    return PairModelLaw.fit(
        [r["sigma2"] for r in rows], [r["rho"] for r in rows], k[:, 2, 2], 0.5 * (k[:, 0, 0] + k[:, 1, 1]),
        [t["combined"][0] for t in taus], [t["combined"][1] for t in taus],
    )  # fmt: skip


def _compare(row, law: PairModelLaw, ell_max) -> dict:
    out = {}
    for name, g in GRADIENTS.items():
        ell, mean, se = _measured(row, name, ell_max)
        model = np.asarray(law.spectrum(row["sigma2"], row["rho"], ell, g))
        out[name] = dict(ells=ell.tolist(), ratio=(mean / model).tolist(), ratio_se=(se / model).tolist(),
                         chi2=float(np.sum(((mean - model) / se) ** 2)), n=len(ell))  # fmt: skip
    return out


def _plot(rows, fits, loo, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, name in zip(axes, GRADIENTS):
        for row, f, out in zip(rows, fits, loo):
            c = out[name]
            line = ax.errorbar(c["ells"], c["ratio"], c["ratio_se"], fmt="o-", ms=3, lw=0.8, capsize=0,
                               label=f"σ² = {row['sigma2']:g}, ρ = {row['rho']:g}")  # fmt: skip
            ax.plot(f[name]["ells"], f[name]["ratio"], ":", color=line[0].get_color(), lw=0.8)
        ax.axhline(1, color="k", lw=0.8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("ℓ")
        ax.set_title(f"simulation / pair model, gradient {'∥' if name == 'parallel' else '⊥'} B0 "
                     "(points: leave-one-out laws; dotted: all points)", fontsize=8)  # fmt: skip
    axes[0].set_ylabel("⟨C_ℓ⟩ simulated / model")
    axes[1].legend(fontsize=6, ncol=2)
    save_figure(fig, path, dpi=110)


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/pair_model.py", description=__doc__)
    ap.add_argument("--anchors", type=Path, default=Path("results/anchors/anchors.json"),
                    help="anchors.json of experiments/anchors.py (default results/anchors/anchors.json)")  # fmt: skip
    ap.add_argument("--ell-max", type=int, default=20, help="largest ℓ compared (default 20)")
    ap.add_argument("--extrapolate-rho", type=float, nargs="+", default=[0.01, 0.001], help="ρ to carry the model to")
    ap.add_argument("--out", type=Path, default=Path("results/pair_model"), help="output folder")
    ap.add_argument("--law-out", type=Path, default=Path("jaxcr/data/pair_model_law.json"),
                    help="where the fitted laws go (default jaxcr/data/pair_model_law.json, the shipped law)")  # fmt: skip
    args = ap.parse_args(argv)
    if not args.anchors.is_file():
        ap.error(f"--anchors {args.anchors} does not exist: run python experiments/anchors.py first")
    if args.ell_max < 2:
        ap.error(f"--ell-max must be >= 2; got {args.ell_max}")
    io.check_writable("--out", args.out / "pair_model.json")
    io.check_writable("--law-out", args.law_out)
    rows = json.loads(args.anchors.read_text())["rows"]
    measured = [r for r in rows if all(max(r[n]["ells"]) >= 2 for n in GRADIENTS)]
    for r in rows:
        if r not in measured:
            print(f"σ² = {r['sigma2']:g}, ρ = {r['rho']:g} left out: no multipole ℓ >= 2 above twice its error")
    rows = measured
    if len(rows) < 5:
        ap.error(f"{args.anchors} has {len(rows)} usable points; the laws and a left-out point need >= 5")
    taus = [_pair_times(r, args.ell_max) for r in rows]
    law = _law(rows, taus)
    fits = [_compare(r, law, args.ell_max) for r in rows]
    loo = [
        _compare(r, _law(rows[:i] + rows[i + 1 :], taus[:i] + taus[i + 1 :]), args.ell_max) for i, r in enumerate(rows)
    ]
    print(f"laws (A·σ²^b·ρ^c): K∥ {law.k_parallel}, K⊥ {law.k_perpendicular}, τ {law.pair_time}")
    print(
        "σ²    ρ     τ∥/τ⊥         τ (1/Ω)       χ²/n ∥ (all, left out)   χ²/n ⊥ (all, left out)   ratio ℓ=1, 2, 10 ⊥ (left out)"
    )
    for r, t, f, o in zip(rows, taus, fits, loo):
        c = o["perpendicular"]
        pick = [c["ratio"][c["ells"].index(ell)] if ell in c["ells"] else np.nan for ell in (1, 2, 10)]
        print(
            f"{r['sigma2']:<5g} {r['rho']:<5g} {t['parallel_over_perpendicular'][0]:5.2f} ± "
            f"{t['parallel_over_perpendicular'][1]:4.2f}   {t['combined'][0]:6.3g} ± {t['combined'][1]:5.2g}   "
            + "   ".join(f"{f[n]['chi2'] / f[n]['n']:6.2f}, {o[n]['chi2'] / o[n]['n']:6.2f}          " for n in GRADIENTS)
            + "   " + ", ".join(f"{v:.2f}" for v in pick)
        )  # fmt: skip
    ell = np.arange(1, args.ell_max + 1)
    extrapolated = []
    for rho in args.extrapolate_rho:
        for s2 in sorted({r["sigma2"] for r in rows}):
            k = np.asarray(law.diffusion_tensor(s2, rho))
            tau = float(law.power_law(law.pair_time, s2, rho))
            spectra = {n: np.asarray(pair_spectrum(ell, k, g, tau)) for n, g in GRADIENTS.items()}
            extrapolated.append(dict(sigma2=s2, rho=rho, k_parallel=float(k[2, 2]), k_perpendicular=float(k[0, 0]),
                                     pair_time=tau, ells=ell.tolist(), **{n: v.tolist() for n, v in spectra.items()}))  # fmt: skip
            print(f"extrapolated σ² = {s2:g}, ρ = {rho:g}: K∥ = {k[2, 2]:.3g}, K⊥ = {k[0, 0]:.3g} r_L c, τ = {tau:.3g}/Ω; "
                  f"C_ℓ/C_1 (g ⊥ B0) at ℓ = 2, 10: {spectra['perpendicular'][1] / spectra['perpendicular'][0]:.3g}, "
                  f"{spectra['perpendicular'][9] / spectra['perpendicular'][0]:.3g}")  # fmt: skip
    result = dict(
        settings=dict(anchors=str(args.anchors), ell_max=args.ell_max, extrapolate_rho=args.extrapolate_rho),
        law=law.as_dict(),
        points=[
            dict(sigma2=r["sigma2"], rho=r["rho"], pair_times=t, all_points=f, left_out=o)
            for r, t, f, o in zip(rows, taus, fits, loo)
        ],  # fmt: skip
        extrapolated=extrapolated,
        versions=software_versions(),
    )
    io.write_json(args.out / "pair_model.json", result)
    _plot(rows, fits, loo, args.out / "pair_model.png")
    anchors = json.loads(args.anchors.read_text())
    law_record = dict(
        law=law.as_dict(),
        provenance=dict(
            made_by="python experiments/pair_model.py",
            anchors=str(args.anchors),
            anchors_settings=anchors.get("settings"),
            points=[dict(sigma2=r["sigma2"], rho=r["rho"]) for r in rows],
            ell_max=args.ell_max,
            versions=software_versions(),
        ),
    )
    io.write_json(args.law_out, law_record)
    print(f"wrote {args.out / 'pair_model.json'}, {args.out / 'pair_model.png'} and {args.law_out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python experiments/pair_model.py", main))
