"""jaxcr's Boris backtracking against the established C++ code (CRPropa 3) and a hand-written C
loop, side by side on the identical field and initial states, in alternation.

    python benchmarks/bench_vs_crpropa.py [--crpropa /path/to/CRPropa3] [--particles 1000]
        [--steps 20000] [--pairs 5] [--threads 1 2] [--modes 256]

Workload (the reference C++ benchmark's): one plane-wave field of N modes, λ_min = 0.1 r_L,
λ_max = 1000 r_L, B0 = 1 along z; Boris steps of λ_min/20 = 0.005/Ω; the same initial states
(r = 0, random directions, seed 3) for every code; each code uses ``--threads`` cores (jaxcr and
the C codes pinned to the same cores with ``taskset``). Per pair of runs it prints
particle-steps/s of every code and the ratios, then the medians.

The field: with ``--crpropa`` (a CRPropa 3 source tree built with ``cmake -DSIMD_EXTENSIONS=native
-DFAST_WAVES=ON`` into ``build/``; this script builds nothing of CRPropa) it is CRPropa's own
``PlaneWaveTurbulence`` (its Kolmogorov spectrum, seed 42), whose modes a small driver (compiled
here against that tree, source below) exports to jaxcr as a mode table; CRPropa is then timed
with its own field in the same Boris loop. Without it, jaxcr's field of the paper (seed 42).
The C loop is the best hand-written form of jaxcr's own sum (same polynomial, compiled with
-O3 -march=native, OpenMP): the ceiling for this CPU. Field errors are printed against the exact
sum (``jnp.cos``) at 4096 points: jaxcr's two accuracy levels and CRPropa's SIMD cosine.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

DT = 0.005  # λ_min/20 in 1/Ω

CRPROPA_DRIVER = r"""
// Exports CRPropa's PlaneWaveTurbulence modes (its private members, read through the macro
// below) and times its field in a Boris loop. Lengths in L = 1e16 m (= r_L), B in tesla (= B0).
#include <sstream>
#include <iostream>
#include <string>
#include <vector>
#include <map>
#include <memory>
#include <stdexcept>
#include <cmath>
#include <limits>
#include <algorithm>
#include <fstream>
#include <mutex>
#include <list>
#include <set>
#include <immintrin.h>
#define private public
#include "crpropa/magneticField/turbulentField/PlaneWaveTurbulence.h"
#undef private
#include <omp.h>
#include <cstdio>
#include <cstdlib>
#include <cstring>
using namespace crpropa;
int main(int argc, char** argv) {
  const int N = atoi(argv[1]), seed = atoi(argv[2]);
  const double L = 1e16;
  TurbulenceSpectrum spec(1.0, 0.1 * L, 1000 * L, 10 * L);
  PlaneWaveTurbulence field(spec, N, seed);
  const char* mode = argv[3];
  if (!strcmp(mode, "export")) {
    FILE* f = fopen(argv[4], "w");
    for (int i = 0; i < N; ++i) {
      Vector3d k = field.kappa[i] * (field.k[i] * L), e = field.xi[i] * field.Ak[i];
      fprintf(f, "%.17g %.17g %.17g %.17g %.17g %.17g %.17g\n", k.x, k.y, k.z, e.x, e.y, e.z, field.beta[i]);
    }
    fclose(f);
    return 0;
  }
  std::vector<double> s;
  FILE* in = fopen(argv[4], "r");
  for (double v; fscanf(in, "%lf", &v) == 1;) s.push_back(v);
  fclose(in);
  FILE* out = fopen(argv[5], "w");
  if (!strcmp(mode, "field")) {
    for (size_t p = 0; p < s.size() / 3; ++p) {
      Vector3d b = field.getField(Vector3d(s[3 * p], s[3 * p + 1], s[3 * p + 2]) * L);
      fprintf(out, "%.17g %.17g %.17g\n", b.x, b.y, b.z);
    }
    fclose(out);
    return 0;
  }
  const long steps = atol(argv[6]);
  const double h = atof(argv[7]);
  const long P = s.size() / 6;
  const double t0 = omp_get_wtime();
#pragma omp parallel for schedule(dynamic, 8)
  for (long p = 0; p < P; ++p) {
    double* y = &s[6 * p];
    Vector3d r(y[0], y[1], y[2]), u(y[3], y[4], y[5]);
    for (long n = 0; n < steps; ++n) {  // backtracking: charge -1 (jaxcr.dynamics.boris_step)
      Vector3d rh = r + u * (0.5 * h);
      Vector3d t = (field.getField(rh * L) + Vector3d(0, 0, 1)) * (-0.5 * h);
      Vector3d up = u + u.cross(t);
      u = u + up.cross(t * (2.0 / (1.0 + t.dot(t))));
      r = rh + u * (0.5 * h);
    }
    y[0] = r.x; y[1] = r.y; y[2] = r.z; y[3] = u.x; y[4] = u.y; y[5] = u.z;
  }
  const double elapsed = omp_get_wtime() - t0;
  for (long p = 0; p < P; ++p) fprintf(out, "%.17g %.17g %.17g\n", s[6 * p], s[6 * p + 1], s[6 * p + 2]);
  fclose(out);
  printf("%.9g\n", elapsed);
  return 0;
}
"""

C_LOOP = r"""
// jaxcr's mode sum (full accuracy: phase in turns reduced exactly, 9-term polynomial of cos(pi f),
// cos(2 pi f) = 2c^2 - 1) and the same Boris step, by hand: the ceiling of this CPU.
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <math.h>
int main(int argc, char** argv) {
  FILE* f = fopen(argv[1], "r");  // modes: kx ky kz ex ey ez beta per line (jaxcr units)
  double buf[7 * 4096]; int N = 0;
  while (N < 4096 && fscanf(f, "%lf %lf %lf %lf %lf %lf %lf", buf + 7 * N, buf + 7 * N + 1, buf + 7 * N + 2,
                            buf + 7 * N + 3, buf + 7 * N + 4, buf + 7 * N + 5, buf + 7 * N + 6) == 7) ++N;
  fclose(f);
  const double TP = 6.283185307179586;
  double *kx = calloc(N, 8), *ky = calloc(N, 8), *kz = calloc(N, 8), *b = calloc(N, 8), *ex = calloc(N, 8),
         *ey = calloc(N, 8), *ez = calloc(N, 8);
  for (int i = 0; i < N; ++i) { kx[i] = buf[7*i] / TP; ky[i] = buf[7*i+1] / TP; kz[i] = buf[7*i+2] / TP;
    ex[i] = buf[7*i+3]; ey[i] = buf[7*i+4]; ez[i] = buf[7*i+5]; b[i] = buf[7*i+6] / TP; }
  double C[9]; for (int j = 0; j < 9; ++j) { double fct = 1; for (int i = 1; i <= 2 * j; ++i) fct *= i;
    C[j] = ((j % 2) ? -1 : 1) * pow(M_PI, 2 * j) / fct; }
  FILE* in = fopen(argv[2], "r"); long P = 0; double* s = malloc(sizeof(double) * 6 * 1000000);
  while (fscanf(in, "%lf", s + P) == 1) ++P;
  fclose(in); P /= 6;
  const long steps = atol(argv[4]); const double h = atof(argv[5]);
  double t0 = omp_get_wtime();
  #pragma omp parallel for schedule(dynamic, 8)
  for (long p = 0; p < P; ++p) {
    double* y = s + 6 * p; double r[3] = {y[0], y[1], y[2]}, u[3] = {y[3], y[4], y[5]};
    for (long n = 0; n < steps; ++n) {
      double x0 = r[0] + 0.5 * h * u[0], x1 = r[1] + 0.5 * h * u[1], x2 = r[2] + 0.5 * h * u[2];
      double bx = 0, by = 0, bz = 0;
      #pragma omp simd reduction(+:bx,by,bz)
      for (int i = 0; i < N; ++i) {
        double t = kx[i] * x0 + ky[i] * x1 + kz[i] * x2 + b[i];
        double fr = t - ((t + 6755399441055744.0) - 6755399441055744.0), w = fr * fr, c = C[8];
        for (int j = 7; j >= 0; --j) c = c * w + C[j];
        c = 2 * c * c - 1; bx += ex[i] * c; by += ey[i] * c; bz += ez[i] * c;
      }
      double t[3] = {-0.5 * h * bx, -0.5 * h * by, -0.5 * h * (bz + 1.0)};
      double up[3] = {u[0] + u[1]*t[2] - u[2]*t[1], u[1] + u[2]*t[0] - u[0]*t[2], u[2] + u[0]*t[1] - u[1]*t[0]};
      double k2 = 2.0 / (1.0 + t[0]*t[0] + t[1]*t[1] + t[2]*t[2]);
      double sv[3] = {t[0] * k2, t[1] * k2, t[2] * k2};
      u[0] += up[1]*sv[2] - up[2]*sv[1]; u[1] += up[2]*sv[0] - up[0]*sv[2]; u[2] += up[0]*sv[1] - up[1]*sv[0];
      r[0] = x0 + 0.5 * h * u[0]; r[1] = x1 + 0.5 * h * u[1]; r[2] = x2 + 0.5 * h * u[2];
    }
    y[0] = r[0]; y[1] = r[1]; y[2] = r[2];
  }
  double elapsed = omp_get_wtime() - t0;
  FILE* out = fopen(argv[3], "w");
  for (long p = 0; p < P; ++p) fprintf(out, "%.17g %.17g %.17g\n", s[6*p], s[6*p+1], s[6*p+2]);
  fclose(out);
  printf("%.9g\n", elapsed);
  return 0;
}
"""


def compile_programs(tmp: Path, crpropa: Path | None) -> dict:
    programs = {}
    src = tmp / "c_loop.c"
    src.write_text(C_LOOP)
    exe = tmp / "c_loop"
    subprocess.run(["gcc", "-O3", "-march=native", "-fopenmp", str(src), "-o", str(exe), "-lm"], check=True)
    programs["c_loop"] = exe
    if crpropa is not None:
        src = tmp / "crpropa_driver.cc"
        src.write_text(CRPROPA_DRIVER)
        exe = tmp / "crpropa_driver"
        includes = [crpropa / "include", crpropa / "build" / "include", crpropa / "libs" / "kiss" / "include",
                    crpropa / "libs" / "HepPID" / "include"]  # fmt: skip
        cmd = ["g++", "-O3", "-march=native", "-fopenmp", "-DFAST_WAVES", "-DHAVE_SIMD", str(src), "-o", str(exe)]
        cmd += [f"-I{p}" for p in includes] + [f"-L{crpropa / 'build'}", "-lcrpropa", f"-Wl,-rpath,{crpropa / 'build'}"]
        subprocess.run(cmd, check=True)
        programs["crpropa"] = exe
    return programs


def worker(args) -> None:
    """One thread count: runs in a process pinned to ``args.threads`` cores; prints JSON."""
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    import numpy as np
    from _machine import describe

    import jaxcr
    from jaxcr import native

    tmp = Path(args.tmp)
    modes = np.loadtxt(tmp / "modes.txt")
    field = jaxcr.PlaneWaveTurbulence.from_modes(modes[:, :3], modes[:, 3:6], modes[:, 6])
    fields = {"jaxcr full": field, "jaxcr fast": field.with_precision("fast")}
    rng = np.random.default_rng(3)
    n = rng.normal(size=(args.particles, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    states = np.concatenate([np.zeros_like(n), n], axis=1)  # backtracking launches along +n̂ from r = 0
    np.savetxt(tmp / "states.txt", states)
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), OMP_PROC_BIND="true")
    report: dict = {"machine": describe(), "threads": args.threads, "instruction_set": native.instruction_set()}

    def run_c(name, steps):
        exe = str(tmp / ("c_loop" if name == "c loop" else "crpropa_driver"))
        out = tmp / f"{name.replace(' ', '_')}.txt"
        if name == "c loop":
            cmd = [exe, str(tmp / "modes.txt"), str(tmp / "states.txt"), str(out), str(steps), str(DT)]
        else:
            cmd = [exe, str(args.modes), "42", "run", str(tmp / "states.txt"), str(out), str(steps), str(DT)]
        elapsed = float(subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout)
        return elapsed, np.loadtxt(out)

    def run_jaxcr(name, steps):
        t = time.perf_counter()
        r = jaxcr.backtrack(fields[name], n, [DT * steps], solver=jaxcr.Boris(dt=DT)).positions[0]
        r = np.asarray(r.block_until_ready())
        return time.perf_counter() - t, r

    codes = list(fields) + ["c loop"] + (["crpropa"] if (tmp / "crpropa_driver").exists() else [])
    run = lambda name, steps: run_jaxcr(name, steps) if name.startswith("jaxcr") else run_c(name, steps)
    # accuracy: the field against the exact sum, and 100-step orbits against each other
    probe = rng.uniform(-100, 100, size=(4096, 3))
    exact = np.asarray(native.reference_field(jnp.asarray(probe), field.wavevectors, field.polarisations, field.phases))
    errors = {name: float(np.max(np.abs(np.asarray(f.turbulent(probe)) - exact))) for name, f in fields.items()}
    if "crpropa" in codes:
        np.savetxt(tmp / "probe.txt", probe)
        subprocess.run([str(tmp / "crpropa_driver"), str(args.modes), "42", "field", str(tmp / "probe.txt"),
                        str(tmp / "probe_b.txt")], check=True)  # fmt: skip
        errors["crpropa"] = float(np.max(np.abs(np.loadtxt(tmp / "probe_b.txt") - exact)))
    report["field_error_vs_exact_B0"] = errors
    short = {name: run(name, 100)[1] for name in codes}  # also compiles jaxcr's solver
    report["orbit_difference_100_steps_rL"] = {
        name: float(np.max(np.abs(short[name] - short["jaxcr full"]))) for name in codes if name != "jaxcr full"
    }
    for name in fields:
        run(name, args.steps)  # compile for this number of steps
    pairs = []
    for _ in range(args.pairs):
        rates = {name: args.particles * args.steps / run(name, args.steps)[0] for name in codes}
        pairs.append(rates)
        print(json.dumps({"pair": rates}), flush=True)
    report["pairs"] = pairs
    print(json.dumps({"report": report}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--crpropa", type=Path, help="CRPropa 3 source tree with a FAST_WAVES build in build/")
    ap.add_argument("--modes", type=int, default=256)
    ap.add_argument("--particles", type=int, default=1000)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--tmp", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    if args.crpropa is not None and not (args.crpropa / "build" / "libcrpropa.so").exists():
        ap.error(f"--crpropa {args.crpropa}: no build/libcrpropa.so there (build CRPropa with FAST_WAVES first)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        compile_programs(tmp, args.crpropa)
        if args.crpropa is not None:
            subprocess.run([str(tmp / "crpropa_driver"), str(args.modes), "42", "export", str(tmp / "modes.txt")],
                           check=True)  # fmt: skip
        else:
            import numpy as np

            import jaxcr

            f = jaxcr.PlaneWaveTurbulence.sample(42, jaxcr.TurbulenceParameters.paper(n_modes=args.modes))
            np.savetxt(tmp / "modes.txt", np.concatenate([f.wavevectors, f.polarisations, f.phases[:, None]], 1))
        summary = {}
        for threads in args.threads:
            cores = ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:threads])
            cmd = ["taskset", "-c", cores, sys.executable, __file__, "--worker", "--tmp", tmp_name,
                   "--threads", str(threads), "--modes", str(args.modes), "--particles", str(args.particles),
                   "--steps", str(args.steps), "--pairs", str(args.pairs)]  # fmt: skip
            out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
            report = next(json.loads(line)["report"] for line in out.splitlines() if '"report"' in line)
            print(f"{report['machine']}; native kernel: {report['instruction_set']}")
            print(f"threads {threads}: N = {args.modes} modes, {args.particles} particles, {args.steps} Boris steps "
                  f"of {DT}/Ω (λ_min/20), cores {cores}")  # fmt: skip
            print(
                "  field error vs exact sum (B0): "
                + ", ".join(f"{k} {v:.1e}" for k, v in report["field_error_vs_exact_B0"].items())
            )
            print("  max orbit difference to jaxcr full after 100 steps (r_L): "
                  + ", ".join(f"{k} {v:.1e}" for k, v in report["orbit_difference_100_steps_rL"].items()))  # fmt: skip
            pairs = report["pairs"]
            names = list(pairs[0])
            for i, rates in enumerate(pairs):
                line = ", ".join(f"{k} {v:.3g}" for k, v in rates.items())
                ratios = ", ".join(f"{k}/{ref} {rates[k] / rates[ref]:.2f}" for ref in names[2:] for k in names[:2])
                print(f"  pair {i + 1}: particle-steps/s {line}; {ratios}")
            med = {k: statistics.median(p[k] for p in pairs) for k in names}
            print("  median particle-steps/s: " + ", ".join(f"{k} {v:.3g}" for k, v in med.items()))
            for ref in names[2:]:
                print("  median ratio: " + ", ".join(
                    f"{k}/{ref} {statistics.median(p[k] / p[ref] for p in pairs):.2f}" for k in names[:2]))  # fmt: skip
            summary[threads] = med
        if len(summary) > 1 and 1 in summary:
            for threads, med in summary.items():
                if threads > 1:
                    eff = {k: med[k] / (threads * summary[1][k]) for k in med}
                    print(f"parallel efficiency 1 -> {threads} threads: "
                          + ", ".join(f"{k} {v:.0%}" for k, v in eff.items()))  # fmt: skip


if __name__ == "__main__":
    main()
