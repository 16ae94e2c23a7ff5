"""The anchors' physics in jaxcr's model: what shapes ⟨C_ℓ⟩ near the converged state.

    python experiments/anchors.py [--sigma2 1] [--rho 0.05 0.1 0.2] [--nside 32]
        [--realisations 32] [--modes 32] [--factor 4] [--seed 41] [--out results/anchors]

Turbulence levels σ² at one coherence length λ_c, CRs of energies E ∝ ρ = r_L/λ_c (plane-wave
turbulence, λ_min/λ_c = 0.1, λ_max/λ_c = 10, B0 = ẑ). Each ρ is backtracked from every pixel of
N_B field realisations (each an observer at an independent place in the turbulence) to
ΩT = factor × t_sep(σ², ρ) and to half of it (jaxcr.inference.convergence.separation_time), and
the sky δI = r(−T)·g (Eq. 7) is analysed for gradients g ∥ B0 and ⊥ B0 with its measured pixel
noise (Eq. 12) removed. The script states, with numbers:

1. **The gradient's amplitude only normalises C_ℓ**: C_ℓ(3g)/C_ℓ(g) = 9 in every realisation and
   multipole (δI is linear in g), while its direction relative to B0 changes the shape.
2. **The energy dependence at fixed λ_c**: ⟨C_ℓ⟩/⟨C_1⟩ per ρ, and the level for a fixed gradient in
   1/pc, ⟨C_ℓ⟩ ∝ (|∇n/n| r_L)² ⟨C_ℓ⟩_unit ∝ ρ² ⟨C_ℓ⟩_unit (r_L units), relative to the lowest ρ.
3. **The spread between observers**: the realisations' standard deviation of C_ℓ over that of a
   Gaussian sky of the same ⟨C_ℓ⟩ seen through the same pixel noise N, √(2/(2ℓ+1))·(⟨C_ℓ⟩ + N)
   (1: as Gaussian; above: the observer's place in the turbulence matters more).
4. **The large-ℓ flattening and its break**: a continuous two-slope power law fitted to ln⟨C_ℓ⟩ over
   the measured multipoles (ℓ from 1 up to the first whose ⟨C_ℓ⟩ is not above twice its standard
   error; the pixel noise's spread is in that error), break ℓ_b, slopes below and above, against
   Eq. 4's asymptotic slope (−3).

Convergence: per ℓ the paired change of each realisation's C_ℓ from T/2 to T over its standard
error, z_ℓ, and q = mean z² over the measured ℓ (≈ 1 when nothing changes any more).
5. **Gyrotropy about the local field**: each map rotated so that the total field at the observer,
   b(0) = ẑ + δb(0), is the pole; the fraction of the noise-corrected power in m = 0 (the part that
   depends on the pitch angle only), against 1/(2ℓ+1) for a sky without preferred axis.

Each ρ is one file under --out/points (resumable); writes anchors.json and anchors.png.
"""

import sys
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
import healpy as hp
import numpy as np

import jaxcr
from jaxcr import io
from jaxcr.backtracking import backtrack
from jaxcr.diffusion import diffusion_tensor
from jaxcr.forward import sample_fields
from jaxcr.inference.campaign import software_versions
from jaxcr.inference.convergence import separation_time
from jaxcr.plot import save_figure
from jaxcr.random import realisation_keys
from jaxcr.recipes.command import CommandParser, run_command
from jaxcr.spectrum_model import SpectrumModel, pixel_noise_level

GRADIENTS = {"parallel": np.array([0.0, 0.0, 1.0]), "perpendicular": np.array([1.0, 0.0, 0.0])}


def _point(model: SpectrumModel, values: dict, times, seed: int, stream: int) -> dict:
    """Positions r(−T) (R, T, P, 3) at ``times`` and the total field at the observer (R, 3)."""
    model = model.resolved(values)
    sky = model.sky_model(values)
    fields = sample_fields(sky, realisation_keys(seed, model.n_realisations, stream=stream))
    traj = backtrack(fields, sky.directions, list(times), **sky.solver_options())
    local = jax.vmap(lambda f: f(np.zeros((1, 3)))[0])(fields)
    return dict(
        positions=np.asarray(traj.positions),
        local_field=np.asarray(local),
        dt=float(model.dt),
        times=np.asarray(times, dtype=float),
    )


