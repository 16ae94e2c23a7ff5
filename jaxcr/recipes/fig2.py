"""Reproduce Fig. 2 of Ahlers (2015): ⟨C_ℓ⟩(T) for a CR gradient parallel and perpendicular to B0.

    jaxcr fig2                    # quick preset (default, about 45 s on 2 CPU cores)
    jaxcr fig2 --preset paper     # the paper's setup (about 9 minutes on 2 CPU cores)
    jaxcr fig2 --preset paper --t-max 300 --out results/fig2_paper_T300

Presets (turbulence always σ² = 1, r_L = 0.1 λ_c, λ_min = 0.01 λ_c, λ_max = 100 λ_c, γ = 11/3):

  quick  nside 16 (3072 pixels), N_B = 4 realisations, N = 64 modes, Boris step 0.02/Ω,
         24 log-spaced ΩT from 0.1 to 1000. Shows the physics: low-ℓ saturation, noise ∝ T,
         the standard-diffusion dipole reaching Eq. 6.
  paper  nside 32 (12288 pixels), N_B = 10, N = 256 modes, Boris step 0.02/Ω, 30 log-spaced
         ΩT from 0.1 to 1000 (the paper states neither N nor the range of ΩT; the step and N were
         chosen with experiments/convergence.py, see experiments/README.md).

Maps use the spatial term only (Eq. 7, as in the paper's Fig. 2) unless --fick-term is given.
Writes into --out (default results/fig2_<preset>, with the options that differ from the preset
appended, e.g. results/fig2_quick_t-max300): fig2.png, fig2.nc (all statistics, labelled, with
units, parameters, seed, versions and creation time in its attributes), params.json, and a
checkpoint fig2.ckpt.npz after each time segment: the same command resumes after a crash (and
says so); --fresh deletes the checkpoint and results and runs again. A folder that holds another
configuration's run is refused before anything is written.
"""

from __future__ import annotations

import time

import jaxcr
from jaxcr.options import FieldPrecision, ModeSumLayout

from .presets import add_time_axis_options, claim_output_folder, parse_preset_args, time_axis

PRESETS = {
    "quick": dict(nside=16, realisations=4, modes=64, dt=0.02, t_min=0.1, t_max=1000.0, n_times=24),
    "paper": dict(nside=32, realisations=10, modes=256, dt=0.02, t_min=0.1, t_max=1000.0, n_times=30),
}


def parse_args(argv=None, prog: str | None = None):
    def extra(ap):
        ap.add_argument("--fick-term", action="store_true", help="include −3p̂·K·g in δI (Eq. 5) instead of Eq. 7")
        add_time_axis_options(ap)
        ap.add_argument(
            "--field-precision",
            choices=[p.value for p in FieldPrecision],
            default="float64",
            help="mode-sum accuracy: float64 (full, ~1e-13 of the rms field), fast (~1e-9), float32 (~5e-7)",
        )
        ap.add_argument(
            "--field-layout",
            choices=[m.value for m in ModeSumLayout],
            default="auto",
            help="how the mode sum is computed (auto: the native C++ kernel on CPU, the Pallas kernel on GPU; matmul: pure JAX)",
        )

    return parse_preset_args(__doc__, PRESETS, "fig2", argv, extra, prog=prog)


def config_from_args(args) -> jaxcr.EnsembleConfig:
    from jaxcr.conventions import FIG2_GRADIENTS

    return jaxcr.EnsembleConfig(
        turbulence=dict(sigma2=1.0, coherence_length=10.0, lambda_min=0.1, lambda_max=1000.0, n_modes=args.modes),
        nside=args.nside,
        n_realisations=args.realisations,
        times=jaxcr.log_time_grid(args.t_min, args.t_max, args.n_times),
        gradients=dict(FIG2_GRADIENTS),
        seed=args.seed,
        solver=jaxcr.Boris(dt=args.dt),
        fick_term=args.fick_term,
        field_precision=args.field_precision,
        field_layout=args.field_layout,
    )


def main(argv=None, prog: str | None = None) -> int:
    args = parse_args(argv, prog)
    import jax

    years_per_unit_time, time_note = time_axis(args)
    cfg = config_from_args(args)
    cfg.validate()
    params = dict(
        preset=args.preset,
        config=cfg.as_dict(),
        jaxcr_version=jaxcr.__version__,
        device=str(jax.devices()[0].device_kind),
    )
    state = claim_output_folder(args.out, cfg.digest(), params, args.fresh, outputs=("fig2.nc", "fig2.png"))
    if state == "resume":
        print(f"resuming from the checkpoint in {args.out} (same configuration); --fresh starts again")
    print(
        f"Fig. 2 ({args.preset}): nside {cfg.nside}, N_B {cfg.n_realisations}, N {args.modes} modes, "
        f"dt {args.dt}/Ω, ΩT {cfg.times[0]:.3g}..{cfg.times[-1]:.3g} ({len(cfg.times)} times) → {args.out}"
    )
    t0 = time.perf_counter()
    ds = jaxcr.run_ensemble(
        cfg, checkpoint=args.out / "fig2.ckpt.npz", output=args.out / "fig2.nc", progress=not args.no_progress
    )
    png = jaxcr.plot.plot_fig2(ds, args.out / "fig2.png", years_per_unit_time=years_per_unit_time, time_note=time_note)
    last = ds.isel(time=-1)
    print(f"done in {time.perf_counter() - t0:.1f} s (run total {ds.attrs['wall_time_s']:.1f} s incl. resumed parts)")
    for g in ds.gradient.values:
        s = last.sel(gradient=g)
        print(
            f"  ΩT={float(last.time):.4g} {g:>13}: <C_0>={float(s.cl_mean[0]):.4g} <C_1>={float(s.cl_mean[1]):.4g} "
            f"noise(Eq.12)={float(s.noise_level):.4g} C_1(<map>)={float(s.cl_standard_diffusion[1]):.4g} "
            f"Eq.6(GK K)={float(s.standard_diffusion_dipole_eq6_green_kubo):.4g} "
            f"Eq.8 lhs/rhs={float(s.sum_rule_lhs / s.sum_rule_rhs):.3f} "
            f"(noise-corrected {float(s.sum_rule_lhs_noise_corrected / s.sum_rule_rhs):.3f})"
        )
    print(f"wrote {png}, {args.out / 'fig2.nc'}, {args.out / 'params.json'}")
    return 0
