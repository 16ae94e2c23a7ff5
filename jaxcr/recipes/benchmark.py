"""How fast jaxcr runs on this machine: field, backtracking, and the cost of a campaign point.

    jaxcr benchmark [--modes 256] [--particles 12288] [--steps 400] [--pairs 3]
        [--campaign-nside 32] [--campaign-realisations 16] [--campaign-time 150] [--skip-campaign]

Side by side, alternating (--pairs times, the median quoted):

1. the plane-wave field Σ E_n cos(k_n·r + β_n) of the paper's turbulence (σ² = 1, λ_c = 10 r_L,
   λ_min,max = 0.01, 100 λ_c, --modes modes) at --particles points: the native kernel against
   jaxcr's pure-JAX layout (MATMUL), in mode-evaluations/s;
2. Boris backtracking (the default step) of --particles particles for --steps steps: all steps
   inside the native kernel (``Boris(fused=True)``) against one diffrax step per Boris step
   (``fused=False``, what gradients need), in particle-steps/s;
3. two campaign design points (``jaxcr campaign``) at the given nside, realisations and ΩT, the
   unit of a fit campaign's cost: the first compiles, the second reuses the program; a 5 × 5
   design is one compilation and 25 points (JAXCR_COMPILATION_CACHE=off to time the compilation
   where the persistent cache already holds it).

Prints the machine and every parameter. The comparison with the C++ reference code (CRPropa) is
benchmarks/bench_vs_crpropa.py in the source tree (it needs a CRPropa build).
"""

from __future__ import annotations

import statistics
import sys
import time

from .command import CommandParser


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _machine() -> str:
    import os
    import platform

    import jax

    from jaxcr import native

    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    kernel = native.instruction_set() if native.available() else f"unavailable ({native.unavailable_reason()})"
    return (
        f"machine: {cpu}; {len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()} "
        f"cores usable; jax {jax.__version__} on {jax.default_backend()}; native kernel: {kernel}"
    )


