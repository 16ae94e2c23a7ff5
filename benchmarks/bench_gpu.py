"""GPU figures, in one process and inside a wall-time budget (device time is scarce).

    python benchmarks/bench_gpu.py [--budget 420] [--out DIR] [--sections ...] [--paper-t-max 10000]

Sections, in order of priority; each is skipped when the budget would be exceeded and each
failure is recorded with its traceback, so one broken part costs no other figure:

1. accuracy on the GPU against XLA:CPU float64 on the same machine: the field at 12 288 points
   (|r| ≤ 10⁴ r_L, phases up to ~10⁶ rad) for every layout (--layouts) and both precisions,
   and short orbits (ΩT = 10, not yet chaotic: float64 must agree to ~1e-9 r_L);
2. Boris backtracking particle-steps/s (paper field, N = 256, λ_min/20) at 12 288 particles (the
   CPU benchmark's shape), 122 880 (the paper preset: 10 realisations × nside 32; every layout and
   precision) and 983 040 (the fastest layout of each precision);
3. field mode-evaluations/s for N = 64, 256, 1024;
4. the paper Fig. 2 preset (experiments/fig2.py --preset paper, fastest layout) run once to
   --paper-t-max; without it, to ΩT = 10⁴ if the measured rate says it fits, else to the
   longest of 3000/1000/300/100/30 that fits, with a short run (ΩT ≤ 10) to separate the fixed costs (the first run of a process also pays ~35 s of one-time set-up,
   so that short run must not be the first); peak GPU memory from the allocator;
5. one fit step (inference.experimental.estimate_gradient, CRN) of the quick fit model.

Writes ``bench_gpu.json`` (every figure with its parameters, the machine, jax and jaxcr versions)
into --out after every section.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "experiments"))

from _machine import Sections, describe, gpu_description, timed


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=420.0, help="wall-time budget in seconds")
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--steps", type=int, default=400, help="Boris steps per timing run")
    ap.add_argument("--sections", nargs="+", help="run only these sections (names as printed)")
    ap.add_argument(
        "--layouts", nargs="+", default=["pallas", "fused", "split", "matmul"], help="mode-sum layouts to compare"
    )
    ap.add_argument("--field-points", type=int, nargs="+", default=[12288, 491520])
    ap.add_argument("--field-modes", type=int, nargs="+", default=[64, 256, 1024])
    ap.add_argument(
        "--paper-t-max",
        type=float,
        help="run the paper preset once to this ΩT (no short run, no extrapolation): the honest wall time",
    )
    args = ap.parse_args()
    import jax.numpy as jnp
    import numpy as np

    import jaxcr

    args.out.mkdir(parents=True, exist_ok=True)
    rec = dict(
        machine=describe(), jaxcr_version=jaxcr.__version__, args={k: str(v) for k, v in vars(args).items()}, errors={}
    )
    rec["nvidia_smi"] = gpu_description()
    print(rec["machine"], "|", rec["nvidia_smi"], flush=True)
    gpu, cpu = jax.devices()[0], jax.devices("cpu")[0]

    sections = Sections(args.budget, args.out / "bench_gpu.json", rec, args.sections)
    left, section, save = sections.left, sections.run, sections.save

    params = jaxcr.TurbulenceParameters.paper(n_modes=256)
    field = jaxcr.PlaneWaveTurbulence.sample(0, params)
    dt = float(jaxcr.default_step(field))
    variants = [(p, lay) for p in ("float64", "float32") for lay in args.layouts]

    # 1 -------------------------------------------------------------------------------------------
    def accuracy():
        pts = jax.random.uniform(jax.random.key(1), (12288, 3), minval=-1e4, maxval=1e4)
        with jax.default_device(cpu):
            ref = np.asarray(
                jax.jit(lambda f, r: f(r))(jax.device_put(field.with_layout("matmul"), cpu), jax.device_put(pts, cpu))
            )
        rms = float(np.sqrt(np.mean(np.sum((ref - np.asarray(field.regular_field)) ** 2, -1))))
        out = {}
        for prec, lay in variants:
            got = np.asarray(jax.jit(lambda f, r: f(r))(field.with_precision(prec).with_layout(lay), pts))
            out[f"{prec}/{lay}"] = float(np.max(np.abs(got - ref)) / rms)
        rec["field_error_vs_cpu_float64_over_rms"] = out
        print("field max |Δb|/b_rms vs XLA:CPU float64 (|r| ≤ 1e4 r_L):", out, flush=True)
        dirs = jaxcr.pixel_directions(4)
        with jax.default_device(cpu):
            ref_r = np.asarray(
                jaxcr.backtrack(
                    jax.device_put(field.with_layout("matmul"), cpu),
                    jax.device_put(dirs, cpu),
                    [10.0],
                    solver=jaxcr.Boris(dt=dt),
                ).positions[-1]
            )
        orb = {}
        for prec, lay in variants:
            got = np.asarray(
                jaxcr.backtrack(
                    field.with_precision(prec).with_layout(lay), dirs, [10.0], solver=jaxcr.Boris(dt=dt)
                ).positions[-1]
            )
            orb[f"{prec}/{lay}"] = float(np.max(np.linalg.norm(got - ref_r, axis=-1)))
        rec["orbit_error_vs_cpu_float64_r_L_at_OmegaT_10"] = orb
        print(f"orbit max |Δr| (r_L) at ΩT = 10, {dirs.shape[0]} particles, vs XLA:CPU float64:", orb, flush=True)

    section("accuracy", accuracy, 30)

    # 2 -------------------------------------------------------------------------------------------
    rates = {}

    def backtracking(counts, vars_):
        def run():
            for P in counts:
                n = jax.random.normal(jax.random.key(2), (P, 3))
                n = n / jnp.linalg.norm(n, axis=-1, keepdims=True)
                for prec, lay in vars_:
                    if left() < 25:
                        return
                    f = field.with_precision(prec).with_layout(lay)
                    first, best = timed(
                        lambda: jaxcr.backtrack(
                            f, n, [dt * args.steps], solver=jaxcr.Boris(dt=dt)
                        ).positions.block_until_ready(),
                        2,
                    )
                    r = P * args.steps / best
                    rates[(P, prec, lay)] = r
                    rec.setdefault("backtracking", []).append(
                        dict(
                            particles=P,
                            modes=256,
                            precision=prec,
                            layout=lay,
                            steps=args.steps,
                            dt=dt,
                            first_call_s=first,
                            best_s=best,
                            particle_steps_per_s=r,
                            mode_evaluations_per_s=r * 256,
                        )
                    )
                    print(
                        f"backtracking: Boris N=256, {P} particles, dt={dt:.4g}/Ω (λ_min/20), {args.steps} steps, "
                        f"{prec}/{lay}: {best:.3f} s (first {first:.1f} s) → {r:.3g} particle-steps/s, "
                        f"{r * 256:.3g} mode-evaluations/s",
                        flush=True,
                    )

        return run

    section("backtracking_122880", backtracking([122880], variants), 60)
    best_of_prec = {}
    for prec in ("float64", "float32"):
        cand = [(r, lay) for (P, p, lay), r in rates.items() if p == prec and P == 122880]
        best_of_prec[prec] = max(cand)[1] if cand else "fused"
    rec["best_layout"] = best_of_prec
    section(
        "backtracking_12288_983040",
        backtracking([12288, 983040], [(p, best_of_prec[p]) for p in ("float64", "float32")]),
        60,
    )

    # 3 -------------------------------------------------------------------------------------------
    def field_rate():
        ev = jax.jit(lambda f, r: f(r))
        for P in args.field_points:
            pts = jax.random.uniform(jax.random.key(1), (P, 3), minval=-100.0, maxval=100.0)
            for modes in args.field_modes:
                base = jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters.paper(n_modes=modes))
                for prec, lay in variants:
                    if left() < 15:
                        return
                    f = base.with_precision(prec).with_layout(lay)
                    _, best = timed(lambda: ev(f, pts).block_until_ready(), 5)
                    r = P * modes / best
                    rec.setdefault("field", []).append(
                        dict(points=P, modes=modes, precision=prec, layout=lay, best_s=best, mode_evaluations_per_s=r)
                    )
                    print(
                        f"field: N={modes}, {P} points, {prec}/{lay}: {best * 1e3:.3f} ms → {r:.3g} mode-evaluations/s",
                        flush=True,
                    )

    section("field", field_rate, 40)

    # 4 -------------------------------------------------------------------------------------------
    def paper(precision):
        def run():
            import fig2

            lay = best_of_prec[precision]
            rate = rates.get((122880, precision, lay)) or 1e6  # unmeasured: assume a CPU-like rate

            def go(t_max):
                with tempfile.TemporaryDirectory() as out:
                    t = time.perf_counter()
                    fig2.main(
                        [
                            "--preset",
                            "paper",
                            "--t-max",
                            str(t_max),
                            "--no-progress",
                            "--out",
                            out,
                            "--field-precision",
                            precision,
                            "--field-layout",
                            lay,
                        ]
                    )
                    return time.perf_counter() - t

            if args.paper_t_max:
                wall = go(args.paper_t_max)
                entry = dict(
                    precision=precision,
                    layout=lay,
                    t_max=args.paper_t_max,
                    wall_s=wall,
                    particle_steps_per_s_incl_everything=122880 / 0.02 * args.paper_t_max / wall,
                    peak_gpu_memory_mb=(gpu.memory_stats() or {}).get("peak_bytes_in_use", 0) / 2**20,
                )
                rec.setdefault("paper_preset", []).append(entry)
                print("paper preset:", entry, flush=True)
                return
            short = go(10.0)  # compilation, 30 saves' statistics, plot: the fixed costs
            steps_per_T = 122880 / 0.02
            chosen = None
            for t_max in (10000.0, 3000.0, 1000.0, 300.0, 100.0, 30.0):
                if short + steps_per_T * t_max / rate < min(left() - 30, 240):
                    chosen = t_max
                    break
            entry = dict(precision=precision, layout=lay, short_t_max=10.0, short_wall_s=short)
            if chosen is not None:
                wall = go(chosen)
                bt_rate = steps_per_T * (chosen - 10.0) / max(wall - short, 1e-9)
                entry.update(
                    t_max=chosen,
                    wall_s=wall,
                    particle_steps_per_s=bt_rate,
                    extrapolated_wall_s_to_10000=short + steps_per_T * 1e4 / bt_rate,
                    extrapolated_wall_s_to_1000=short + steps_per_T * 1e3 / bt_rate,
                )
            else:
                entry.update(extrapolated_from_rate_wall_s_to_10000=short + steps_per_T * 1e4 / rate)
            entry["peak_gpu_memory_mb"] = (gpu.memory_stats() or {}).get("peak_bytes_in_use", 0) / 2**20
            rec.setdefault("paper_preset", []).append(entry)
            print("paper preset:", entry, flush=True)

        return run

    section("paper_float64", paper("float64"), 60)

    # 5 -------------------------------------------------------------------------------------------
    def fit_step():
        from jaxcr.inference import experimental as inference
        from jaxcr.spectrum_model import SpectrumModel
        from jaxcr.turbulence_model import PlaneWaveGJ99

        model = SpectrumModel(nside=4, n_realisations=32, time=20.0, turbulence=PlaneWaveGJ99(n_modes=32))
        theta = jnp.array([0.0, np.log(0.1)])
        first, best = timed(lambda: inference.estimate_gradient(theta, model, inference.CRN(step=0.2)), 2)
        rec["fit_step"] = dict(first_s=first, best_s=best, model="nside 4, 32 realisations, N 32, ΩT 20, CRN h 0.2")
        print(
            f"fit step (estimate_gradient, CRN, nside 4, 32 realisations, N 32, ΩT 20, with λ): {best:.2f} s "
            f"(first {first:.1f} s)",
            flush=True,
        )

    section("fit_step", fit_step, 40)
    section("paper_float32", paper("float32"), 60)
    rec["wall_s"] = args.budget - left()
    save()
    print(f"total {rec['wall_s']:.0f} s", flush=True)


if __name__ == "__main__":
    main()
