"""Injection-recovery of joint fits of two energies on mock-observatory skies: does the joint fit
pin σ² and λ_c better than either energy alone, and do its intervals cover?

    python experiments/joint_fit_coverage.py [--artifact icecube-wide] [--observatory icecube] \\
        [--sigma2 1.0] [--lambda-c-pc 0.24] [--energies 20 40] [--skies 20] [--sky-nside 32] \\
        [--gradient-per-pc 0.01] [--b0-mug 3] [--form lognormal] [--calibrated-intervals [TOYS]] [--seed 5151]
        [--tails gaussian|student-t [--tail-dof NU]]
        [--out results/joint_fit_coverage]

For each energy E_k (TeV) the truth is σ² and ρ_k = r_L(E_k, B0)/λ_c with the amplitude
a_k = (|∇n/n| r_L(E_k))², so the skies at the two energies share σ² and λ_c as the joint likelihood
assumes (jaxcr.inference.fit_skies). Each energy's --skies single skies (one field realisation each,
seeds independent of the campaign's and of each other) are observed by the mock observatory with
its event number at that energy (jaxcr.synthetic.mock_sky_spectra), made at the artifact's time at
that truth, and saved under --out/skies/. Sky i of the first energy is paired with sky i of the
second. Every sky is fitted alone (jaxcr.inference.fit_sky, the gradient known, λ_c = r_L/ρ) and
every pair jointly (the gradient known), on the same artifact, with the likelihood of --form; a
pair either form refuses is counted and left out of every fit type. --calibrated-intervals TOYS
calibrates every fit's intervals by toys (as `jaxcr fit`, seed 0). The script prints and saves
(coverage.json) per fit type the 68/95 % coverage of σ² and λ_c, the median 68 % width in
e-folds, and beside them the Fisher forecast of the 1σ (jaxcr.inference.expected_joint_precision,
twice the 1σ being a 68 % width for a Gaussian likelihood far from the box).
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np

from jaxcr import io, units
from jaxcr.inference.artifact import EmulatorArtifact
from jaxcr.inference.joint_fit import LAMBDA_C, fit_skies
from jaxcr.inference.precision import expected_joint_precision
from jaxcr.inference.shipped import check_artifact_path
from jaxcr.inference.sky_fit import fit_sky
from jaxcr.observations import OBSERVATORIES, save_spectrum
from jaxcr.recipes.command import CommandParser, run_command
from jaxcr.recipes.fit import (
    add_calibrated_intervals_flag,
    add_tails_flags,
    check_calibrated_intervals,
    check_tails,
    fit_options,
)
from jaxcr.synthetic import mock_sky_spectra

LEVELS = ("68", "95")


def _intervals(fit: dict, name: str) -> dict:
    """{level: (low, high)} of ``name`` in one fit."""
    return {lv: tuple(fit["intervals"][name][lv][:2]) for lv in LEVELS}


def summarise(intervals: list[dict], truth: dict) -> dict:
    """Per parameter: 68/95 % coverage and the median 68 % width (e-folds) of ``intervals``
    (one dict per fit: {name: {level: (low, high)}})."""
    out = {}
    for name, value in truth.items():
        out[name] = {f"coverage_{lv}": float(np.mean([i[name][lv][0] <= value <= i[name][lv][1] for i in intervals]))
                     for lv in LEVELS}  # fmt: skip
        out[name]["median_width_68"] = float(
            np.median([np.log(i[name]["68"][1] / i[name]["68"][0]) for i in intervals])
        )
    return out


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/joint_fit_coverage.py", description=__doc__)
    ap.add_argument("--artifact", type=Path, default=Path("icecube-wide"), help="artifact file or shipped name")
    ap.add_argument("--observatory", choices=sorted(OBSERVATORIES), default="icecube", help="mock observatory")
    ap.add_argument("--sigma2", type=float, default=1.0, help="injected σ² (default 1)")
    ap.add_argument("--lambda-c-pc", type=float, default=0.24, help="injected λ_c in pc (default 0.24)")
    ap.add_argument("--energies", type=float, nargs=2, default=[20.0, 40.0], help="the two energies in TeV")
    ap.add_argument("--skies", type=int, default=20, help="skies per energy (default 20)")
    ap.add_argument("--sky-nside", type=int, default=32, help="nside of the skies (default 32)")
    ap.add_argument("--gradient-per-pc", type=float, default=0.01, help="|∇n/n| in 1/pc (default 0.01)")
    ap.add_argument("--b0-mug", type=float, default=3.0, help="B0 in μG (default 3)")
    ap.add_argument("--form", choices=["lognormal", "offset-lognormal"], default="lognormal",
                    help="likelihood form of every fit (default lognormal)")  # fmt: skip
    add_calibrated_intervals_flag(ap)
    add_tails_flags(ap)
    ap.add_argument("--seed", type=int, default=5151, help="seed of the skies (default 5151)")
    ap.add_argument("--out", type=Path, default=Path("results/joint_fit_coverage"), help="output folder")
    args = ap.parse_args(argv)
    for name in ("sigma2", "lambda_c_pc", "gradient_per_pc", "b0_mug"):
        if not getattr(args, name) > 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0; got {getattr(args, name)}")
    if args.skies < 2 or min(args.energies) <= 0 or args.energies[0] == args.energies[1]:
        ap.error(f"need --skies >= 2 and two different positive --energies; got {args.skies}, {args.energies}")
    check_calibrated_intervals(ap, args.calibrated_intervals)
    check_tails(ap, args.tails, args.tail_dof)
    io.check_writable("--out", args.out / "coverage.json")
    artifact = EmulatorArtifact.load(check_artifact_path(args.artifact))
    r_l = [float(units.larmor_radius_pc(e, args.b0_mug)) for e in args.energies]
    truths = [dict(sigma2=args.sigma2, rho=r / args.lambda_c_pc) for r in r_l]
    for t in truths:
        if outside := artifact.parameters.outside(t):
            ap.error(
                f"the truth lies outside the artifact's box ({'; '.join(outside)}): choose --lambda-c-pc or --energies"
            )
    model = artifact.campaign_model().replace(dt=None, nside=args.sky_nside)
    observatory = OBSERVATORIES[args.observatory]
    print(artifact.summary())
    t0 = time.perf_counter()
    skies = []
    for k, (energy, truth, r) in enumerate(zip(args.energies, truths, r_l)):
        seen_by = dataclasses.replace(observatory, median_energy_tev=energy)
        made = mock_sky_spectra(
            truth, model, seen_by, time=artifact.time_at(truth), amplitude=(args.gradient_per_pc * r) ** 2,
            n_skies=args.skies, seed=args.seed + 1000 * k, lmax=int(artifact.ells[-1]),
        )  # fmt: skip
        (args.out / "skies").mkdir(parents=True, exist_ok=True)
        for i, sky in enumerate(made):
            save_spectrum(sky, args.out / "skies" / f"energy{k}_sky{i:03d}.csv")
        skies.append(made)
        print(f"{args.skies} skies at {energy:g} TeV (ρ = {truth['rho']:.3g}) in {time.perf_counter() - t0:.0f} s")
    known = dict(
        gradient_per_pc=args.gradient_per_pc, b0_microgauss=args.b0_mug, form=args.form, progress=False,
        tails=args.tails, tail_dof=args.tail_dof,
        options=fit_options(args.calibrated_intervals, seed=0),  # the toys' seed, not the skies' (--seed)
    )  # fmt: skip
    fits: dict = {f"alone_{e:g}_tev": [] for e in args.energies} | {"joint": []}
    refused = []
    for i, pair in enumerate(zip(*skies)):
        try:  # a pair the likelihood cannot take (log-normal: Ĉ_ℓ ≤ N at a fitted ℓ) is counted, not fitted
            alone = [fit_sky(sky, artifact, **known).as_dict() for sky in pair]
            joint = fit_skies(list(pair), [artifact, artifact], **known).as_dict()
        except ValueError as err:
            refused.append(f"pair {i}: " + " ".join(str(err).split())[:200])
            continue
        for energy, fit in zip(args.energies, alone):  # a single fit records λ_c = r_L/ρ with its intervals
            fits[f"alone_{energy:g}_tev"].append(fit)
        fits["joint"].append(joint)
    if refused:
        print(f"{len(refused)} of {args.skies} pairs refused by the {args.form} likelihood ({refused[0][:120]}...)")
    if not fits["joint"]:
        raise SystemExit("every pair was refused: try --form offset-lognormal")
    truth = {"sigma2": args.sigma2, LAMBDA_C: args.lambda_c_pc}
    report = dict(
        settings=vars(args), artifact=artifact.version, larmor_radius_pc=r_l, truths=truths, refused=refused, types={}
    )
    forecast = expected_joint_precision(
        [artifact, artifact], args.energies, args.sigma2, args.lambda_c_pc, gradient_per_pc=args.gradient_per_pc,
        ell_max=int(artifact.ells[-1]), b0_microgauss=args.b0_mug,
    )  # fmt: skip
    for kind, rows in fits.items():
        intervals = [{"sigma2": _intervals(f, "sigma2"), LAMBDA_C: _intervals(f, LAMBDA_C)} for f in rows]
        report["types"][kind] = dict(summary=summarise(intervals, truth), fits=rows)
        s = report["types"][kind]["summary"]
        print(
            f"{kind:14s} σ² 68/95 % {s['sigma2']['coverage_68']:.2f}/{s['sigma2']['coverage_95']:.2f}, width "
            f"{s['sigma2']['median_width_68']:.2f}; λ_c {s[LAMBDA_C]['coverage_68']:.2f}/{s[LAMBDA_C]['coverage_95']:.2f}, "
            f"width {s[LAMBDA_C]['median_width_68']:.2f} (e-folds, median of {len(rows)})"
        )
    report["forecast"] = forecast
    print(
        "Fisher forecast, 2σ in e-folds (ln σ², ln λ_c): "
        + "; ".join(
            f"{e:g} TeV alone {2 * a['sigma2']:.2f}, {2 * a[LAMBDA_C]:.2f}"
            for e, a in zip(args.energies, forecast["alone"])
        )
        + f"; joint {2 * forecast['joint']['sigma2']:.2f}, {2 * forecast['joint'][LAMBDA_C]:.2f}"
    )
    io.write_json(args.out / "coverage.json", report)
    print(f"wrote {args.out / 'coverage.json'} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python experiments/joint_fit_coverage.py", main))
