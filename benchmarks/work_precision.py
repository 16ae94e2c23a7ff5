"""Work-precision study: error of K_zz(ΩT) and of C_ℓ versus cost, for Boris at several steps,
the float32 field, and diffrax's adaptive solvers. It is what sets the default step.

    python benchmarks/work_precision.py [--nside 8] [--realisations 4] [--T 100] [--modes 256]

Paper turbulence (σ² = 1, r_L = 0.1 λ_c, λ_min/max = 0.01/100 λ_c, N modes). Every
configuration backtracks the *same* pixels through the *same* field realisations, so the
difference to the reference (Boris at λ_min/40) is integration error, not sampling noise. Long
orbits are chaotic (jaxcr.chaos): beyond ΩT ≈ 100 two correct integrators give different orbits, so
the errors are reported for ensemble statistics, as a paired mean difference ± its standard error
over realisations, beside the statistical standard error of the quantity itself:

* K_zz = ⟨Δz²⟩/2T and ⟨C_ℓ⟩ (ℓ = 1, 2, 5; δI = r(−T)·ẑ, Eq. 7) at ΩT = T;
* the median position error |Δr| at ΩT = 10 (before chaos takes over; a deterministic error).

Cost: wall time of the backtracking (compilation excluded) and particle-steps/s for Boris.
Prints the machine and writes a JSON table to --out.
"""

import argparse
import json
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).parent))

import diffrax
import jax.numpy as jnp
import numpy as np

import jaxcr

ADAPTIVE = {"tsit5": diffrax.Tsit5, "dopri5": diffrax.Dopri5, "dopri8": diffrax.Dopri8}
from _machine import describe

CONFIGS = [  # (label, solver, dt, rtol, precision)
    ("boris dt=λmin/20", "boris", "lmin/20", None, "float64"),
    ("boris dt=0.01", "boris", 0.01, None, "float64"),
    ("boris dt=0.02 (Fig. 2 presets)", "boris", 0.02, None, "float64"),
    ("boris dt=0.05", "boris", 0.05, None, "float64"),
    ("boris dt=0.1", "boris", 0.1, None, "float64"),
    ("boris dt=0.02, fast field", "boris", 0.02, None, "fast"),
    ("boris dt=0.02, float32 field", "boris", 0.02, None, "float32"),
    ("tsit5 rtol=1e-5", "tsit5", None, 1e-5, "float64"),
    ("dopri8 rtol=1e-7", "dopri8", None, 1e-7, "float64"),
]


def statistics(r_T, T):
    """Per-realisation K_zz and C_ℓ (ℓ = 1, 2, 5) from positions (R, P, 3) at ΩT = T."""
    kzz = np.asarray(jnp.mean(r_T[..., 2] ** 2, axis=-1) / (2 * T))
    cl = np.asarray(jaxcr.angular_power_spectrum(r_T[..., 2]))[:, [1, 2, 5]]
    return np.column_stack([kzz, cl])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nside", type=int, default=8)
    ap.add_argument("--realisations", type=int, default=4)
    ap.add_argument("--T", type=float, default=100.0)
    ap.add_argument("--modes", type=int, default=256)
    ap.add_argument("--only", nargs="*", help="labels (prefixes) of the configurations to run")
    ap.add_argument("--out", default="results/work_precision")
    args = ap.parse_args(argv)
    print(describe())
    params = jaxcr.TurbulenceParameters.paper(n_modes=args.modes)
    fields = jaxcr.PlaneWaveTurbulence.sample_ensemble(1, params, args.realisations)
    n_hat = jaxcr.pixel_directions(args.nside)
    lmin_dt = jaxcr.default_step(fields)
    times = [10.0, args.T]
    P = n_hat.shape[0] * args.realisations
    print(
        f"parameters: N={args.modes}, nside={args.nside} ({n_hat.shape[0]} pixels), {args.realisations} realisations, "
        f"ΩT = {times}, λ_min/20 = {lmin_dt:.4g}/Ω; reference Boris dt = λ_min/40"
    )

    def run(solver, dt, rtol, precision):
        f = fields.with_precision(precision)
        if solver == "boris":
            opts = dict(solver=jaxcr.Boris(dt=dt, allow_unresolved=True))  # coarse steps on purpose
        else:
            opts = dict(
                solver=ADAPTIVE[solver](), stepsize_controller=diffrax.PIDController(rtol=rtol, atol=1e-3 * rtol)
            )
        traj = jaxcr.backtrack(f, n_hat[:8], [1.0], **opts)  # compile
        t = time.perf_counter()
        traj = jaxcr.backtrack(f, n_hat, times, **opts)
        traj.positions.block_until_ready()
        return traj.positions, time.perf_counter() - t

    ref_pos, ref_wall = run("boris", lmin_dt / 2, None, "float64")
    ref = statistics(ref_pos[:, -1], args.T)
    ref_mean, ref_se = ref.mean(0), ref.std(0, ddof=1) / np.sqrt(ref.shape[0])
    names = ["K_zz", "C1", "C2", "C5"]
    print(
        f"reference: wall {ref_wall:.1f} s; "
        + ", ".join(f"{n} = {m:.4g} ± {s:.2g} (statistical)" for n, m, s in zip(names, ref_mean, ref_se))
    )
    rows = []
    for label, solver, dt, rtol, precision in CONFIGS:
        if args.only and not any(label.startswith(o) for o in args.only):
            continue
        dt = lmin_dt if dt == "lmin/20" else dt
        pos, wall = run(solver, dt, rtol, precision)
        stats = statistics(pos[:, -1], args.T)
        diff = stats - ref
        d_mean, d_se = diff.mean(0), diff.std(0, ddof=1) / np.sqrt(diff.shape[0])
        orbit_err = float(jnp.median(jnp.linalg.norm(pos[:, 0] - ref_pos[:, 0], axis=-1)))
        row = dict(
            config=label,
            solver=solver,
            dt=dt,
            rtol=rtol,
            precision=precision,
            wall_s=round(wall, 3),
            orbit_error_T10=orbit_err,
            **{f"{n}_rel_error": float(d / m) for n, d, m in zip(names, d_mean, ref_mean)},
            **{f"{n}_rel_error_se": float(s / m) for n, s, m in zip(names, d_se, ref_mean)},
        )
        if solver == "boris":
            row["particle_steps_per_s"] = P * args.T / dt / wall
        rows.append(row)
        errs = ", ".join(
            f"{n} {100 * row[f'{n}_rel_error']:+.2f}±{100 * row[f'{n}_rel_error_se']:.2f} %" for n in names
        )
        rate = f", {row['particle_steps_per_s']:.3g} particle-steps/s" if "particle_steps_per_s" in row else ""
        print(f"{label:30s} wall {wall:7.2f} s{rate}; |Δr|(ΩT=10) median {orbit_err:.2e} r_L; {errs}", flush=True)
    out = Path(args.out)
    record = dict(
        machine=describe(),
        args=vars(args),
        jaxcr_version=jaxcr.__version__,
        reference=dict(
            dt=lmin_dt / 2, wall_s=ref_wall, mean=ref_mean.tolist(), statistical_se=ref_se.tolist(), names=names
        ),
        rows=rows,
    )
    jaxcr.io.atomic_write(out / "work_precision.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
    print(f"wrote {out / 'work_precision.json'}")


if __name__ == "__main__":
    sys.exit(main())