def _stream(sigma2: float, rho: float) -> int:
    """The random stream of the point (σ², ρ): the same whichever grid it is run in."""
    return 1 + int(round(1000 * sigma2)) * 100_000 + int(round(10_000 * rho))


def _spectra(maps, lmax):
    """Full-sky C_ℓ (R, lmax+1), the pixel-noise level (R,) and the a_ℓm (R, n_alm) of maps (R, P)."""
    alms = np.stack([hp.map2alm(m, lmax=lmax, iter=3, use_pixel_weights=False) for m in maps])
    cl = np.stack([hp.alm2cl(a) for a in alms])
    return cl, pixel_noise_level(maps, cl), alms


def _m0_fraction(alms, cls, local_field, noise, lmax, ells):
    """Per ℓ: the noise-corrected power in m = 0 about each realisation's local field over the
    noise-corrected total, ⟨|a_ℓ0|² − N⟩ / ⟨Σ_m |a_ℓm|² − (2ℓ+1) N⟩ over the realisations (the
    total is the C_ℓ of the map, which the rotation leaves as it is)."""
    num, den = np.zeros(len(ells)), np.zeros(len(ells))
    for a, cl, b, n in zip(alms, cls, local_field, noise):
        alm = a.copy()  # rotate_alm works in place
        b = b / np.linalg.norm(b)
        theta, phi = np.arccos(b[2]), np.arctan2(b[1], b[0])
        hp.rotate_alm(alm, -phi, -theta, 0.0, lmax=lmax)  # brings b to the pole (z-y-z Euler angles)
        for i, ell in enumerate(ells):
            a0 = alm[hp.Alm.getidx(lmax, ell, 0)]
            num[i] += abs(a0) ** 2 - n
            den[i] += (2 * ell + 1) * (cl[ell] - n)
    return num / den


def _broken_power_law(ells, mean, se) -> dict:
    """The continuous two-slope power law ln C = a + s1 ln(ℓ/ℓ_b) (ℓ < ℓ_b), a + s2 ln(ℓ/ℓ_b) above,
    fitted by weighted least squares on every ℓ_b between the 2nd and the 2nd-last multipole."""
    x, y, w = np.log(ells), np.log(mean), (mean / se) ** 2
    best = None
    for lb in np.linspace(x[1], x[-2], 61):
        design = np.stack([np.ones_like(x), np.minimum(x - lb, 0), np.maximum(x - lb, 0)], 1)
        coef, *_ = np.linalg.lstsq(design * np.sqrt(w)[:, None], y * np.sqrt(w), rcond=None)
        chi2 = float(np.sum(w * (y - design @ coef) ** 2))
        if best is None or chi2 < best["chi2"]:
            best = dict(ell_break=float(np.exp(lb)), slope_below=float(coef[1]), slope_above=float(coef[2]),
                        chi2=chi2, dof=len(x) - 4)  # fmt: skip
    return best


