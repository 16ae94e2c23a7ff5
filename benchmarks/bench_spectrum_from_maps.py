"""spectrum_from_maps at the observatories' resolution, side by side with healpy's anafast.

    python benchmarks/bench_spectrum_from_maps.py [--nside 64] [--resamples 32] [--pairs 3]

One IceCube-like observation (the published event number in its band, time-scrambled
background) at --nside: the whole maps → spectrum-file step (relative intensity, ring means, the
spectrum, the isotropic band and the measurement errors from --resamples isotropic skies), timed
in alternation with healpy.anafast of the same masked relative-intensity map (one spectrum, the
lower bound of any method). Prints the machine, the settings, the median times and their ratio.
"""

import statistics
import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
sys.path.insert(0, str(Path(__file__).parent))

import healpy as hp
import numpy as np
from _machine import describe

from jaxcr.observations import OBSERVATORIES
from jaxcr.observatory import mock_observation, relative_intensity_from_counts, spectrum_from_maps
from jaxcr.recipes.command import CommandParser, run_command


def main(argv=None) -> int:
    ap = CommandParser(prog="python benchmarks/bench_spectrum_from_maps.py", description=__doc__)
    ap.add_argument("--nside", type=int, default=64, help="HEALPix nside (default 64)")
    ap.add_argument("--resamples", type=int, default=32, help="isotropic resamplings (default 32)")
    ap.add_argument("--pairs", type=int, default=3, help="alternating timing pairs (default 3)")
    args = ap.parse_args(argv)
    print(describe())
    icecube = OBSERVATORIES["icecube"]
    rng = np.random.default_rng(0)
    sky = hp.alm2map(hp.synalm(1e-8 / (1 + np.arange(3 * args.nside)) ** 2, new=True), args.nside)
    obs = mock_observation(sky, icecube, seed=1)
    w = obs.weights
    di = relative_intensity_from_counts(obs.counts, obs.background, w)
    lmax = 2 * args.nside - 1
    first = time.perf_counter()
    spectrum_from_maps(
        obs.counts, obs.background, icecube.analysis, weights=w, n_resamples=args.resamples, energy_tev=20.0
    )
    first = time.perf_counter() - first
    ours, theirs = [], []
    for _ in range(args.pairs):
        t0 = time.perf_counter()
        spectrum_from_maps(
            obs.counts, obs.background, icecube.analysis, weights=w, n_resamples=args.resamples, energy_tev=20.0
        )
        ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        hp.anafast(w * di, lmax=lmax, iter=3)
        theirs.append(time.perf_counter() - t0)
    del rng
    a, b = statistics.median(ours), statistics.median(theirs)
    print(
        f"nside {args.nside}, IceCube-like band, {icecube.events:.2g} events, {args.resamples} resamplings:\n"
        f"  spectrum_from_maps (the whole spectrum file): {a:.2f} s (first call {first:.2f} s)\n"
        f"  healpy.anafast of one masked map (iter 3):     {b * 1e3:.1f} ms\n"
        f"  ratio {a / b:.0f} (the file needs 1 + {args.resamples} spectra: {a / b / (1 + args.resamples):.2f} anafast per spectrum)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python benchmarks/bench_spectrum_from_maps.py", main))
