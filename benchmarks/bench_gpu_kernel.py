"""The fused Pallas mode-sum kernel on one GPU, side by side with the pure-JAX sum, inside a budget.

    python benchmarks/bench_gpu_kernel.py [--budget 480] [--out DIR] [--sections ...]

GPU time is scarce: one process, sections in order of priority, each skipped when its estimated
need exceeds the time left, each failure recorded with its traceback, and ``bench_gpu_kernel.json``
(every figure with its parameters, the card, driver, jax and jaxcr versions) written into --out
after every section. Copy the JSON and the log into ``benchmarks/measured/``.

On this workplace's lent H200 (Python 3.12 with jax 0.11.2 + CUDA 13, diffrax, equinox, optax,
xarray already there; nothing can be downloaded there) jaxcr runs from the working tree with
five wheels carried in ``.whl`` (21 MB; fetched here with ``pip download --no-deps
--only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 ...``: healpy,
s2fft, astropy, pyerfa, astropy-iers-data), joined by ``&&`` in one command with ``.whl`` carried::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .whl/*.whl
    PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 python3 benchmarks/bench_gpu_kernel.py --budget 420 --out $OUT/b

1. check: whether the kernel passed its first compiled check (``jaxcr.pallas_kernel``), and its
   error against XLA:CPU float64 on the same machine: the field at 12 288 points within 10⁴ r_L
   at each accuracy level, and orbits to ΩT = 10 (fused steps, not yet chaotic);
2. field: mode-evaluations/s of the field alone, N = 256, 122 880 points, PALLAS against SPLIT
   (the previous GPU default) at float64 and float32, alternating rounds, medians;
3. solver: Boris backtracking, N = 256, 122 880 particles (the paper preset's shape), λ_min/20:
   fused Pallas steps, one diffrax step per Boris step on the Pallas field, and on the SPLIT
   field, at float64 and float32, alternating; mode-evaluations/s inside the solver = rate × N;
4. tiling: the field and the fused steps for several block sizes and warp counts;
5. roofline: the ceiling of this sum on the card from its SM count and clock, the per-SM
   throughput of each pipe, and the kernel's instructions per mode-evaluation by pipe (counted
   in its compiled code; see ``INSTRUCTIONS``), and the fraction of it each measured rate reaches;
6. paper: the Fig. 2 paper preset (nside 32, N_B 10, N 256) to ΩT = 10⁴ in a fresh process,
   compilation and start-up included (float32, then float64);
7. campaign: a fits' campaign (5 × 5 design, nside 32, N_B 32, ΩT ≤ 150) on this GPU, timed
   per design point (stopped at the budget; the runner resumes);
8. profile: a ``jax.profiler`` trace of the fused steps (AUTO layout) and of the SPLIT field
   (TensorBoard / Perfetto), in --out/profile.
"""

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _machine import Sections, alternating, describe, gpu_description

# Instructions per mode-evaluation in the field kernel's mode loop at the default tiling, by
# pipe: counted in the SASS that Triton 3.9 + ptxas 13.4 produce for sm_90a from the kernel's
# Triton code (benchmarks/inspect_gpu_kernel.py; benchmarks/measured/gpu_kernel_code_sm90.log).
INSTRUCTIONS = {
    "float64": {"float64": 22.0, "float32": 0.0, "conversion": 0.0, "other": 5.5},
    "fast": {"float64": 20.0, "float32": 0.0, "conversion": 0.0, "other": 5.0},
    "float32": {"float64": 7.0, "float32": 13.0, "conversion": 1.0, "other": 3.9},
}
# Per SM per clock, by compute capability (CUDA C++ Programming Guide, arithmetic instruction
# throughput): float64 FMA/mul/add, float32 FMA/mul/add, 64→32-bit conversions, and the issue
# limit (4 schedulers × 32 lanes) that every instruction shares.
PER_SM_PER_CLOCK = {
    "9.0": {"float64": 64, "float32": 128, "conversion": 16, "issue": 128},
    "8.0": {"float64": 32, "float32": 64, "conversion": 16, "issue": 128},
}