def _analyse(arrays: dict, rho: float, lmax: int, ell_max: int) -> dict:
    """The five statements at the last time, plus the shift of ⟨C_ℓ⟩ from T/2 to T."""
    pos = arrays["positions"]  # (R, T, P, 3)
    k, k_se = diffusion_tensor(pos[:, -1], arrays["times"][-1])
    out: dict = dict(rho=rho, diffusion_tensor=np.asarray(k).tolist(), diffusion_tensor_se=np.asarray(k_se).tolist())
    for name, g in GRADIENTS.items():
        maps_late, maps_half = pos[:, -1] @ g, pos[:, 0] @ g
        cl, noise, alms = _spectra(maps_late, lmax)
        corrected = cl - noise[:, None]
        cl_half, noise_half, _ = _spectra(maps_half, lmax)
        mean, se = corrected.mean(0), corrected.std(0, ddof=1) / np.sqrt(len(corrected))
        ells = np.arange(1, ell_max + 1)
        ells = ells[: np.argmax(np.append(mean[ells] <= 2 * se[ells], True))]  # up to the first ℓ not > 2 SE
        shift = (cl_half - noise_half[:, None]).mean(0)[ells] / mean[ells] - 1
        paired = (cl_half - noise_half[:, None] - corrected)[:, ells]  # per realisation, T/2 − T
        z = paired.mean(0) / (paired.std(0, ddof=1) / np.sqrt(len(paired)))
        scaled, _, _ = _spectra(3 * maps_late, lmax)
        gaussian_var = 2 * (mean[ells] + noise.mean()) ** 2 / (2 * ells + 1)  # signal and pixel noise
        out[name] = dict(
            ells=ells.tolist(),
            mean=mean[ells].tolist(),
            se=se[ells].tolist(),
            pixel_noise=float(noise.mean()),
            shape=(mean[ells] / mean[1]).tolist(),
            amplitude_ratio_max_deviation=float(np.max(np.abs(scaled[:, 1:] / cl[:, 1:] / 9 - 1))),
            half_time_shift=shift.tolist(),
            half_time_z=z.tolist(),
            half_time_q=float(np.mean(z**2)),
            spread_over_gaussian=np.sqrt(corrected.var(0, ddof=1)[ells] / gaussian_var).tolist(),
            m0_fraction=_m0_fraction(alms, cl, arrays["local_field"], noise, lmax, ells).tolist(),
            isotropic_m0_fraction=(1 / (2 * ells + 1)).tolist(),
            break_fit=_broken_power_law(ells, mean[ells], se[ells]) if len(ells) >= 5 else None,
        )
    return out


