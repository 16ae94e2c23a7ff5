"""Model sky → mock counts → recovered spectrum, against the forward model, for IceCube and HAWC.

    python experiments/mock_observatory.py [--nside 16] [--time 100] [--skies 20] [--out results/mock_observatory]

1. A model sky: one realisation of the paper's turbulence (σ² = 1, r_L = 0.1 λ_c, N = 64 modes),
   B0 along the local interstellar field direction (RA 229.2°, Dec 11.4°, equatorial), every pixel
   backtracked to ΩT = --time; δI = r(−T)·g (Eq. 7) with g along the equatorial x axis, scaled to
   an rms of 5×10⁻⁴ (the observed anisotropy's order).
2. For IceCube-like (δ < −23.6°, 1.5×10¹¹ events) and HAWC-like (−30° < δ < 64°, 4.9×10¹⁰ events)
   observatories (jaxcr.observations.OBSERVATORIES; bands assumed to give the published f_sky):
   --skies mock observations (Poisson counts, background by time-scrambling over a sidereal day),
   each turned into a spectrum by jaxcr.observatory.spectrum_from_maps (pseudo-C_ℓ, as anafast).
3. The forward model: the same operations on the noise-free model sky (ring means removed, the
   band's mask, pseudo-C_ℓ) plus the shot-noise spectrum through them.

Writes mock_observatory.png (sky, mock relative intensity, spectra), mock_observatory.json (all
numbers, parameters, seed, version) and params.json into --out.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import jax.numpy as jnp
import numpy as np

import jaxcr
from jaxcr.observations import OBSERVATORIES
from jaxcr.observatory import (
    mock_observation,
    noise_spectrum,
    relative_intensity_from_counts,
    spectrum_from_maps,
)
from jaxcr.plot import save_figure
from jaxcr.recipes.command import CommandParser, run_command
from jaxcr.sky import LOCAL_INTERSTELLAR_FIELD_RA_DEC, equatorial_direction

RMS = 5e-4


def model_sky(nside: int, time_: float, seed: int) -> np.ndarray:
    params = jaxcr.TurbulenceParameters.paper(n_modes=64)
    b0 = equatorial_direction(*LOCAL_INTERSTELLAR_FIELD_RA_DEC)
    field = jaxcr.PlaneWaveTurbulence.sample(seed, params, b0_direction=tuple(b0))
    traj = jaxcr.backtrack(field, jaxcr.pixel_directions(nside), [time_], solver=jaxcr.Boris(dt=0.02))
    di = np.asarray(jaxcr.relative_intensity(traj.positions[-1], None, [1.0, 0.0, 0.0]))
    return RMS * (di - di.mean()) / di.std()


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/mock_observatory.py", description=__doc__)
    ap.add_argument("--nside", type=int, default=16, help="HEALPix resolution of sky and maps (default 16)")
    ap.add_argument("--time", type=float, default=100.0, help="backtracking time ΩT of the model sky (default 100)")
    ap.add_argument("--skies", type=int, default=20, help="mock observations per observatory (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the field and of the first mock sky")
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("results/mock_observatory"),
        help="output folder (default results/mock_observatory)",
    )
    args = ap.parse_args(argv)
    if args.skies < 2:
        ap.error("--skies must be >= 2")
    jaxcr.sky.pixel_directions(args.nside)  # validates nside
    jaxcr.io.check_writable("--out", args.out / "params.json")
    jaxcr.io.atomic_write(
        args.out / "params.json",
        lambda tmp: Path(tmp).write_text(
            json.dumps(
                dict(args={k: str(v) for k, v in vars(args).items()}, rms=RMS, jaxcr_version=jaxcr.__version__),
                indent=1,
            )
        ),
    )
    t0 = time.perf_counter()
    sky = model_sky(args.nside, args.time, args.seed)
    print(f"model sky: nside {args.nside}, ΩT {args.time:g}, rms δI {sky.std():.2e} ({time.perf_counter() - t0:.1f} s)")
    record: dict = dict(
        nside=args.nside,
        time=args.time,
        skies=args.skies,
        seed=args.seed,
        rms=RMS,
        b0_ra_dec=LOCAL_INTERSTELLAR_FIELD_RA_DEC,
        jaxcr_version=jaxcr.__version__,
        observatories={},
    )
    panels = {}
    for key in ("icecube", "hawc"):
        o = OBSERVATORIES[key]
        mocks = [mock_observation(sky, o, seed=args.seed + s) for s in range(args.skies)]
        w = mocks[0].weights
        specs = [
            spectrum_from_maps(
                m.counts, m.background, o.analysis, weights=w, n_resamples=8, seed=s, energy_tev=o.median_energy_tev
            )
            for s, m in enumerate(mocks)
        ]
        cl = np.stack([s.cl for s in specs])
        noise, noise_se = noise_spectrum(mocks[0].expected, w, o.analysis, n_maps=200)
        signal = np.asarray(o.analysis.spectra(jnp.asarray(sky), w))
        ell = specs[0].ell
        model = (signal + noise)[ell]
        se = np.hypot(cl.std(0, ddof=1) / np.sqrt(len(cl)), noise_se[ell])
        pull = (cl.mean(0) - model) / se
        record["observatories"][key] = dict(
            name=o.name,
            events=o.events,
            band=[o.analysis.dec_min_deg, o.analysis.dec_max_deg],
            ell=ell.tolist(),
            mean_recovered=cl.mean(0).tolist(),
            sem_recovered=(cl.std(0, ddof=1) / np.sqrt(len(cl))).tolist(),
            forward_signal=signal[ell].tolist(),
            forward_noise=noise[ell].tolist(),
            noise_level=specs[0].noise_level,
            one_sky_sigma=specs[0].sigma.tolist(),
            pull=pull.tolist(),
            mean_pull=float(pull.mean()),
            max_abs_pull=float(np.abs(pull).max()),
            sources=o.sources,
        )
        panels[key] = (o, mocks[0], specs[0], cl, signal[ell], noise[ell])
        print(
            f"{o.name}: {args.skies} mock skies, ℓ = {ell[0]}..{ell[-1]}: mean pull {pull.mean():+.2f}, "
            f"max |pull| {np.abs(pull).max():.2f}; noise level {specs[0].noise_level:.3g} (pseudo-C_ℓ)"
        )
    _plot(sky, panels, args.out / "mock_observatory.png")
    record["wall_time_s"] = time.perf_counter() - t0
    jaxcr.io.atomic_write(
        args.out / "mock_observatory.json", lambda tmp: Path(tmp).write_text(jaxcr.io.to_json(record))
    )
    print(f"done in {record['wall_time_s']:.0f} s; wrote {args.out}/mock_observatory.png, mock_observatory.json")
    return 0


def _plot(sky, panels, path):
    import healpy as hp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(13, 10))
    hp.mollview(
        sky,
        fig=fig.number,
        sub=(2, 2, 1),
        title="model sky δI (equatorial; B0 toward RA 229°, Dec 11°)",
        unit="δI",
        cmap="RdBu_r",
    )
    o, mock, _, _, _, _ = panels["icecube"]
    di = np.where(
        mock.weights > 0, relative_intensity_from_counts(mock.counts, mock.background, mock.weights), hp.UNSEEN
    )
    hp.mollview(
        di,
        fig=fig.number,
        sub=(2, 2, 2),
        title="one mock sky, IceCube-like band, time-scrambled background",
        unit="δI",
        cmap="RdBu_r",
        min=-3 * sky.std(),
        max=3 * sky.std(),
    )
    for k, key in enumerate(("icecube", "hawc")):
        o, _, spec, cl, signal, noise = panels[key]
        ax = fig.add_subplot(2, 2, 3 + k)
        ell = spec.ell
        ax.fill_between(
            ell,
            spec.isotropic_mean - spec.isotropic_sigma,
            spec.isotropic_mean + spec.isotropic_sigma,
            color="0.85",
            label="isotropic skies (1σ)",
        )
        ax.errorbar(
            ell,
            cl.mean(0),
            cl.std(0, ddof=1),
            fmt="o",
            ms=3,
            color="k",
            label=f"recovered, mean ± scatter of {len(cl)} mock skies",
        )
        ax.plot(ell, signal + noise, "r-", label="forward model (signal + noise)")
        ax.plot(ell, signal, "r:", label="forward model, signal only")
        ax.axhline(spec.noise_level, color="tab:blue", ls="--", lw=1, label="shot-noise level (pseudo-C_ℓ)")
        ax.set(
            xscale="log",
            yscale="log",
            xlabel="ℓ",
            ylabel="pseudo-C_ℓ (anafast of the masked δI)",
            title=f"{o.name}: δ ∈ [{o.analysis.dec_min_deg:g}°, {o.analysis.dec_max_deg:g}°], {o.events:.2g} events",
        )
        ax.legend(fontsize=7)
    fig.subplots_adjust(hspace=0.32, top=0.95, bottom=0.06, left=0.07, right=0.97)
    save_figure(fig, path, dpi=110, tight=False)


if __name__ == "__main__":
    sys.exit(run_command("python experiments/mock_observatory.py", main))