def main(argv=None, prog: str = "jaxcr benchmark") -> int:
    ap = CommandParser(prog=prog, description=__doc__)
    ap.add_argument("--modes", type=int, default=256, help="plane-wave modes N (default 256)")
    ap.add_argument("--particles", type=int, default=12288, help="points / particles (default 12288)")
    ap.add_argument("--steps", type=int, default=400, help="Boris steps per particle in the timing (default 400)")
    ap.add_argument("--pairs", type=int, default=3, help="alternating timing pairs (default 3)")
    ap.add_argument("--campaign-nside", type=int, default=32, help="nside of the timed campaign point (default 32)")
    ap.add_argument(
        "--campaign-realisations", type=int, default=16, help="N_B of the timed campaign point (default 16)"
    )
    ap.add_argument(
        "--campaign-time", type=float, default=150.0, help="largest ΩT of the timed campaign point (default 150)"
    )
    ap.add_argument("--skip-campaign", action="store_true", help="do not time a campaign point")
    args = ap.parse_args(argv)
    for name in ("modes", "particles", "steps", "pairs", "campaign_nside", "campaign_realisations"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be >= 1; got {getattr(args, name)}")
    if not args.campaign_time > 0:
        ap.error(f"--campaign-time must be > 0; got {args.campaign_time}")
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import jaxcr
    from jaxcr.field import ModeSumLayout

    print(_machine())
    params = jaxcr.TurbulenceParameters(
        sigma2=1.0, coherence_length=10.0, lambda_min=0.1, lambda_max=1000.0, n_modes=args.modes
    )
    field = jaxcr.PlaneWaveTurbulence.sample(0, params)
    pts = jax.random.uniform(jax.random.key(1), (args.particles, 3), minval=-100.0, maxval=100.0)
    native = jax.jit(jax.vmap(field.with_layout(ModeSumLayout.NATIVE).turbulent))
    pure = jax.jit(jax.vmap(field.with_layout(ModeSumLayout.MATMUL).turbulent))
    for f in (native, pure):
        f(pts).block_until_ready()
    rows: dict[str, list[float]] = {"native": [], "pure-JAX": []}
    for _ in range(args.pairs):
        rows["native"].append(_timed(lambda: native(pts).block_until_ready()))
        rows["pure-JAX"].append(_timed(lambda: pure(pts).block_until_ready()))
    evals = args.particles * args.modes
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"\n1. field, N = {args.modes}, {args.particles} points, {args.pairs} alternating pairs (median):")
    for k, t in med.items():
        print(f"   {k:9s} {evals / t:.3g} mode-evaluations/s")
    print(f"   ratio native / pure-JAX: {med['pure-JAX'] / med['native']:.2f}")

    dt = jaxcr.default_step(params)
    duration = args.steps * dt
    dirs = jax.random.normal(jax.random.key(2), (args.particles, 3))
    dirs = dirs / jnp.linalg.norm(dirs, axis=-1, keepdims=True)  # isotropic arrival directions
    n = args.particles
    runs: dict[bool, list[float]] = {}
    for fused in (True, False):
        solver = jaxcr.Boris(dt=dt, fused=fused)
        jaxcr.backtrack(field, dirs, [duration], solver=solver).positions.block_until_ready()  # compile
        runs[fused] = []
    for _ in range(args.pairs):
        for fused in (True, False):
            solver = jaxcr.Boris(dt=dt, fused=fused)
            runs[fused].append(
                _timed(
                    lambda s=solver: jaxcr.backtrack(field, dirs, [duration], solver=s).positions.block_until_ready()
                )
            )
    print(
        f"\n2. Boris backtracking, {n} particles × {args.steps} steps of {dt:.4g}/Ω (jaxcr.default_step), {args.pairs} pairs:"
    )
    med_b = {k: statistics.median(v) for k, v in runs.items()}
    for fused, t in med_b.items():
        label = "fused (native)" if fused else "per-step diffrax"
        print(f"   {label:17s} {n * args.steps / t:.3g} particle-steps/s")
    print(f"   ratio fused / per-step: {med_b[False] / med_b[True]:.2f}")

    if not args.skip_campaign:
        import tempfile

        import numpy as np

        from jaxcr.analysis import Analysis
        from jaxcr.inference.campaign import Campaign, CampaignSpec
        from jaxcr.parametrisation import plane_wave_parametrisation
        from jaxcr.spectrum_model import SpectrumModel
        from jaxcr.turbulence_model import PlaneWaveGJ99

        model = SpectrumModel(
            nside=args.campaign_nside, n_realisations=args.campaign_realisations, turbulence=PlaneWaveGJ99(n_modes=32)
        )
        times = tuple(float(t) for t in np.linspace(args.campaign_time / 5, args.campaign_time, 5))
        spec = CampaignSpec(
            model=model,
            times=times,
            analyses=(Analysis("full"),),
            parameters=plane_wave_parametrisation((0.5, 2.0), (0.05, 0.2)),
            design=np.log([[1.0, 0.1], [1.2, 0.12]]),
        )
        with tempfile.TemporaryDirectory() as folder:
            campaign = Campaign.create(folder + "/c", spec)
            first = _timed(lambda: campaign.run_task(0))  # compiles, then runs
            second = _timed(lambda: campaign.run_task(1))  # the same compiled program at another point
        steps = spec.point_particle_steps()[1]
        compile_s = max(first - second, 0.0)
        print(
            f"\n3. campaign points (σ² = 1 and 1.2, r_L/λ_c = 0.1 and 0.12, nside {model.nside}, N_B "
            f"{model.n_realisations}, 32 modes, ΩT ≤ {args.campaign_time:g}, dt {spec.model.dt:.4g}/Ω): the first "
            f"{first:.1f} s (compiling {compile_s:.1f} s of it), the next {second:.1f} s ({steps / second:.3g} "
            f"particle-steps/s); a 5 × 5 design ≈ {(compile_s + 25 * second) / 60:.1f} min on this machine "
            "(one compilation, 25 points)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
