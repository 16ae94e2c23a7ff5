"""A mock observation of one model sky: counts and background FITS maps, and its spectrum file.

    jaxcr mock-sky [--observatory icecube|hawc] [--sigma2 1] [--rho 0.1] [--gradient-per-pc 0.01]
        [--b0-mug 3] [--time T] [--events N] [--seed 7] [--out DIR] [--overwrite]

One realisation of the paper's turbulence at (σ², r_L/λ_c), configured as the campaign behind the
shipped artifact of the observatory's analysis (nside, modes, B0 along the local interstellar
field, the CR gradient along B0, its ΩT unless --time), is backtracked from every pixel; its
relative intensity δI = |∇n/n| r_L · r(−T)·ĝ (Eq. 7, r_L from the observatory's median energy
and --b0-mug) is observed as the observatory does (Poisson counts of --events in its band, the
background estimated by time-scrambling over a sidereal day). Writes into --out (default
results/mock_sky_<observatory>):

* maps.fits: the counts (column 0) and background (column 1), HEALPix RING, equatorial (the input
  of `jaxcr spectrum-from-maps`);
* sky.fits: the model sky's δI (what the observatory would see without shot noise);
* spectrum.csv: the observation's spectrum file (as `jaxcr spectrum-from-maps maps.fits` makes it,
  with the simulated sky's own pixel noise counted as noise of the observation: in its isotropic
  band and errors, its level in the source line);
* mock_sky.png: the model sky and the observed relative intensity (Mollweide); params.json.

The next step: `jaxcr fit DIR/spectrum.csv --gradient-per-pc G --ell-max L` (L: the artifact's largest ℓ;
the truth is in params.json).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .command import CommandParser

OBSERVATORIES = ("icecube", "hawc")  # those with a shipped artifact (tested)


def _parser(prog: str) -> argparse.ArgumentParser:
    ap = CommandParser(prog=prog, description=__doc__)
    ap.add_argument("--observatory", choices=OBSERVATORIES, default="icecube", help="whose analysis and events (default icecube)")  # fmt: skip
    ap.add_argument("--sigma2", type=float, default=1.0, help="turbulence level σ² = δB²/B0² (default 1)")
    ap.add_argument("--rho", type=float, default=0.1, help="r_L/λ_c (default 0.1)")
    ap.add_argument("--gradient-per-pc", type=float, default=0.01, help="the CR gradient |∇n/n| in 1/pc (default 0.01)")  # fmt: skip
    ap.add_argument("--b0-mug", type=float, default=3.0, help="regular field B0 in μG, for r_L (default 3)")
    ap.add_argument("--time", type=float, help="backtracking time ΩT (default: the shipped artifact's)")
    ap.add_argument("--events", type=float, help="number of events in the band (default the observatory's N_CR)")
    ap.add_argument("--resamples", type=int, default=16, help="Poisson resamplings for the spectrum's errors (default 16)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=7, help="seed of the field realisation and the Poisson counts (default 7)")  # fmt: skip
    ap.add_argument("--out", type=Path, help="output folder (default results/mock_sky_<observatory>)")
    ap.add_argument("--overwrite", action="store_true", help="replace the files already in --out")
    return ap


def main(argv=None, prog: str = "jaxcr mock-sky") -> int:
    ap = _parser(prog)
    args = ap.parse_args(argv)
    for name in ("sigma2", "rho", "gradient_per_pc", "b0_mug", "time", "events"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            ap.error(f"--{name.replace('_', '-')} must be > 0; got {value}")
    if args.resamples < 2:
        ap.error(f"--resamples must be >= 2 (the errors are a standard deviation); got {args.resamples}")
    if args.seed < 0:
        ap.error(f"--seed must be >= 0; got {args.seed}")
    out = args.out or Path("results") / f"mock_sky_{args.observatory}"
    if (out / "maps.fits").exists() and not args.overwrite:
        ap.error(f"{out / 'maps.fits'} exists (an earlier mock sky): give another --out, or --overwrite to replace it")
    import time

    import healpy as hp
    import numpy as np

    from .. import io, units
    from ..inference.campaign import software_versions
    from ..inference.shipped import shipped_artifact_for
    from ..observations import OBSERVATORIES as KNOWN
    from ..observations import save_spectrum
    from ..plot import plot_mock_sky
    from ..synthetic import mock_skies

    io.check_writable("--out", out / "maps.fits")
    observatory = KNOWN[args.observatory]
    artifact = shipped_artifact_for(observatory.analysis)
    model = artifact.campaign_model()
    values = {"sigma2": args.sigma2, "rho": args.rho}
    r_l = float(units.larmor_radius_pc(observatory.median_energy_tev, args.b0_mug))
    amplitude = (args.gradient_per_pc * r_l) ** 2
    t_run = float(args.time or artifact.time_at(values))
    print(
        f"{prog}: {args.observatory}, σ² = {args.sigma2:g}, r_L/λ_c = {args.rho:g}, ΩT = {t_run:g}, nside {model.nside}, "
        f"{3 * 4 * model.nside**2} pixels backtracked (about 20 s on 2 idle cores, 2-5× more on a busy machine)",
        flush=True,
    )
    started = time.perf_counter()
    (sky,) = mock_skies(
        values, model, observatory, time=t_run, amplitude=amplitude, n_skies=1, seed=args.seed,
        events=args.events, n_resamples=args.resamples,
    )  # fmt: skip
    obs = sky.observation
    out.mkdir(parents=True, exist_ok=True)
    header = [("COORDSYS", "C"), ("OBJECT", f"jaxcr mock sky ({args.observatory})")]
    io.atomic_write(
        out / "maps.fits",
        lambda p: hp.write_map(str(p), [obs.counts, obs.background], column_names=["COUNTS", "BACKGROUND"],
                               dtype=np.float64, extra_header=header, overwrite=True),
    )  # fmt: skip
    io.atomic_write(
        out / "sky.fits",
        lambda p: hp.write_map(str(p), sky.relative_intensity, column_names=["RELATIVE_INTENSITY"],
                               dtype=np.float64, extra_header=header, overwrite=True),
    )  # fmt: skip
    save_spectrum(sky.spectrum, out / "spectrum.csv")
    plot_mock_sky(sky, out / "mock_sky.png", title=f"{observatory.name}, σ² = {args.sigma2:g}, r_L/λ_c = {args.rho:g}, ΩT = {t_run:g}")  # fmt: skip
    params = dict(
        observatory=args.observatory, values=values, gradient_per_pc=args.gradient_per_pc, b0_microgauss=args.b0_mug,
        energy_tev=observatory.median_energy_tev, larmor_radius_pc=r_l, coherence_length_pc=r_l / args.rho,
        amplitude=amplitude, time=t_run, events=float(obs.counts.sum()), seed=args.seed, resamples=args.resamples,
        model=model.as_dict(), artifact=artifact.version, pixel_noise=sky.pixel_noise,
        jaxcr=software_versions().get("jaxcr"), versions=software_versions(),
    )  # fmt: skip
    io.write_json(out / "params.json", params, indent=2)
    print(
        f"wrote {out}: maps.fits, sky.fits, spectrum.csv, mock_sky.png, params.json "
        f"({int(obs.counts.sum())} events, {time.perf_counter() - started:.0f} s)\n"
        f"next: jaxcr fit {out / 'spectrum.csv'} --gradient-per-pc {args.gradient_per_pc:g} --b0-mug {args.b0_mug:g} "
        f"--ell-max {int(artifact.ells[-1])}   (the shipped artifact's ℓ range)   "
        f"or: jaxcr spectrum-from-maps {out / 'maps.fits'} --band {observatory.analysis.dec_min_deg:g} "
        f"{observatory.analysis.dec_max_deg:g} --energy-tev {observatory.median_energy_tev:g} --out spectrum.csv"
    )
    return 0
