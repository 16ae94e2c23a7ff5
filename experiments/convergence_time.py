"""When does the model spectrum converge? T_conv(σ², ρ) against the transport scales.

    python experiments/convergence_time.py [--sigma2 0.3 1 3 6] [--rho 0.01 0.03 0.1 0.2]
        [--nside 16] [--realisations 16] [--modes 32] [--t-max 3000] [--n-times 12]
        [--ell-max 20] [--field-precision fast] [--out results/convergence_time]

For every (σ², ρ = r_L/λ_c) of the grid (plane-wave turbulence, λ_min/λ_c = 0.1, λ_max/λ_c = 10)
it backtracks N_B realisations from every pixel to log-spaced ΩT up to --t-max with the default
Boris step of that point, and records per realisation and time: the full-sky spectrum of the
unit-gradient sky δI = r(−T)·ẑ (gradient ∥ B0 = ẑ, Eq. 7) minus its measured pixel noise (Eq. 12,
jaxcr.spectrum_model.pixel_noise_level), the diffusion tensor K(T) = ⟨Δr Δr⟩/2T and the
relative-diffusion tensor (Eq. 9). Then per point:

* T_conv: the earliest stored ΩT after which ⟨C_ℓ⟩ no longer changes by more than its error
  (jaxcr.inference.convergence.convergence_time; "> T_max" when the last two times still differ),
  over the multipoles 1 ≤ ℓ ≤ --ell-max the map resolves at T_max (pixel noise below ⟨C_ℓ⟩: a
  noise-dominated multipole has errors so large that it would pass any test);
* the transport scales: the parallel scattering time τ∥ = 3K∥ (c = 1, the time after which the
  motion along B0 is diffusive, K = cλ/3) and the time t_sep at which pairs of neighbouring pixels
  have separated to λ_c (the pixel variance of the positions across B0 reaches λ_c²);

and fits T_conv = A τ∥^b over the converged points. Each point is one file under --out/points
(resumable); writes convergence_time.json and convergence_time.png.
"""

import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import numpy as np

import jaxcr
from jaxcr import io
from jaxcr.backtracking import backtrack
from jaxcr.diffusion import diffusion_tensor, relative_diffusion_tensor
from jaxcr.forward import sample_fields, sky_maps, sky_spectra
from jaxcr.inference.convergence import convergence_time
from jaxcr.plot import save_figure
from jaxcr.random import realisation_keys
from jaxcr.recipes.command import CommandParser, run_command
from jaxcr.spectrum_model import SpectrumModel, pixel_noise_level
from jaxcr.theory import asymptotic_ratio


def _point(model: SpectrumModel, values: dict, times, seed: int, stream: int) -> dict:
    """Backtrack one grid point: spectra minus pixel noise (R, T, L), K and K̃s (T, 3, 3), dt."""
    model = model.resolved(values)
    sky = model.sky_model(values)
    keys = realisation_keys(seed, model.n_realisations, stream=stream)
    traj = backtrack(sample_fields(sky, keys), sky.directions, list(times), **sky.solver_options())
    cl, noise, k, ks = [], [], [], []
    for j, t in enumerate(times):
        r, p = traj.positions[:, j], traj.momenta[:, j]
        maps = sky_maps(sky, r, p)  # (R, 1, P)
        spectra = np.asarray(sky_spectra(sky, maps))[:, 0]
        noise.append(pixel_noise_level(np.asarray(maps)[:, 0], spectra))
        cl.append(spectra - noise[-1][:, None])  # full sky, known background: the noise response is 1
        k.append(np.asarray(diffusion_tensor(r, t)[0]))
        ks.append(np.asarray(relative_diffusion_tensor(r, t)[0]))
    return dict(cl=np.stack(cl, 1), pixel_noise=np.stack(noise, 1), K=np.stack(k), Ks=np.stack(ks), dt=float(model.dt))


def _scales(arrays: dict, times, rho: float) -> dict:
    """τ∥ = 3 K_zz at the last time; t_sep: where the pixel variance across B0, 2T·(K̃s_xx + K̃s_yy)/2,
    first reaches λ_c² (interpolated in ln T; inf if never)."""
    k_par = float(arrays["K"][-1, 2, 2])
    spread = 2 * np.asarray(times) * 0.5 * (arrays["Ks"][:, 0, 0] + arrays["Ks"][:, 1, 1])
    lc2 = (1.0 / rho) ** 2
    above = np.flatnonzero(spread >= lc2)
    if not above.size:
        t_sep = float("inf")
    elif above[0] == 0:
        t_sep = float(times[0])
    else:
        i = above[0]
        f = (np.log(lc2) - np.log(spread[i - 1])) / (np.log(spread[i]) - np.log(spread[i - 1]))
        t_sep = float(np.exp(np.log(times[i - 1]) + f * (np.log(times[i]) - np.log(times[i - 1]))))
    return dict(K_parallel=k_par, K_perp=float(0.5 * (arrays["K"][-1, 0, 0] + arrays["K"][-1, 1, 1])),
                tau_parallel=3 * k_par, t_sep=t_sep)  # fmt: skip


