"""The machine's own ceiling for the plane-wave sum: a hand-written C loop, for comparison.

    python benchmarks/bench_native_ceiling.py [--modes 256] [--points 12288]

Compiles (gcc -O3 -march=native -ffast-math -fopenmp) and times the same sum jaxcr evaluates,
Σ_n E_n cos(k_n·r + β_n), with the phase in float64 reduced to [-π, π] in turns, then cos by a
polynomial: (a) all float64, (b) the polynomial and the sum in float32. OpenMP over points, 1 and
2 threads. It is a yardstick for what this CPU can do (the reference figures were
measured on a different, AVX-512 machine), not part of jaxcr. Needs gcc; prints the machine.
"""

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

SOURCE = r"""
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <omp.h>
static const double PI = 3.14159265358979323846;
static void field64(int P, int N, const double* r, const double* k, const double* b, const double* e, double* out,
                    const double* C) {
  #pragma omp parallel for schedule(static)
  for (int p = 0; p < P; ++p) {
    double x = r[3*p], y = r[3*p+1], z = r[3*p+2], bx = 0, by = 0, bz = 0;
    #pragma omp simd reduction(+:bx,by,bz)
    for (int n = 0; n < N; ++n) {
      double t = k[n]*x + k[N+n]*y + k[2*N+n]*z + b[n];
      double f = t - __builtin_round(t), u = f*f, c = C[9];
      for (int j = 8; j >= 0; --j) c = c*u + C[j];
      c = 2*c*c - 1;
      bx += c*e[n]; by += c*e[N+n]; bz += c*e[2*N+n];
    }
    out[3*p] = bx; out[3*p+1] = by; out[3*p+2] = bz;
  }
}
static void field32(int P, int N, const double* r, const double* k, const double* b, const float* e, double* out,
                    const float* C) {
  #pragma omp parallel for schedule(static)
  for (int p = 0; p < P; ++p) {
    double x = r[3*p], y = r[3*p+1], z = r[3*p+2];
    float bx = 0, by = 0, bz = 0;
    #pragma omp simd reduction(+:bx,by,bz)
    for (int n = 0; n < N; ++n) {
      double t = k[n]*x + k[N+n]*y + k[2*N+n]*z + b[n];
      float f = (float)(t - __builtin_round(t)), u = f*f, c = C[6];
      for (int j = 5; j >= 0; --j) c = c*u + C[j];
      c = 2*c*c - 1;
      bx += c*e[n]; by += c*e[N+n]; bz += c*e[2*N+n];
    }
    out[3*p] = bx; out[3*p+1] = by; out[3*p+2] = bz;
  }
}
int main(int argc, char** argv) {
  int P = atoi(argv[1]), N = atoi(argv[2]), reps = 20;
  double C[10]; float Cf[7];
  for (int j = 0; j < 10; ++j) { double f = 1; for (int i = 1; i <= 2*j; ++i) f *= i;
    C[j] = ((j % 2) ? -1 : 1) * pow(PI, 2*j) / f; if (j < 7) Cf[j] = (float)C[j]; }
  double *r = malloc(sizeof(double)*3*P), *out = malloc(sizeof(double)*3*P), *ref = malloc(sizeof(double)*3*P);
  double *k = malloc(sizeof(double)*3*N), *b = malloc(sizeof(double)*N), *e = malloc(sizeof(double)*3*N);
  float *ef = malloc(sizeof(float)*3*N);
  srand(1);
  for (int i = 0; i < 3*P; ++i) r[i] = 200.0*rand()/RAND_MAX - 100;
  for (int i = 0; i < 3*N; ++i) { k[i] = 10.0*rand()/RAND_MAX - 5; e[i] = ef[i] = 0.2*rand()/RAND_MAX - 0.1; }
  for (int n = 0; n < N; ++n) b[n] = (double)rand()/RAND_MAX;
  for (int variant = 0; variant < 2; ++variant) {
    double best = 1e30;
    for (int it = 0; it < 3; ++it) {
      double t0 = omp_get_wtime();
      for (int rep = 0; rep < reps; ++rep) {
        if (variant == 0) field64(P, N, r, k, b, e, out, C); else field32(P, N, r, k, b, ef, out, Cf);
      }
      double t = (omp_get_wtime() - t0) / reps; if (t < best) best = t;
    }
    if (variant == 0) for (int i = 0; i < 3*P; ++i) ref[i] = out[i];
    double err = 0; for (int i = 0; i < 3*P; ++i) err = fmax(err, fabs(out[i] - ref[i]));
    printf("%s %d %.6g %.3g\n", variant ? "float32" : "float64", omp_get_max_threads(), (double)P*N/best, err);
  }
  return 0;
}
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", type=int, default=256)
    ap.add_argument("--points", type=int, default=12288)
    args = ap.parse_args()
    from _machine import describe

    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "plane_waves.c", Path(tmp) / "plane_waves"
        src.write_text(SOURCE)
        subprocess.run(
            ["gcc", "-O3", "-march=native", "-ffast-math", "-fopenmp", str(src), "-o", str(exe), "-lm"], check=True
        )
        for threads in (1, 2):
            env = dict(os.environ, OMP_NUM_THREADS=str(threads))
            out = subprocess.run(
                [str(exe), str(args.points), str(args.modes)], capture_output=True, text=True, env=env, check=True
            ).stdout
            for line in out.splitlines():
                precision, nthreads, rate, err = line.split()
                print(
                    f"C loop, {precision} polynomial and sum, {nthreads} thread(s), N={args.modes}, "
                    f"{args.points} points: {float(rate):.3g} mode-evaluations/s (max |ΔB| vs float64 {err})"
                )


if __name__ == "__main__":
    main()