def ceiling_per_clock_per_sm(counts: dict, rates: dict) -> tuple[float, str]:
    """Mode-evaluations per clock per SM when the busiest pipe (or the issue limit) is saturated,
    and which one that is."""
    loads = {pipe: counts[pipe] / rates[pipe] for pipe in ("float64", "float32", "conversion")}
    loads["issue"] = sum(counts.values()) / rates["issue"]
    pipe = max(loads, key=lambda k: loads[k])
    return 1.0 / loads[pipe], pipe


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--budget", type=float, default=480.0, help="wall-time budget in seconds (default 480)")
    ap.add_argument("--out", type=Path, default=Path("results/bench_gpu_kernel"), help="output folder")
    ap.add_argument("--sections", nargs="+", help="run only these sections (names as listed above)")
    ap.add_argument("--particles", type=int, default=122880, help="particles / field points (default 122 880)")
    ap.add_argument("--steps", type=int, default=1000, help="Boris steps per timed run (default 1000)")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per comparison (default 3)")
    args = ap.parse_args()
    import jax.numpy as jnp
    import numpy as np

    import jaxcr
    from jaxcr import pallas_kernel

    args.out.mkdir(parents=True, exist_ok=True)
    rec: dict = dict(machine=describe(), jaxcr_version=jaxcr.__version__, args=vars(args), date=time.ctime())
    rec["nvidia_smi"] = gpu_description()
    print(rec["machine"], "|", rec["nvidia_smi"], flush=True)
    sections = Sections(args.budget, args.out / "bench_gpu_kernel.json", rec, args.sections)
    params = jaxcr.TurbulenceParameters.paper(n_modes=256)
    field = jaxcr.PlaneWaveTurbulence.sample(0, params)
    dt = float(jaxcr.default_step(field))
    P, N = args.particles, 256
    points = jax.random.uniform(jax.random.key(1), (P, 3), minval=-100.0, maxval=100.0)
    directions = jax.random.normal(jax.random.key(2), (P, 3))
    directions = directions / jnp.linalg.norm(directions, axis=-1, keepdims=True)
    rates: dict = {}

    def check():
        rec["pallas_unavailable_reason"] = pallas_kernel.unavailable_reason()
        rec["auto_layout"] = str(field.resolved_layout())
        print("kernel check:", rec["pallas_unavailable_reason"] or "passed", "| AUTO →", rec["auto_layout"])
        cpu = jax.devices("cpu")[0]
        far = jax.random.uniform(jax.random.key(3), (12288, 3), minval=-1e4, maxval=1e4)
        with jax.default_device(cpu):
            on_cpu = jax.device_put(field.with_layout("matmul"), cpu)
            ref = np.asarray(jax.jit(lambda f, r: f.turbulent(r))(on_cpu, jax.device_put(far, cpu)))
        rms = float(np.sqrt(np.mean(np.sum(ref**2, -1))))
        errors = {}
        for precision in ("float64", "fast", "float32"):
            f = field.with_precision(precision).with_layout("pallas")
            errors[precision] = float(np.max(np.abs(np.asarray(jax.jit(lambda r: f.turbulent(r))(far)) - ref)) / rms)
        rec["field_error_over_rms_vs_cpu_float64"] = errors
        print("field max |Δb|/b_rms against XLA:CPU float64 (|r| ≤ 1e4 r_L):", errors, flush=True)
        dirs = jaxcr.pixel_directions(4)
        with jax.default_device(cpu):
            ref_r = np.asarray(
                jaxcr.backtrack(on_cpu, jax.device_put(dirs, cpu), [10.0], solver=jaxcr.Boris(dt=dt)).positions[-1]
            )
        orbits = {}
        for precision in ("float64", "float32"):
            f = field.with_precision(precision).with_layout("pallas")
            got = np.asarray(jaxcr.backtrack(f, dirs, [10.0], solver=jaxcr.Boris(dt=dt)).positions[-1])
            orbits[precision] = float(np.max(np.linalg.norm(got - ref_r, axis=-1)))
        rec["orbit_error_r_L_at_OmegaT_10_vs_cpu_float64"] = orbits
        print("fused-step orbits, max |Δr| at ΩT = 10 (r_L):", orbits, flush=True)

    def field_rate():
        out = {}
        for precision in ("float64", "float32"):
            fns = {}
            for layout in ("pallas", "split"):
                f = field.with_precision(precision).with_layout(layout)
                ev = jax.jit(lambda r, f=f: f.turbulent(r))
                fns[layout] = lambda ev=ev: ev(points).block_until_ready()
            times = alternating(fns, args.rounds)
            out[precision] = {k: P * N / t for k, t in times.items()}
            rates.update({("field", precision, k): v for k, v in out[precision].items()})
            print(
                f"field N={N}, {P} points, {precision}: "
                + ", ".join(f"{k} {v:.3g}" for k, v in out[precision].items())
                + f" mode-evaluations/s; PALLAS/SPLIT {out[precision]['pallas'] / out[precision]['split']:.2f}",
                flush=True,
            )
        rec["field_mode_evaluations_per_s"] = out

    def solver_rate():
        out = {}
        t_end = dt * args.steps
        for precision in ("float64", "float32"):
            variants = {
                "pallas_fused": (field.with_layout("pallas"), jaxcr.Boris(dt=dt)),
                "pallas_per_step": (field.with_layout("pallas"), jaxcr.Boris(dt=dt, fused=False)),
                "split_per_step": (field.with_layout("split"), jaxcr.Boris(dt=dt, fused=False)),
            }
            fns = {
                name: lambda f=f.with_precision(precision), s=s: jaxcr.backtrack(
                    f, directions, [t_end], solver=s
                ).positions.block_until_ready()
                for name, (f, s) in variants.items()
            }
            times = alternating(fns, args.rounds)
            out[precision] = {k: dict(particle_steps_per_s=P * args.steps / t, wall_s=t) for k, t in times.items()}
            for k, v in out[precision].items():
                v["mode_evaluations_per_s"] = v["particle_steps_per_s"] * N
                rates[("solver", precision, k)] = v["mode_evaluations_per_s"]
            print(
                f"Boris N={N}, {P} particles, {args.steps} steps of {dt:.4g}/Ω, {precision}: "
                + ", ".join(f"{k} {v['particle_steps_per_s']:.3g}" for k, v in out[precision].items())
                + " particle-steps/s",
                flush=True,
            )
        rec["solver"] = out

    def tiling():
        out = []
        modes = (field.wavevectors, field.polarisations, field.phases)
        for precision in ("float64", "float32"):
            for bp, bm, warps in ((128, 8, 4), (256, 8, 8), (128, 4, 4), (64, 8, 2), (128, 16, 4), (128, 32, 4)):
                if sections.left() < 30:
                    break
                t = pallas_kernel.Tiling(bp, bm, warps)
                fld = jax.jit(lambda r, t=t: pallas_kernel.plane_wave_field(r, *modes, precision, t))
                steps = 200
                bor = jax.jit(
                    lambda r, u, t=t: pallas_kernel.boris_advance(
                        r, u, dt, steps, *modes, field.regular_field, precision=precision, tiling=t
                    )
                )
                times = alternating(
                    {
                        "field": lambda: fld(points).block_until_ready(),
                        "boris": lambda: bor(jnp.zeros_like(directions), directions)[0].block_until_ready(),
                    },
                    2,
                )
                entry = dict(
                    precision=precision,
                    block_particles=bp,
                    block_modes=bm,
                    num_warps=warps,
                    field_mode_evaluations_per_s=P * N / times["field"],
                    boris_mode_evaluations_per_s=P * steps * N / times["boris"],
                )
                out.append(entry)
                print("tiling:", entry, flush=True)
        rec["tiling"] = out

    def roofline():
        device = jax.devices()[0]
        capability = str(getattr(device, "compute_capability", ""))
        sms = getattr(device, "core_count", None)
        clock_mhz = _max_sm_clock_mhz(rec["nvidia_smi"])
        per_clock = PER_SM_PER_CLOCK.get(capability)
        if not (sms and clock_mhz and per_clock):
            rec["roofline"] = dict(error=f"unknown card: capability {capability!r}, SMs {sms}, clock {clock_mhz} MHz")
            return
        clocks = sms * clock_mhz * 1e6  # SM-clocks per second
        out: dict = dict(
            compute_capability=capability,
            sms=sms,
            max_sm_clock_mhz=clock_mhz,
            float64_tflops_fma=2 * per_clock["float64"] * clocks / 1e12,
            float32_tflops_fma=2 * per_clock["float32"] * clocks / 1e12,
            instructions_per_mode_evaluation=INSTRUCTIONS,
            ceiling={},
            achieved_fraction={},
        )
        for precision, counts in INSTRUCTIONS.items():
            per_sm, pipe = ceiling_per_clock_per_sm(counts, per_clock)
            out["ceiling"][precision] = dict(mode_evaluations_per_s=per_sm * clocks, bound_by=pipe)
        for (kind, precision, name), rate in rates.items():
            ceiling = out["ceiling"][precision]["mode_evaluations_per_s"]
            out["achieved_fraction"][f"{kind}/{precision}/{name}"] = rate / ceiling
        rec["roofline"] = out
        print("roofline:", out, flush=True)

    def paper():
        out = []
        for precision in ("float32", "float64"):
            if sections.left() < 60:
                break
            with tempfile.TemporaryDirectory() as tmp:
                cmd = [sys.executable, "-m", "jaxcr", "fig2", "--preset", "paper", "--t-max", "10000"]
                cmd += ["--no-progress", "--out", tmp, "--field-precision", precision]
                t = time.perf_counter()
                done = subprocess.run(cmd, capture_output=True, text=True, timeout=max(sections.left() - 20, 30))
                wall = time.perf_counter() - t
            entry = dict(precision=precision, t_max=1e4, wall_s_fresh_process=wall, returncode=done.returncode)
            entry["tail"] = (done.stdout + done.stderr)[-1500:]
            out.append(entry)
            print(f"paper preset to ΩT = 1e4, {precision}, fresh process: {wall:.1f} s (rc {done.returncode})")
        rec["paper_preset"] = out

    def campaign():
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp) / "campaign"
            base = [sys.executable, "-m", "jaxcr", "campaign"]
            subprocess.run([*base, "create", str(folder)], check=True, capture_output=True, timeout=120)
            t = time.perf_counter()
            try:
                subprocess.run([*base, "run", str(folder), "--quiet"], timeout=max(sections.left() - 30, 30))
                finished = True
            except subprocess.TimeoutExpired:
                finished = False
            wall = time.perf_counter() - t
            points = len(list((folder / "points").glob("point_*.npz")))
        rec["campaign"] = dict(
            design="5 x 5 (σ² 0.3-3, ρ 0.05-0.2), nside 32, N_B 32, N 32, ΩT 25-150, IceCube and HAWC analyses",
            points_done=points,
            finished=finished,
            wall_s=wall,
            s_per_point=wall / max(points, 1),
        )
        print("campaign:", rec["campaign"], flush=True)

    def profile():
        fused = field  # AUTO: the Pallas kernel on a GPU where it passed its check
        split = jax.jit(lambda r: field.with_layout("split").turbulent(r))
        go = lambda: jaxcr.backtrack(fused, directions, [dt * 200], solver=jaxcr.Boris(dt=dt)).positions
        go().block_until_ready()
        split(points).block_until_ready()
        with jax.profiler.trace(str(args.out / "profile")):
            for _ in range(3):
                go().block_until_ready()
                split(points).block_until_ready()
        rec["profile_files"] = [str(p) for p in (args.out / "profile").rglob("*") if p.is_file()]

    sections.run("check", check, 40)
    sections.run("field", field_rate, 30)
    sections.run("solver", solver_rate, 60)
    sections.run("tiling", tiling, 40)
    sections.run("roofline", roofline, 0)
    sections.run("paper", paper, 70)
    sections.run("campaign", campaign, 90)
    sections.run("profile", profile, 30)
    rec["wall_s"] = args.budget - sections.left()
    sections.save()
    print(f"total {rec['wall_s']:.0f} s", flush=True)


def _max_sm_clock_mhz(smi: str) -> float | None:
    for field in smi.split(","):
        if "MHz" in field:
            return float(field.replace("MHz", "").strip())
    return None


if __name__ == "__main__":
    main()