def _shape_against_eq4(cl_last, ell_max: int) -> dict:
    """⟨C_ℓ⟩/⟨C_1⟩ at the last time over Eq. 4's 18/((2ℓ+1)(ℓ+2)(ℓ+1)), ℓ = 2..ell_max, with standard
    errors (delta method over the realisations, the ℓ-1 correlation included); and ⟨C_1⟩ over
    Eq. 6's 4π|K g|² is in the row (``C1_over_eq6``)."""
    c1 = cl_last[:, 1]
    out = dict(ell=list(range(2, ell_max + 1)), ratio=[], ratio_se=[])
    for ell in range(2, ell_max + 1):
        c = cl_last[:, ell]
        r = c.mean() / c1.mean() / float(asymptotic_ratio(ell))
        cov = np.cov(np.stack([c, c1]))
        rel_var = cov[0, 0] / c.mean() ** 2 + cov[1, 1] / c1.mean() ** 2 - 2 * cov[0, 1] / (c.mean() * c1.mean())
        out["ratio"].append(float(r))
        out["ratio_se"].append(float(abs(r) * np.sqrt(max(rel_var, 0.0) / len(c))))
    return out


def _relative_shifts(cl, ells) -> list[float]:
    """Per stored time, the mean over ℓ of (⟨C_ℓ⟩(T_j) − ⟨C_ℓ⟩(T_max))/⟨C_ℓ⟩(T_max)."""
    if not ells:
        return []
    mean = cl[:, :, ells].mean(0)  # (T, L)
    return [float(np.mean((mean[j] - mean[-1]) / np.abs(mean[-1]))) for j in range(mean.shape[0])]


