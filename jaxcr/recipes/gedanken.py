"""The Liouville gedankenexperiment of Ahlers (2015), Sec. 2.

    jaxcr gedanken                 # quick preset (default, a few minutes on 2 cores)
    jaxcr gedanken --preset paper  # finer sky, more realisations

A homogeneous dipole initial distribution f̃(p̂) = ẑ·p̂ is evolved by Liouville's theorem,
f(T, 0, p̂) = f̃(p̂(−T)), by backtracking every HEALPix pixel through (a) pure isotropic
turbulence (B0 = 0; the field unit is then the rms turbulent field, σ² = 1) and (b) turbulence
on a regular field B0 = ẑ (σ² = 1). For each it records ⟨C_ℓ⟩(T), ℓ = 0..lmax, the sum
(1/4π)Σ(2ℓ+1)⟨C_ℓ⟩ (conserved by Eq. 3; jaxcr also records the pixel mean square ⟨f²⟩, the
all-ℓ value, because power that cascades beyond lmax leaves the truncated sum), and the late-time
⟨C_ℓ⟩/⟨C_1⟩ against Ahlers' asymptotic model (Eq. 4). Rigidity r_L = 0.1 λ_c as in Fig. 2.
The time panels also give T in years for --energy-tev protons in a --b0-mug field (default 10 TeV,
3 μG; labels only: the physics depends on r_L/λ_c alone).

Presets:
  quick  nside 16, N_B = 4, N = 64 modes, dt = 0.02/Ω, 20 log-spaced ΩT from 0.1 to 300.
  paper  nside 32, N_B = 10, N = 256 modes, dt = 0.02/Ω, 24 log-spaced ΩT from 0.1 to 300.

Writes into --out (default results/gedanken_<preset>): gedanken.png, gedanken_b0_<0|1>.nc,
ratios.json (measured late-time ratios next to Eq. 4, at every ΩT), params.json; resumable.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np

import jaxcr

from .presets import add_time_axis_options, claim_output_folder, parse_preset_args, time_axis

PRESETS = {
    "quick": dict(nside=16, realisations=4, modes=64, dt=0.02, t_min=0.1, t_max=300.0, n_times=20),
    "paper": dict(nside=32, realisations=10, modes=256, dt=0.02, t_min=0.1, t_max=300.0, n_times=24),
}


def parse_args(argv=None, prog: str | None = None):
    return parse_preset_args(__doc__, PRESETS, "gedanken", argv, add_arguments=add_time_axis_options, prog=prog)


def config(args, b0: float) -> jaxcr.EnsembleConfig:
    from jaxcr.conventions import FIG2_GRADIENTS

    return jaxcr.EnsembleConfig(
        turbulence=dict(
            sigma2=1.0, coherence_length=10.0, lambda_min=0.1, lambda_max=1000.0, n_modes=args.modes, b0=b0
        ),
        nside=args.nside,
        n_realisations=args.realisations,
        times=jaxcr.log_time_grid(args.t_min, args.t_max, args.n_times),
        gradients={"parallel": FIG2_GRADIENTS["parallel"]},
        seed=args.seed,
        solver=jaxcr.Boris(dt=args.dt),
        liouville_dipole=(0.0, 0.0, 1.0),
    )


def late_time_ratios(ds, ells=(2, 3, 4, 5, 10)) -> list[dict]:
    cl = ds.liouville_cl.values.mean(1)
    rows = []
    for ti, t in enumerate(ds.time.values):
        row = {"OmegaT": float(t)}
        for ell in ells:
            if ell < cl.shape[-1]:
                row[f"l{ell}"] = float(cl[ti, ell] / cl[ti, 1])
        rows.append(row)
    return rows


def main(argv=None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    years_per_unit_time, time_note = time_axis(args)
    configs = {b0: config(args, b0) for b0 in (0.0, 1.0)}
    for cfg in configs.values():
        cfg.validate()
    digest = hashlib.sha256("".join(c.digest() for c in configs.values()).encode()).hexdigest()[:16]
    params = dict(
        preset=args.preset,
        configs={str(b0): c.as_dict() for b0, c in configs.items()},
        seed=args.seed,
        jaxcr_version=jaxcr.__version__,
    )
    outputs = ("gedanken.png", "ratios.json", "gedanken_b0_0.nc", "gedanken_b0_1.nc")
    if claim_output_folder(args.out, digest, params, args.fresh, outputs) == "resume":
        print(f"resuming from the checkpoints in {args.out} (same configuration); --fresh starts again")
    runs, summary = {}, {}
    t0 = time.perf_counter()
    for b0, cfg in configs.items():
        label = "B0 = 0 (pure turbulence)" if b0 == 0 else "B0 = 1, σ² = 1"
        print(f"{label}: nside {cfg.nside}, N_B {cfg.n_realisations}, N {args.modes}, ΩT ≤ {cfg.times[-1]:.3g}")
        stem = f"gedanken_b0_{int(b0)}"
        ds = jaxcr.run_ensemble(
            cfg, checkpoint=args.out / f"{stem}.ckpt.npz", output=args.out / f"{stem}.nc", progress=not args.no_progress
        )
        runs[label] = ds
        sums = ds.liouville_sum.values.mean(1)
        msq = ds.liouville_mean_square.values.mean(1)
        rows = late_time_ratios(ds)
        eq4 = {f"l{ell}": float(jaxcr.theory.asymptotic_ratio(ell)) for ell in (2, 3, 4, 5, 10)}
        summary[label] = dict(
            config=cfg.as_dict(),
            initial_sum=float(sums[0]),
            final_sum=float(sums[-1]),
            pixel_mean_square_min=float(msq.min()),
            pixel_mean_square_max=float(msq.max()),
            ratios_vs_time=rows,
            eq4=eq4,
            wall_time_s=float(ds.attrs["wall_time_s"]),
        )
        # the ratios where Eq. 4 applies: ΩT ≈ 10, after the dipole has spread and before the sky
        # decorrelates on the pixel scale (later, all C_ℓ/C_1 go flat: white noise)
        last = min(rows, key=lambda row: abs(np.log(row["OmegaT"] / 10.0)))
        print(
            f"  Eq. 3 sum (ℓ ≤ {ds.sizes['ell'] - 1}): {sums[0]:.4f} → {sums[-1]:.4f}; pixel ⟨f²⟩ in "
            f"[{msq.min():.4f}, {msq.max():.4f}] (exact value 1/3 for an isotropic p̂(−T))"
        )
        print(
            "  ΩT={:.3g} (before the pixel-scale noise) ratios C_ℓ/C_1: ".format(last["OmegaT"])
            + ", ".join(f"ℓ={k[1:]}: {v:.4f} (Eq. 4: {eq4[k]:.4f})" for k, v in last.items() if k != "OmegaT")
        )
    png = jaxcr.plot.plot_gedanken(
        runs, args.out / "gedanken.png", years_per_unit_time=years_per_unit_time, time_note=time_note
    )
    jaxcr.io.atomic_write(args.out / "ratios.json", lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=1)))
    print(f"done in {time.perf_counter() - t0:.1f} s; wrote {png}, ratios.json, params.json and the .nc files")
    return 0