def _plot(rows, path, sigma2: float):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    shown = [r for r in rows if r["sigma2"] == sigma2]  # one σ²; anchors.json holds them all
    rho0 = shown[0]["rho"]
    for r in shown:
        p, label = r["perpendicular"], f"ρ = {r['rho']:g}"
        ells, mean, se = np.array(p["ells"]), np.array(p["mean"]), np.array(p["se"])
        level = (r["rho"] / rho0) ** 2
        axes[0, 0].errorbar(ells, level * mean, level * se, fmt="o-", ms=3, label=label)
        axes[0, 1].plot(ells, p["spread_over_gaussian"], "o-", ms=3, label=label)
        axes[1, 0].plot(ells, p["m0_fraction"], "o-", ms=3, label=label)
        q = r["parallel"]
        axes[1, 1].plot(q["ells"], q["shape"], "s--", ms=3, label=f"g ∥ B0, {label}")
        axes[1, 1].plot(p["ells"], p["shape"], "o-", ms=3, label=f"g ⊥ B0, {label}")
    ell = np.arange(1, 31)
    axes[1, 0].plot(ell, 1 / (2 * ell + 1), "k:", label="1/(2ℓ+1): no preferred axis")
    axes[0, 1].axhline(1, color="k", ls=":", label="Gaussian sky")
    axes[1, 1].plot(ell, 18 / ((2 * ell + 1) * (ell + 2) * (ell + 1)), "k:", label="Eq. 4")
    titles = (
        f"σ² = {sigma2:g}: ⟨C_ℓ⟩ for one |∇n/n| (g ⊥ B0), relative to ρ = {rho0:g}",
        "spread between observers / Gaussian cosmic variance",
        "fraction of power in m = 0 about the local field",
        "⟨C_ℓ⟩/⟨C_1⟩",
    )
    for ax, title in zip(axes.flat, titles):
        ax.set_xscale("log")
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("ℓ")
        ax.legend(fontsize=7)
    for ax in (axes[0, 0], axes[1, 0], axes[1, 1]):
        ax.set_yscale("log")
    save_figure(fig, path, dpi=110)


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/anchors.py", description=__doc__)
    ap.add_argument("--sigma2", type=float, nargs="+", default=[1.0], help="turbulence levels σ² (default 1)")
    ap.add_argument("--rho", type=float, nargs="+", default=[0.05, 0.1, 0.2], help="ρ = r_L/λ_c, ∝ energy")
    ap.add_argument("--nside", type=int, default=32, help="HEALPix nside (default 32)")
    ap.add_argument("--realisations", type=int, default=32, help="N_B observers per ρ (default 32)")
    ap.add_argument("--modes", type=int, default=32, help="plane-wave modes (default 32)")
    ap.add_argument("--factor", type=float, default=4.0, help="ΩT = factor × t_sep(σ², ρ) (default 4)")
    ap.add_argument("--ell-max", type=int, default=20, help="largest ℓ analysed (default 20)")
    ap.add_argument("--seed", type=int, default=41, help="seed; each (σ², ρ) draws its own stream (default 41)")
    ap.add_argument("--out", type=Path, default=Path("results/anchors"), help="output folder")
    args = ap.parse_args(argv)
    if min(args.sigma2) <= 0 or min(args.rho) <= 0 or args.factor <= 0:
        ap.error("--sigma2, --rho and --factor must be > 0")
    if args.nside < 4 or args.nside & (args.nside - 1):
        ap.error(f"--nside must be a power of two >= 4; got {args.nside}")
    if not 5 <= args.ell_max <= 2 * args.nside - 1:
        ap.error(f"--ell-max must be in [5, 2·nside − 1 = {2 * args.nside - 1}]; got {args.ell_max}")
    if args.realisations < 4:
        ap.error("--realisations must be >= 4")
    io.check_writable("--out", args.out / "anchors.json")
    model = SpectrumModel(nside=args.nside, n_realisations=args.realisations,
                          turbulence=jaxcr.PlaneWaveGJ99(n_modes=args.modes), field_precision="fast")  # fmt: skip
    rows = []
    grid = [(s2, rho) for s2 in sorted(args.sigma2) for rho in sorted(args.rho)]
    for sigma2, rho in grid:
        t_max = float(f"{args.factor * float(separation_time(sigma2, rho)):.3g}")
        times = (t_max / 2, t_max)
        path = args.out / "points" / f"sigma2_{sigma2:g}_rho_{rho:g}.npz"
        settings = dict(nside=args.nside, realisations=args.realisations, modes=args.modes, factor=args.factor,
                        seed=args.seed)  # fmt: skip
        if path.exists():
            arrays, meta = io.load_checkpoint(path, kind="checkpoint")
            if meta["settings"] != settings:
                raise ValueError(f"{path} was computed with other settings ({meta['settings']}): give another --out")
        else:
            t0 = time.perf_counter()
            arrays = _point(model, dict(sigma2=sigma2, rho=rho), times, args.seed, _stream(sigma2, rho))
            meta = dict(sigma2=sigma2, rho=rho, times=times, wall_s=time.perf_counter() - t0, settings=settings,
                        versions=software_versions())  # fmt: skip
            io.save_checkpoint(path, arrays, meta)
        row = _analyse(arrays | dict(times=np.asarray(times)), rho, 3 * args.nside - 1, args.ell_max)
        row |= dict(sigma2=sigma2, times=list(times), wall_s=meta["wall_s"])
        rows.append(row)
        p = row["perpendicular"]
        fit = p["break_fit"] or {}
        print(
            f"σ² = {sigma2:<4g} ρ = {rho:<5g} ΩT = {t_max:<6g} ({meta['wall_s']:.0f} s): ℓ ≤ {p['ells'][-1]} resolved; "
            f"C(3g)/C(g)/9 − 1 ≤ {p['amplitude_ratio_max_deviation']:.1e}; break ℓ_b = {fit.get('ell_break', np.nan):.1f}, "
            f"slopes {fit.get('slope_below', np.nan):+.2f} / {fit.get('slope_above', np.nan):+.2f}; "
            f"m=0 fraction at ℓ = 1, 5: {p['m0_fraction'][0]:.2f}, "
            f"{p['m0_fraction'][min(4, len(p['ells']) - 1)]:.2f}",
            flush=True,
        )
    io.write_json(args.out / "anchors.json",
                  dict(settings=vars(args) | {"out": str(args.out)}, rows=rows, versions=software_versions()))  # fmt: skip
    _plot(rows, args.out / "anchors.png", args.sigma2[0])
    print(f"wrote {args.out / 'anchors.json'} and {args.out / 'anchors.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python experiments/anchors.py", main))