def _plot(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, scale, label in ((axes[0], "tau_parallel", "τ∥ = 3K∥ (1/Ω)"), (axes[1], "t_sep", "t_sep (1/Ω)")):
        for r in rows:
            x, y = r[scale], r["T_conv"]
            lower = not np.isfinite(y)
            ax.scatter(x, r["t_max"] if lower else y, marker="^" if lower else "o", c=[np.log(r["rho"])],
                       cmap="viridis", vmin=np.log(0.01), vmax=np.log(0.2), edgecolors="k")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("T_conv (1/Ω; ▲: > T_max)")
    axes[0].set_title("convergence of ⟨C_ℓ⟩, ℓ ≤ ℓ_max, against parallel scattering", fontsize=9)
    axes[1].set_title("against the time pairs take to separate to λ_c", fontsize=9)
    save_figure(fig, path, dpi=110)


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/convergence_time.py", description=__doc__)
    ap.add_argument("--sigma2", type=float, nargs="+", default=[0.3, 1.0, 3.0, 6.0], help="turbulence levels σ²")
    ap.add_argument("--rho", type=float, nargs="+", default=[0.01, 0.03, 0.1, 0.2], help="rigidities ρ = r_L/λ_c")
    ap.add_argument("--nside", type=int, default=16, help="HEALPix nside (default 16: ℓ ≤ 31)")
    ap.add_argument("--realisations", type=int, default=16, help="N_B per point (default 16)")
    ap.add_argument("--modes", type=int, default=32, help="plane-wave modes (default 32)")
    ap.add_argument("--t-max", type=float, default=3000.0, help="largest ΩT (default 3000)")
    ap.add_argument("--n-times", type=int, default=12, help="log-spaced times from ΩT = 10 (default 12)")
    ap.add_argument("--ell-max", type=int, default=20, help="largest ℓ of the criterion (default 20)")
    ap.add_argument("--field-precision", choices=("float64", "fast", "float32"), default="fast",
                    help="the mode sum's accuracy (default fast, ~1e-9 of b_rms)")  # fmt: skip
    ap.add_argument("--seed", type=int, default=31, help="seed; point k draws stream 1 + k (default 31)")
    ap.add_argument("--out", type=Path, default=Path("results/convergence_time"), help="output folder")
    ap.add_argument("--t-min", type=float, default=10.0, help="smallest stored ΩT (default 10)")
    args = ap.parse_args(argv)
    if min(args.sigma2) <= 0 or min(args.rho) <= 0:
        ap.error("--sigma2 and --rho must be > 0")
    if args.nside < 4 or args.nside & (args.nside - 1):
        ap.error(f"--nside must be a power of two >= 4; got {args.nside}")
    if not 1 <= args.ell_max <= 2 * args.nside - 1:
        ap.error(f"--ell-max must be in [1, 2·nside − 1 = {2 * args.nside - 1}]; got {args.ell_max}")
    if args.realisations < 4 or args.n_times < 3 or args.t_max <= 10:
        ap.error("--realisations must be >= 4, --n-times >= 3 and --t-max > 10")
    io.check_writable("--out", args.out / "convergence_time.json")
    times = tuple(jaxcr.log_time_grid(args.t_min, args.t_max, args.n_times))
    turbulence = jaxcr.PlaneWaveGJ99(n_modes=args.modes)
    model = SpectrumModel(nside=args.nside, n_realisations=args.realisations, turbulence=turbulence,
                          gradient_direction=(0.0, 0.0, 1.0), field_precision=args.field_precision)  # fmt: skip
    grid = [(s, r) for s in args.sigma2 for r in args.rho]
    rows = []
    for k, (s2, rho) in enumerate(grid):
        path = args.out / "points" / f"sigma2_{s2:g}_rho_{rho:g}.npz"
        if path.exists():
            arrays, meta = io.load_checkpoint(path, kind="checkpoint")
            keys = ("nside", "realisations", "modes", "t_max", "n_times", "t_min", "field_precision", "seed")
            differ = [k for k in keys if k in meta["settings"] and meta["settings"][k] != getattr(args, k)]
            if differ:
                raise ValueError(f"{path} was computed with other settings ({', '.join(differ)}): give another --out")
        else:
            t0 = time.perf_counter()
            arrays = _point(model, dict(sigma2=s2, rho=rho), times, args.seed, 1 + k)
            meta = dict(sigma2=s2, rho=rho, wall_s=time.perf_counter() - t0, settings=vars(args) | {"out": str(args.out)},
                        versions=jaxcr.inference.campaign.software_versions())  # fmt: skip
            io.save_checkpoint(path, arrays, meta)
        # the multipoles the map resolves at T_max (pixel noise below ⟨C_ℓ⟩, as the artifacts require)
        signal = arrays["cl"][:, -1].mean(0)
        noise = float(arrays["pixel_noise"][:, -1].mean())
        ells = [ell for ell in range(1, args.ell_max + 1) if signal[ell] > noise]
        if len(ells) >= 2:
            t_conv, p_change, alpha = convergence_time(arrays["cl"][:, :, ells], times)
        else:
            t_conv, p_change, alpha = float("nan"), [], float("nan")
        shifts = _relative_shifts(arrays["cl"], ells)
        row = dict(sigma2=s2, rho=rho, T_conv=t_conv, t_max=args.t_max, p_change=p_change, alpha=alpha,
                   relative_shift=shifts, resolved_ells=ells,
                   shift_from_T_conv=shifts[times.index(t_conv)] if np.isfinite(t_conv) else None,
                   pixel_noise_last=noise,
                   dt=float(arrays["dt"]), wall_s=meta["wall_s"], **_scales(arrays, times, rho),
                   C1_last=float(arrays["cl"][:, -1, 1].mean()),
                   C1_over_eq6=float(arrays["cl"][:, -1, 1].mean() / (4 * np.pi * np.sum(arrays["K"][-1, :, 2] ** 2))),
                   eq4=_shape_against_eq4(arrays["cl"][:, -1], args.ell_max),
                   noise_fraction_lmax=float(np.mean(arrays["pixel_noise"][:, -1])
                                             / max(float(arrays["cl"][:, -1, args.ell_max].mean()), 1e-300)))  # fmt: skip
        rows.append(row)
        print(
            f"σ² = {s2:<4g} ρ = {rho:<5g}: {len(ells):2d} ℓ resolved, T_conv = {t_conv:>7.4g} (shift to T_max "
            f"{100 * (row['shift_from_T_conv'] or 0):+4.0f} %)  τ∥ = {row['tau_parallel']:8.4g}  "
            f"t_sep = {row['t_sep']:8.4g}  dt = {row['dt']:.3g}  ({meta['wall_s']:.0f} s)",
            flush=True,
        )
    done = [r for r in rows if np.isfinite(r["T_conv"]) and r["T_conv"] > times[0]]
    law = None
    if len(done) >= 3:
        b, ln_a = np.polyfit(np.log([r["tau_parallel"] for r in done]), np.log([r["T_conv"] for r in done]), 1)
        resid = np.log([r["T_conv"] for r in done]) - (ln_a + b * np.log([r["tau_parallel"] for r in done]))
        law = dict(A=float(np.exp(ln_a)), b=float(b), scatter_efolds=float(resid.std(ddof=2) if len(done) > 2 else 0))
        print(
            f"T_conv ≈ {law['A']:.3g}·τ∥^{law['b']:.2f} (scatter {law['scatter_efolds']:.2f} e-folds, {len(done)} points)"
        )
    io.write_json(args.out / "convergence_time.json",
                  dict(settings=vars(args) | {"out": str(args.out)}, times=times, rows=rows, law=law))  # fmt: skip
    _plot(rows, args.out / "convergence_time.png")
    print(f"wrote {args.out / 'convergence_time.json'} and {args.out / 'convergence_time.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python experiments/convergence_time.py", main))
