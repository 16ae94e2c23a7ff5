"""Do the reported uncertainties cover the truth? Profile likelihoods over many synthetic skies.

    python experiments/calibrate_likelihood.py                 # 20 skies, 64 realisations per grid point
    python experiments/calibrate_likelihood.py --realisations 32 --first-sky-seed 101
    python experiments/calibrate_likelihood.py --fit         # the emulator fit itself, sky by sky

One injection-recovery fit says little about an error bar; this runs many. The model grid
(``--grid``² points over σ² ∈ [0.25, 4], ρ = r_L/λ_c ∈ [0.04, 0.25], independent realisations
per point) is backtracked once (:func:`jaxcr.inference.profile_likelihood`); then for each of
``--skies`` synthetic skies made at the truth σ² = 1, ρ = 0.1 (each the mean of ``--sky``
realisations, 5 % measurement noise, amplitude 1e-6, noise level 1e-8, whole sky) the emulated
χ² surface (:meth:`LikelihoodScan.emulated`) gives 68 % and 95 % profile-likelihood intervals
for σ² and ρ, with the amplitude profiled and with it known. The fraction of skies whose
interval contains the truth is the coverage: 0.68 and 0.95 for honest error bars.

With ``--fit`` the same skies are fitted one by one by the emulator fit a user runs
(:func:`jaxcr.inference.fit_spectrum` with ``method=EmulatorFit()``, amplitude known, started a factor 2
away at σ² = 2, ρ = 0.2, designs of ``--grid``² points × ``--realisations``): the coverage of
the fit's own intervals, recentring and all, at ≈ 2 design rounds per sky.

It also measures how far apart the means of disjoint blocks of realisations at the truth lie
compared with their standard errors (``dispersion_ratio``: 1 for well-behaved sample means; the
per-realisation spectra are skewed, ~exponential, and heavier tails than their sample scatter
shows make it larger) — the input the likelihood's covariance rests on.

Model: nside 4 (ℓ = 1..7), N = 32 modes, ΩT = 20, λ_min/λ_c = 0.1, λ_max/λ_c = 10, dt = 0.05.
Writes into --out (default results/calibrate_likelihood): calibration.json (every interval, the
coverage table, all parameters, the jaxcr version) and calibration.png (the Δχ² surface of the
first sky with the truth, and the intervals of every sky).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np

import jaxcr
from jaxcr import inference
from jaxcr.inference import EmulatorFit
from jaxcr.synthetic import synthetic_spectrum

TRUTH = dict(sigma2=1.0, rho=0.1)
AMPLITUDE, NOISE = 1e-6, 1e-8


def dispersion_ratio(model, blocks, per_block):
    """√(mean over ℓ of χ²/dof) of block means about their grand mean, each with its own SE."""
    means, ses = [], []
    for b in range(blocks):
        m = dataclasses.replace(model, n_realisations=per_block, seed=50_000 + b)
        s = np.asarray(inference.realisation_spectra(jnp.log(jnp.array([TRUTH["sigma2"], TRUTH["rho"]])), m))[:, 1:]
        means.append(s.mean(0))
        ses.append(s.std(0, ddof=1) / np.sqrt(per_block))
    means, ses = np.array(means), np.array(ses)
    grand = means.mean(0)
    chi2 = (((means - grand) / ses) ** 2).sum(0) / (blocks - 1)
    return float(np.sqrt(chi2.mean())), chi2.tolist()


def _coverage(rows, labels):
    """Fraction of skies whose interval contains the truth, per amplitude mode, parameter and level."""
    return {
        f"{label}/{name}_{tag}": float(np.mean([r[label][f"{name}_{tag}"]["covers"] for r in rows]))
        for label in labels
        for name in TRUTH
        for tag in ("68", "95")
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skies", type=int, default=20, help="number of synthetic skies")
    ap.add_argument("--sky", type=int, default=64, help="realisations averaged in each synthetic sky")
    ap.add_argument(
        "--realisations",
        type=int,
        default=64,
        help="model realisations per grid point (at 32 the σ² intervals under-cover, see experiments/README.md)",
    )
    ap.add_argument("--grid", type=int, default=9, help="grid points per parameter")
    ap.add_argument("--degree", type=int, default=2, help="emulator polynomial degree")
    ap.add_argument("--nside", type=int, default=4, help="HEALPix nside of the model and the skies (default 4)")
    ap.add_argument("--time", type=float, default=20.0, help="backtracking time ΩT")
    ap.add_argument("--blocks", type=int, default=8, help="blocks for the dispersion check (0: skip)")
    ap.add_argument("--seed", type=int, default=0, help="model seed")
    ap.add_argument("--first-sky-seed", type=int, default=1, help="seed of the first synthetic sky (then +1, +2, ...)")
    ap.add_argument(
        "--fit",
        action="store_true",
        help="fit each sky with the emulator fit (amplitude known) instead of reading intervals off one global scan",
    )
    ap.add_argument(
        "--out",
        type=Path,
        help="output folder (default results/calibrate_likelihood, or results/calibrate_fit with --fit)",
    )
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = ap.parse_args(argv)
    for name in ("skies", "sky", "realisations", "grid"):
        jaxcr._checks.check_positive_int(name, getattr(args, name))
    if args.grid < 3:
        raise SystemExit("--grid must be at least 3")
    args.out = args.out or Path("results") / ("calibrate_fit" if args.fit else "calibrate_likelihood")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    model = inference.SpectrumModel(
        nside=args.nside, n_realisations=args.realisations, n_modes=32, time=args.time, seed=args.seed
    )
    truth = jnp.log(jnp.array([TRUTH["sigma2"], TRUTH["rho"]]))

    def sky(seed):
        return synthetic_spectrum(
            truth,
            model,
            observatory="synthetic",
            energy_tev=20.0,
            amplitude=AMPLITUDE,
            noise_level=NOISE,
            sky_realisations=args.sky,
            seed=seed,
        )

    s2 = np.exp(np.linspace(np.log(0.25), np.log(4.0), args.grid))
    rho = np.exp(np.linspace(np.log(0.04), np.log(0.25), args.grid))
    print(
        f"model grid: {args.grid}×{args.grid} points × {args.realisations} realisations, nside {args.nside}, "
        f"ΩT {args.time:g}",
        flush=True,
    )
    record = dict(
        args={k: str(v) for k, v in vars(args).items()},
        truth=TRUTH,
        amplitude=AMPLITUDE,
        noise_level=NOISE,
        model=dataclasses.asdict(model),
        jaxcr_version=jaxcr.__version__,
    )
    labels = ("known",) if args.fit else ("profiled", "known")
    if not args.fit:
        base = inference.profile_likelihood(sky(10_000), model, s2, rho, progress=not args.no_progress)
        record["grid_wall_s"] = base.wall_time_s
    rows, first = [], {}
    for k in range(args.first_sky_seed, args.first_sky_seed + args.skies):
        spec = sky(k)
        row = dict(sky_seed=k)
        for label, amp in (("profiled", None), ("known", AMPLITUDE)):
            if label not in labels:
                continue
            if args.fit:
                res = inference.fit_spectrum(
                    spec,
                    model,
                    {"sigma2": 2.0, "rho": 0.2},
                    amplitude=amp,
                    method=EmulatorFit(design_points=args.grid),
                    progress=not args.no_progress,
                )
                row[label] = dict(
                    best=res.parameters,
                    converged=res.converged,
                    rounds=len(res.history),
                    wall_s=res.wall_time_s,
                    log_uncertainties=res.log_uncertainties,
                    max_emulator_reduced_chi2=max(res.history[-1]["emulator_max_reduced_chi2"]),
                )
                interval = lambda name, level: res.intervals[name]["68" if level == 1.0 else "95"]
            else:
                emu = base.with_observed(spec, amp).emulated(degree=args.degree)
                if k == args.first_sky_seed:
                    first[label] = emu
                row[label] = dict(best=emu.best(), max_emulator_reduced_chi2=emu.emulator["max_reduced_chi2"])
                interval = emu.interval
            for name, value in TRUTH.items():
                for level, tag in ((1.0, "68"), (4.0, "95")):
                    lo, hi, clo, chi = interval(name, level)
                    row[label][f"{name}_{tag}"] = dict(
                        low=lo, high=hi, closed=[clo, chi], covers=bool(lo <= value <= hi)
                    )
        rows.append(row)
        line = "; ".join(
            f"{label}: σ² 68 % [{row[label]['sigma2_68']['low']:.3g}, {row[label]['sigma2_68']['high']:.3g}], "
            f"ρ [{row[label]['rho_68']['low']:.3g}, {row[label]['rho_68']['high']:.3g}]"
            for label in labels
        )
        print(f"sky {k}: {line}", flush=True)
        record.update(skies=rows, coverage=_coverage(rows, labels), wall_s=time.perf_counter() - t0)
        jaxcr.io.atomic_write(
            args.out / "calibration.json",  # after every sky: a long run loses nothing
            lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1, default=float)),
        )
    coverage = record["coverage"]
    if args.blocks >= 2:
        ratio, per_ell = dispersion_ratio(model, args.blocks, args.sky)
        record["dispersion_ratio"] = dict(
            value=ratio, chi2_per_dof_per_ell=per_ell, blocks=args.blocks, per_block=args.sky
        )
        print(
            f"block means at the truth ({args.blocks} × {args.sky}): scatter / SE = {ratio:.2f} "
            f"(χ²/dof per ℓ {np.round(per_ell, 2).tolist()})"
        )
    record["wall_s"] = time.perf_counter() - t0
    print("coverage (fraction of skies whose interval contains the truth; honest: 0.68 / 0.95):")
    for key, value in coverage.items():
        print(f"  {key}: {value:.2f}")
    jaxcr.io.atomic_write(
        args.out / "calibration.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1, default=float))
    )
    _plot(first, rows, labels, args.out / "calibration.png")
    print(f"wrote {args.out / 'calibration.json'}, {args.out / 'calibration.png'} ({record['wall_s']:.0f} s)")
    return 0


def _plot(first, rows, labels, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 1 + len(first), figsize=(4.7 * (1 + len(first)), 4.2), squeeze=False)
    axes = axes[0]
    for ax, (label, emu) in zip(axes, first.items()):
        d = emu.chi2 - emu.chi2.min()
        cs = ax.contourf(emu.rho, emu.sigma2, d, levels=[0, 2.3, 6.18, 11.8, 50], cmap="Blues_r")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="ρ = r_L/λ_c",
            ylabel="σ²",
            title=f"sky 1, amplitude {label}: Δχ² (68/95/99.7 %)",
        )
        ax.plot(TRUTH["rho"], TRUTH["sigma2"], "r*", ms=12, label="truth")
        ax.legend()
        fig.colorbar(cs, ax=ax)
    ax = axes[-1]
    for i, r in enumerate(rows):
        for off, label, color in ((-0.15, "profiled", "C0"), (0.15, "known", "C1")):
            if label not in labels:
                continue
            iv = r[label]["sigma2_68"]
            ax.plot(
                [i + 1 + off] * 2,
                [iv["low"], iv["high"]],
                color=color,
                lw=3,
                label=f"amplitude {label}" if i == 0 else None,
            )
    ax.axhline(TRUTH["sigma2"], color="r", ls="--", label="truth")
    ax.set(yscale="log", xlabel="synthetic sky", ylabel="σ² 68 % interval", title="profile-likelihood intervals")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
