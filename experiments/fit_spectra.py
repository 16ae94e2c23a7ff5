"""Fit turbulence parameters to anisotropy spectra: injection-recovery and joint fits.

    python experiments/fit_spectra.py                      # quick model (32 realisations)
    python experiments/fit_spectra.py --preset full        # 128 model realisations, 256-sky synthetic data
    python experiments/fit_spectra.py --spectrum my.csv    # fit a spectrum file (format: jaxcr.observations)

Without --spectrum it makes SYNTHETIC spectra with jaxcr at known parameters (σ² = 1,
λ_c = 0.072 pc, B0 = 3 μG, |∇n/n| = 0.01/pc, so r_L/λ_c = 0.1 at the IceCube energy 20 TeV,
0.05 at the combined HAWC+IceCube 10 TeV and 0.01 at the HAWC energy 2 TeV), each the mean of
``sky`` realisations independent of the fit's, with its observatory's noise level and mask
(jaxcr.observations.OBSERVATORIES) and 5 % measurement errors. No observed C_ℓ table is available here; every file
written is labelled synthetic. Then:

  1. injection-recovery at r_L/λ_c = 0.1, σ² = 1 (the HAWC+IceCube sky, −85° < δ < 70°, at
     20 TeV), amplitude (r_L|∇n/n|)² profiled, started at σ² = 2, ρ = 0.2;
  2. the same with the amplitude known (the CR gradient given);
  3. joint fit of the IceCube (20 TeV) and HAWC (2 TeV) spectra, energies a factor 10 apart,
     with the gradient known: σ², λ_c and B0, started a factor 2.5 away;
  4. the same without the gradient: only λ_c·B0 is constrained, and the fit must report the
     direction ln λ_c − ln B0 as unconstrained.

Method (``--method``): ``emulator`` (default) fits on a quadratic emulator of the model built
from 9 × 9 designs of N_B independent realisations recentred on the estimate, with
profile-likelihood intervals (fits 1-2 and 3-4 share their design points); ``gradient`` runs
Fisher scoring with the CRN gradient estimator (``--estimator``) and Fisher errors.

Presets (model): quick — nside 4, 32 realisations, N = 32 modes, ΩT = 20, synthetic skies of 64
realisations; full — the same with 128 model realisations and 256-realisation skies.
λ_min/λ_c = 0.1, λ_max/λ_c = 10, Boris step λ_min/20 at the start of each fit (0.05/Ω at ρ = 0.1). Writes into --out (default
results/fit_<preset>): the synthetic spectra (.csv), fits.json (with the per-step history),
fit_spectra.png (data vs best-fit model) and params.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp
import numpy as np

import jaxcr
from jaxcr import inference, units
from jaxcr.conventions import Estimator
from jaxcr.inference import CRN, SPSA, EmulatorFit, GradientFit, Pathwise, Score
from jaxcr.observations import OBSERVATORIES, load_spectrum, save_spectrum
from jaxcr.sky import equatorial_direction
from jaxcr.synthetic import synthetic_spectrum

ESTIMATORS = {"crn": CRN, "spsa": SPSA, "score": Score, "pathwise": Pathwise}

PRESETS = {
    "quick": dict(model=dict(nside=4, n_realisations=32, n_modes=32, time=20.0), sky=64),
    "full": dict(model=dict(nside=4, n_realisations=128, n_modes=32, time=20.0), sky=256),
}
TRUTH = dict(sigma2=1.0, lambda_c_pc=0.072, b0_microgauss=3.0, gradient_per_pc=0.01)


def _plot(specs, results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(specs), figsize=(6 * len(specs), 4.5), squeeze=False)
    for ax, spec, (ell, model, se) in zip(axes[0], specs, results):
        ax.errorbar(
            spec.ell,
            spec.cl,
            spec.sigma,
            fmt="o",
            ms=3,
            label=f"{spec.observatory} {'(synthetic)' if spec.synthetic else ''}",
        )
        ax.plot(ell, model + spec.noise_level, "-", label="best-fit model a⟨C_ℓ⟩ + N")
        ax.fill_between(
            ell,
            model - se + spec.noise_level,
            model + se + spec.noise_level,
            alpha=0.3,
            label=f"expected sky-to-sky scatter (R_sky = {spec.sky_realisations})",
        )
        ax.axhline(spec.noise_level, color="r", ls=":", label="noise level N")
        ax.set(yscale="log", xlabel="ℓ", ylabel="C_ℓ", title=f"{spec.observatory}, {spec.energy_tev:g} TeV")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _record(res, truth=None):
    out = dict(
        parameters=res.parameters,
        log_uncertainties=res.log_uncertainties,
        chi2=res.chi2,
        n_data=res.n_data,
        converged=res.converged,
        message=res.message,
        degenerate=res.degenerate,
        steps=len(res.history),
        wall_time_s=res.wall_time_s,
        estimator=res.estimator,
        optimizer=res.optimizer,
        lyapunov=res.lyapunov,
        history=res.history,
    )
    out["fisher"] = res.fisher
    if res.intervals:
        out["intervals"] = res.intervals
    if truth:
        out["pulls"] = {
            k: float(np.log(res.parameters[k] / truth[k]) / res.log_uncertainties[k])
            for k in res.parameters
            if k in truth and res.log_uncertainties[k] > 0
        }
        delta = np.log([res.parameters[k] / truth[k] for k in res.names])
        # what the data do constrain: each Fisher eigen-direction, its 1σ, and the truth's pull along it
        out["constrained"] = [
            dict(direction=dict(zip(res.names, vec.round(3).tolist())), sigma=sig, pull=float(vec @ delta / sig))
            for vec, sig in res.constrained_directions()
        ]
        for c in out["constrained"]:
            print(f"  constrained: {c['direction']} ±{c['sigma']:.3g} e-folds, pull {c['pull']:+.2f}σ")
        if res.intervals:  # is the truth inside the profile-likelihood intervals?
            out["truth_inside"] = {
                k: {lvl: bool(iv[0] <= truth[k] <= iv[1]) for lvl, iv in res.intervals[k].items()}
                for k in res.intervals
                if k in truth
            }
            print(f"  truth inside the 68 % / 95 % intervals: {out['truth_inside']}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick", help="parameter set (default: quick)")
    ap.add_argument(
        "--spectrum", type=Path, action="append", help="spectrum file(s) to fit instead of the synthetic ones"
    )
    ap.add_argument(
        "--method",
        choices=("emulator", "gradient"),
        default="emulator",
        help="emulator: fits on a quadratic emulator of the model with profile-likelihood intervals "
        "(default); gradient: Fisher scoring with a gradient estimator",
    )
    ap.add_argument(
        "--estimator", choices=sorted(ESTIMATORS), default="crn", help="gradient estimator (method gradient)"
    )
    ap.add_argument("--design-points", type=int, default=9, help="design grid per axis (method emulator)")
    ap.add_argument(
        "--max-steps", type=int, default=30, help="largest number of optimiser steps or emulator rounds (default 30)"
    )
    for opt, typ, help_ in (
        ("nside", int, "HEALPix nside of the model"),
        ("realisations", int, "model realisations N_B"),
        ("modes", int, "plane-wave modes N"),
        ("time", float, "backtracking time ΩT"),
        ("sky", int, "realisations averaged in each synthetic spectrum"),
    ):
        ap.add_argument(f"--{opt}", type=typ, help=f"{help_} (overrides the preset)")
    ap.add_argument(
        "--b0-ra-dec",
        type=float,
        nargs=2,
        metavar=("RA", "DEC"),
        help="direction of B0 in equatorial degrees (default the model frame's z axis; the local "
        "interstellar field is 229.2 11.4)",
    )
    ap.add_argument(
        "--gradient-ra-dec",
        type=float,
        nargs=2,
        metavar=("RA", "DEC"),
        help="direction of the CR gradient in equatorial degrees (default RA 0, Dec 0)",
    )
    ap.add_argument("--out", type=Path, help="output folder (default results/fit_<preset>)")
    ap.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = ap.parse_args(argv)
    out = args.out or Path("results") / f"fit_{args.preset}"
    out.mkdir(parents=True, exist_ok=True)
    preset = {"model": dict(PRESETS[args.preset]["model"]), "sky": args.sky or PRESETS[args.preset]["sky"]}
    for opt, key in (("nside", "nside"), ("realisations", "n_realisations"), ("modes", "n_modes"), ("time", "time")):
        if getattr(args, opt) is not None:
            preset["model"][key] = getattr(args, opt)
    for opt, key in (("b0_ra_dec", "b0_direction"), ("gradient_ra_dec", "gradient_direction")):
        if getattr(args, opt) is not None:
            preset["model"][key] = tuple(float(x) for x in equatorial_direction(*getattr(args, opt)))
    model = inference.SpectrumModel(**preset["model"])
    model.validate()
    if args.method == "emulator":
        method = EmulatorFit(design_points=args.design_points)
    else:
        method = GradientFit(estimator=ESTIMATORS[args.estimator](), max_steps=args.max_steps)
    method.validate()
    opts = dict(method=method, progress=not args.no_progress)
    t0 = time.perf_counter()
    record = dict(
        preset=args.preset, model=preset["model"], sky_realisations=preset["sky"], jaxcr_version=jaxcr.__version__
    )
    jaxcr.io.atomic_write(
        out / "params.json",
        lambda tmp: Path(tmp).write_text(
            json.dumps(
                dict(
                    record,
                    argv=sys.argv[1:],
                    truth=TRUTH,
                    method=args.method,
                    estimator=args.estimator,
                    max_steps=args.max_steps,
                    design_points=args.design_points,
                ),
                indent=1,
            )
        ),
    )

    if args.spectrum:
        specs = [load_spectrum(p) for p in args.spectrum]
        res = (
            inference.fit_spectrum(specs[0], model, {"sigma2": 1.0, "rho": 0.1}, **opts)
            if len(specs) == 1
            else inference.fit_joint(specs, model, {"sigma2": 1.0, "lambda_c_pc": 0.1, "b0_microgauss": 3.0}, **opts)
        )
        print(res.summary())
        record["fit"] = _record(res)
        _plot(specs, res.model_spectra, out / "fit_spectra.png")
    else:

        def synthetic(key, seed):
            o = OBSERVATORIES[key]
            energy = 20.0 if key == "hawc+icecube" else o.median_energy_tev  # injection at r_L/λ_c = 0.1
            r_l = units.larmor_radius_pc(energy, TRUTH["b0_microgauss"])
            theta = jnp.log(jnp.array([TRUTH["sigma2"], r_l / TRUTH["lambda_c_pc"]]))
            amplitude = float((TRUTH["gradient_per_pc"] * r_l) ** 2)
            spec = synthetic_spectrum(
                theta,
                model,
                observatory=f"synthetic {o.name}",
                energy_tev=energy,
                amplitude=amplitude,
                noise_level=o.noise_level(Estimator.PSEUDO, nside=model.nside) if o.events else 0.0,
                relative_error=0.05,
                sky_realisations=preset["sky"],
                seed=seed,
                dec_min_deg=o.dec_min_deg,
                dec_max_deg=o.dec_max_deg,
            )
            save_spectrum(spec, out / f"synthetic_{key.replace('+', '_')}.csv")
            return spec, amplitude

        combined, amp_combined = synthetic("hawc+icecube", 303)
        specs = [synthetic("icecube", 101)[0], synthetic("hawc", 202)[0]]
        truth1 = {"sigma2": 1.0, "rho": 0.1}
        start1 = {"sigma2": 2.0, "rho": 0.2}
        print("1. injection-recovery, amplitude profiled (truth σ² = 1, ρ = 0.1; start σ² = 2, ρ = 0.2)")
        single = inference.fit_spectrum(combined, model, start1, **opts)
        print(single.summary())
        print("2. injection-recovery, amplitude (gradient) known")
        # the same spectrum: the emulator fit pools its design
        again = (
            dict(opts, method=EmulatorFit(design_points=args.design_points, reuse=single))
            if args.method == "emulator"
            else opts
        )
        known = inference.fit_spectrum(combined, model, start1, amplitude=amp_combined, **again)
        print(known.summary())
        print("3. joint fit IceCube 20 TeV + HAWC 2 TeV, gradient known")
        start3 = {"sigma2": 2.5, "lambda_c_pc": 0.18, "b0_microgauss": 7.5}
        joint = inference.fit_joint(specs, model, start3, gradient_per_pc=TRUTH["gradient_per_pc"], **opts)
        print(joint.summary())
        print("4. joint fit, gradient unknown (amplitudes profiled)")
        if args.method == "emulator":
            again = dict(opts, method=EmulatorFit(design_points=args.design_points, reuse=joint))
        else:
            again = dict(
                opts, method=GradientFit(estimator=ESTIMATORS[args.estimator](), max_steps=min(args.max_steps, 12))
            )
        free = inference.fit_joint(specs, model, start3, **again)
        print(free.summary())
        record.update(
            truth=TRUTH,
            single=_record(single, truth1),
            single_known_amplitude=_record(known, truth1),
            joint_known_gradient=_record(joint, TRUTH),
            joint_profiled=_record(free, TRUTH),
        )
        _plot([combined] + specs, known.model_spectra + joint.model_spectra, out / "fit_spectra.png")
    record["wall_time_s"] = time.perf_counter() - t0
    jaxcr.io.atomic_write(out / "fits.json", lambda tmp: Path(tmp).write_text(jaxcr.io.to_json(record)))
    print(f"done in {record['wall_time_s']:.1f} s; wrote {out}/fits.json, fit_spectra.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
