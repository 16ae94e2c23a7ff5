"""Sky maps of the relative intensity δI for CR gradients ∥ and ⊥ B0 at several backtracking
times, in Mollweide projection (as the maps of Ahlers & Mertsch 2015).

    jaxcr sky-maps [--preset quick|paper] [--t-min 10] [--t-max 1000] [--n-times 3]
        [--remove-ell-max 1] [--energy-tev 10] [--b0-mug 3] [--seed 0] [--out DIR] [--fresh]

One field realisation (σ² = 1, r_L = 0.1 λ_c, λ_min/max = 0.01/100 λ_c, B0 along z); every HEALPix
pixel is backtracked to each of --n-times log-spaced ΩT; δI = r(−T)·g (Eq. 7) with |g| = 1/r_L;
the multipoles ℓ ≤ --remove-ell-max are removed (default 1: monopole and dipole, which dominate at
large ΩT). Presets: quick (nside 32, N = 64 modes, dt 0.02; about 25 s on 2 CPU cores), paper
(nside 64, N = 256; about 4 minutes). The time axis is also given in years for --energy-tev
protons in a --b0-mug field (labels only: the maps depend on r_L/λ_c alone).

Writes sky_maps.png, sky_maps.nc (the maps with and without the removed multipoles, units,
parameters, seed and versions) and params.json into results/sky_maps_<preset>.
"""

from __future__ import annotations

import hashlib
import time

import jaxcr

from .presets import add_time_axis_options, claim_output_folder, parse_preset_args, time_axis

PRESETS = {
    "quick": dict(nside=32, realisations=1, modes=64, dt=0.02, t_min=10.0, t_max=1000.0, n_times=3),
    "paper": dict(nside=64, realisations=1, modes=256, dt=0.02, t_min=10.0, t_max=1000.0, n_times=3),
}


def parse_args(argv=None, prog: str | None = None):
    def extra(ap):
        ap.add_argument(
            "--remove-ell-max",
            type=int,
            default=1,
            help="remove the multipoles ℓ ≤ this from the drawn maps (default 1; -1 keeps all)",
        )
        add_time_axis_options(ap)

    args = parse_preset_args(__doc__, PRESETS, "sky_maps", argv, extra, prog=prog)
    time_axis(args)  # checks --energy-tev and --b0-mug before any work
    if not -1 <= args.remove_ell_max < 3 * args.nside:
        raise SystemExit(
            f"error: remove_ell_max must be an integer from -1 to {3 * args.nside - 1}; got {args.remove_ell_max}"
        )
    if args.n_times < 1 or not 0 < args.t_min <= args.t_max:
        raise SystemExit("error: need --n-times ≥ 1 and 0 < --t-min ≤ --t-max")
    return args


def main(argv=None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    params = jaxcr.TurbulenceParameters.paper(n_modes=args.modes)
    times = jaxcr.log_time_grid(args.t_min, args.t_max, args.n_times) if args.n_times > 1 else [args.t_min]
    run = dict(
        preset=args.preset,
        nside=args.nside,
        realisations=args.realisations,
        modes=args.modes,
        dt=args.dt,
        times=[float(t) for t in times],
        remove_ell_max=args.remove_ell_max,
        seed=args.seed,
        jaxcr_version=jaxcr.__version__,
    )
    digest = hashlib.sha256(repr(sorted(run.items())).encode()).hexdigest()[:16]
    claim_output_folder(args.out, digest, run, args.fresh, ("sky_maps.png", "sky_maps.nc"))
    print(
        f"sky maps ({args.preset}): nside {args.nside}, N {args.modes} modes, dt {args.dt}, ΩT = {times} → {args.out}"
    )
    t0 = time.perf_counter()
    ds = jaxcr.skymaps.sky_maps(
        params,
        args.nside,
        times,
        seed=args.seed,
        n_realisations=args.realisations,
        solver=jaxcr.Boris(dt=args.dt),
        remove_ell_max=args.remove_ell_max,
    )
    jaxcr.io.save_dataset(ds, args.out / "sky_maps.nc")
    years_per_unit_time, note = time_axis(args)
    png = jaxcr.plot.plot_sky_maps(
        ds, args.out / "sky_maps.png", years_per_unit_time=years_per_unit_time, time_note=note
    )
    for i, t in enumerate(ds.time.values):
        spread = ", ".join(
            f"{g} rms {float(ds.sky_map.values[i, 0, j].std()):.3g}" for j, g in enumerate(ds.gradient.values)
        )
        print(f"  ΩT = {t:g}: δI with ℓ ≤ {args.remove_ell_max} removed: {spread}")
    print(f"done in {time.perf_counter() - t0:.1f} s; wrote {png}, sky_maps.nc, params.json")
    return 0
