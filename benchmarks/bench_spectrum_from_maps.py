"""The day-one data paths, side by side with healpy: maps → spectrum file, a mock sky, a fit.

    python benchmarks/bench_spectrum_from_maps.py [--nside 64] [--resamples 32] [--pairs 3] [--skip-mock-sky]

One IceCube-like observation (the published event number in its band, time-scrambled
background) at --nside: the whole maps → spectrum-file step (relative intensity, ring means, the
spectrum, the isotropic band and the measurement errors from --resamples isotropic skies), timed
in alternation with healpy.anafast of the same masked relative-intensity map (one spectrum, the
lower bound of any method). Then one mock IceCube-like sky of the shipped artifact's model
(jaxcr.synthetic.mock_skies: the shipped artifact's nside, σ² = 1, r_L/λ_c = 0.1, backtracked to the artifact's ΩT,
observed and made a spectrum file, what `jaxcr mock-sky` does) in alternation with the same
observation of a Gaussian sky drawn by healpy (synalm + alm2map: the maps-and-spectrum part alone),
and the one-sky fit of that spectrum (fit_sky, warm) with the gradient known. Prints the machine,
the settings, the median times and their ratios.
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
    ap.add_argument("--skip-mock-sky", action="store_true", help="only the maps → spectrum step")
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
    if not args.skip_mock_sky:
        _mock_sky_and_fit(args.pairs)
    return 0


def _mock_sky_and_fit(pairs: int) -> None:
    from jaxcr import units
    from jaxcr.inference import fit_sky
    from jaxcr.inference.shipped import shipped_artifact_for
    from jaxcr.synthetic import mock_skies

    icecube = OBSERVATORIES["icecube"]
    artifact = shipped_artifact_for(icecube.analysis)
    model = artifact.campaign_model()
    amplitude = (0.01 * float(units.larmor_radius_pc(icecube.median_energy_tev, 3.0))) ** 2
    truth = {"sigma2": 1.0, "rho": 0.1}

    def ours(seed):
        return mock_skies(
            truth, model, icecube, time=artifact.time_at(truth), amplitude=amplitude, n_skies=1, seed=seed
        )[0]

    def healpy_only(seed):
        ell = np.arange(3 * model.nside)
        sky = hp.alm2map(hp.synalm(amplitude * 10.0 / (1 + ell) ** 2, new=True), model.nside)
        obs = mock_observation(sky, icecube, seed=seed)
        return spectrum_from_maps(obs.counts, obs.background, icecube.analysis, weights=obs.weights, n_resamples=16,
                                  energy_tev=icecube.median_energy_tev)  # fmt: skip

    first = time.perf_counter()
    sky = ours(100)
    first = time.perf_counter() - first
    t_ours, t_hp, t_fit = [], [], []
    for k in range(pairs):
        t0 = time.perf_counter()
        sky = ours(101 + k)
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        healpy_only(201 + k)
        t_hp.append(time.perf_counter() - t0)
    fit = dict(gradient_per_pc=0.01, ell_max=int(artifact.ells[-1]), progress=False)
    t0 = time.perf_counter()
    fit_sky(sky.spectrum, artifact, **fit)
    fit_first = time.perf_counter() - t0
    for _ in range(pairs):
        t0 = time.perf_counter()
        fit_sky(sky.spectrum, artifact, **fit)
        t_fit.append(time.perf_counter() - t0)
    a, b, f = statistics.median(t_ours), statistics.median(t_hp), statistics.median(t_fit)
    print(
        f"mock IceCube-like sky (nside {model.nside}, {model.n_realisations} → 1 realisation, ΩT = {artifact.time_at(truth):g}, "
        f"field {model.field_precision.value}):\n"
        f"  jaxcr.synthetic.mock_skies (backtracking + observation + spectrum file): {a:.1f} s (first call {first:.1f} s)\n"
        f"  a healpy Gaussian sky through the same observation and spectrum file:   {b:.2f} s\n"
        f"  ratio {a / b:.0f} (the backtracking of {12 * model.nside**2} pixels to ΩT = {artifact.time_at(truth):g})\n"
        f"one-sky fit (fit_sky, σ² and r_L/λ_c, gradient known, ℓ ≤ {int(artifact.ells[-1])}): {f:.1f} s warm "
        f"(first call in this process {fit_first:.1f} s)"
    )


if __name__ == "__main__":
    sys.exit(run_command("python benchmarks/bench_spectrum_from_maps.py", main))
