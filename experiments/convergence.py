"""Convergence check that sets the Fig. 2 presets: Boris step size and number of modes.

    python experiments/convergence.py [--nside 8] [--realisations 8] [--T 100] [--out results/convergence]

For the paper's turbulence (σ² = 1, r_L = 0.1 λ_c, λ_min = 0.01 λ_c, λ_max = 100 λ_c) it runs the
same ensemble (same seed, same pixels) with several Boris steps dt and mode numbers N and
reports, at ΩT = T: K_zz, K_xx (Einstein), and ⟨C_ℓ⟩ for ℓ = 1, 2, 5 (gradient ∥ B0) with their
standard errors, and the wall time. The reference is the smallest dt (λ_min/20, the reference
C++ benchmark's step) at the largest N. Steps coarser than λ_min/2 are run on purpose (to show
their bias), with ``Boris(allow_unresolved=True)``. Writes a JSON table and prints it.
"""

import json
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)


import jaxcr
from jaxcr.conventions import FIG2_GRADIENTS
from jaxcr.recipes.command import CommandParser, run_command


def main(argv=None):
    ap = CommandParser(prog="python experiments/convergence.py", description=__doc__)
    ap.add_argument("--nside", type=int, default=8, help="HEALPix nside of the backtracked pixels (default 8)")
    ap.add_argument("--realisations", type=int, default=8, help="field realisations per configuration (default 8)")
    ap.add_argument("--T", type=float, default=100.0, help="backtracking time ΩT of the comparison")
    ap.add_argument(
        "--dts", type=float, nargs="+", default=[0.005, 0.01, 0.02, 0.05, 0.1], help="Boris steps to compare (1/Ω)"
    )
    ap.add_argument(
        "--modes", type=int, nargs="+", default=[64, 128, 256], help="numbers of plane-wave modes to compare"
    )
    ap.add_argument("--out", default="results/convergence", help="output folder (default results/convergence)")
    args = ap.parse_args(argv)
    if args.nside < 4 or args.nside & (args.nside - 1):
        ap.error(
            f"--nside must be a power of two >= 4 (the table reports C_5, so lmax = 2·nside − 1 >= 5); got {args.nside}"
        )
    if args.realisations < 2:
        ap.error(f"--realisations must be >= 2 (standard errors); got {args.realisations}")
    if not args.T > 0:
        ap.error(f"--T must be > 0; got {args.T}")
    if min(args.dts) <= 0 or min(args.modes) < 1:
        ap.error("--dts must be > 0 and --modes >= 1")
    out = Path(args.out)
    jaxcr.io.check_writable("--out", out / "convergence.json")
    # the mode-number comparison runs at the largest step ≤ 0.05 (or the smallest step given)
    coarse = [d for d in args.dts if d <= 0.05]
    dt_modes = max(coarse) if coarse else min(args.dts)
    runs = [(n, dt) for n in args.modes for dt in args.dts if n == max(args.modes) or dt == dt_modes]
    configs = []
    for n_modes, dt in runs:
        cfg = jaxcr.EnsembleConfig(
            turbulence=dict(n_modes=n_modes),
            nside=args.nside,
            n_realisations=args.realisations,
            times=(args.T / 10, args.T),
            solver=jaxcr.Boris(dt=dt, allow_unresolved=True),
            seed=1,
            gradients={"parallel": FIG2_GRADIENTS["parallel"]},
        )
        cfg.validate()  # every run's settings before the first one starts
        configs.append((n_modes, dt, cfg))
    rows = []
    for n_modes, dt, cfg in configs:
        t = time.perf_counter()
        ds = jaxcr.run_ensemble(cfg, progress=False)
        wall = time.perf_counter() - t
        last = ds.isel(time=-1, gradient=0)
        row = dict(
            n_modes=n_modes,
            dt=dt,
            wall_s=round(wall, 2),
            K_zz=float(last.diffusion_tensor[2, 2]),
            K_zz_sem=float(last.diffusion_tensor_sem[2, 2]),
            K_xx=float(last.diffusion_tensor[0, 0]),
            K_xx_sem=float(last.diffusion_tensor_sem[0, 0]),
            **{f"C{ell}": float(last.cl_mean[ell]) for ell in (1, 2, 5)},
            **{f"C{ell}_sem": float(last.cl_sem[ell]) for ell in (1, 2, 5)},
        )
        rows.append(row)
        print(json.dumps(row), flush=True)
    out.mkdir(parents=True, exist_ok=True)
    record = dict(args=vars(args), jaxcr_version=jaxcr.__version__, rows=rows)
    jaxcr.io.atomic_write(out / "convergence.json", lambda tmp: Path(tmp).write_text(json.dumps(record, indent=1)))
    print(f"wrote {out / 'convergence.json'}")


if __name__ == "__main__":
    sys.exit(run_command("python experiments/convergence.py", main))
