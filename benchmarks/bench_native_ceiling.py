"""The field alone: jaxcr's mode sum inside XLA against the best hand-written C loop of the same
accuracy, in alternation.

    python benchmarks/bench_native_ceiling.py [--modes 256] [--points 12288] [--pairs 5]

The C loop (compiled here with gcc -O3 -march=native -fopenmp, OpenMP threads over points) is
the kernel's algorithm as a standalone C program: 8-lane vectors, the phase in half-turns reduced
exactly with its sign, cos by the kernel's polynomial (8 terms: full, 6: fast; the coefficients
are read from jaxcr/native/plane_waves_kernels.cc), the three sums in float64. The mode count
must be a multiple of 8. Each
pair times the C loop, then jaxcr's ``PlaneWaveTurbulence.turbulent`` (jitted, native layout) and
the pure-JAX layout (MATMUL), on the same field and points; it prints mode-evaluations/s and the
ratios. Needs gcc; prints the machine.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import jax

jax.config.update("jax_enable_x64", True)

SOURCE = r"""
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdint.h>
#include <omp.h>
typedef double vd __attribute__((vector_size(64)));
typedef uint64_t vu __attribute__((vector_size(64)));
static const double FULL[8] = {FULL_COEFFS};
static const double FAST[6] = {FAST_COEFFS};
#define FIELD(NAME, C, T)                                                                                  \
  static void NAME(int P, int N, const double* r, const double* k, const double* b, const double* e,     \
                   double* out) {                                                                        \
    _Pragma("omp parallel for schedule(static)")                                                         \
    for (int p = 0; p < P; ++p) {                                                                        \
      vd ax = {0}, ay = {0}, az = {0};                                                                   \
      for (int n = 0; n < N; n += 8) {                                                                   \
        vd kx, ky, kz, bb, ex, ey, ez;                                                                   \
        memcpy(&kx, k + n, 64); memcpy(&ky, k + N + n, 64); memcpy(&kz, k + 2 * N + n, 64);             \
        memcpy(&bb, b + n, 64); memcpy(&ex, e + n, 64); memcpy(&ey, e + N + n, 64);                     \
        memcpy(&ez, e + 2 * N + n, 64);                                                                  \
        vd t = bb + kx * r[3 * p] + ky * r[3 * p + 1] + kz * r[3 * p + 2];                              \
        vd sh = t + 6755399441055744.0, s = t - (sh - 6755399441055744.0), u = s * s, c = u * 0 + C[T - 1]; \
        for (int j = T - 2; j >= 0; --j) c = c * u + C[j];                                               \
        vu bits = (vu)c ^ ((vu)sh << 63);                                                                \
        c = (vd)bits;                                                                                    \
        ax += ex * c; ay += ey * c; az += ez * c;                                                        \
      }                                                                                                  \
      double bx = 0, by = 0, bz = 0;                                                                     \
      for (int l = 0; l < 8; ++l) { bx += ax[l]; by += ay[l]; bz += az[l]; }                             \
      out[3 * p] = bx; out[3 * p + 1] = by; out[3 * p + 2] = bz;                                         \
    }                                                                                                    \
  }
FIELD(field_full, FULL, 8)
FIELD(field_fast, FAST, 6)
int main(int argc, char** argv) {  /* modes.bin points.bin level reps out.bin -> seconds per evaluation */
  FILE* f = fopen(argv[1], "rb"); int N; fread(&N, 4, 1, f);
  double *k = malloc(24*N), *b = malloc(8*N), *e = malloc(24*N);
  fread(k, 8, 3*N, f); fread(b, 8, N, f); fread(e, 8, 3*N, f); fclose(f);
  f = fopen(argv[2], "rb"); int P; fread(&P, 4, 1, f); double *r = malloc(24*P), *out = malloc(24*P);
  fread(r, 8, 3*P, f); fclose(f);
  int full = atoi(argv[3]) == 0, reps = atoi(argv[4]);
  void (*fn)(int, int, const double*, const double*, const double*, const double*, double*) =
      full ? field_full : field_fast;
  fn(P, N, r, k, b, e, out);
  double t0 = omp_get_wtime();
  for (int i = 0; i < reps; ++i) fn(P, N, r, k, b, e, out);
  printf("%.9g\n", (omp_get_wtime() - t0) / reps);
  f = fopen(argv[5], "wb"); fwrite(out, 8, 3*P, f); fclose(f);
  return 0;
}
"""


def kernel_coefficients(name: str) -> str:
    import jaxcr.native

    source = (Path(jaxcr.native.__file__).parent / "plane_waves_kernels.cc").read_text()
    return re.search(rf"constexpr double {name}\[\d+\] = \{{(.*?)\}};", source, re.S).group(1).strip().rstrip(",")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--modes", type=int, default=256)
    ap.add_argument("--points", type=int, default=12288)
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    import jax.numpy as jnp
    import numpy as np
    from _machine import describe

    import jaxcr

    print(describe(), f"; native kernel: {jaxcr.native.instruction_set()}")
    field = jaxcr.PlaneWaveTurbulence.sample(42, jaxcr.TurbulenceParameters.paper(n_modes=args.modes))
    points = np.random.default_rng(1).uniform(-100.0, 100.0, size=(args.points, 3))
    exact = np.asarray(
        jaxcr.native.reference_field(jnp.asarray(points), field.wavevectors, field.polarisations, field.phases)
    )
    work = args.points * args.modes
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        src, exe = tmp_path / "field.c", tmp_path / "field"
        source = SOURCE.replace("FULL_COEFFS", kernel_coefficients("kCosFull"))
        src.write_text(source.replace("FAST_COEFFS", kernel_coefficients("kCosFast")))
        subprocess.run(["gcc", "-O3", "-march=native", "-fopenmp", str(src), "-o", str(exe), "-lm"], check=True)
        k_half = np.asarray(field.wavevectors) / np.pi  # half-turns, as the kernel takes them
        with open(tmp_path / "modes.bin", "wb") as f:
            f.write(np.int32(args.modes).tobytes() + k_half.T.copy().tobytes())
            f.write((np.asarray(field.phases) / np.pi).tobytes() + np.asarray(field.polarisations).T.copy().tobytes())
        with open(tmp_path / "points.bin", "wb") as f:
            f.write(np.int32(args.points).tobytes() + points.tobytes())
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        for level, precision in ((0, "float64"), (1, "fast")):
            native = field.with_precision(precision).with_layout("native")
            xla = field.with_precision(precision).with_layout("matmul")
            run_native = jax.jit(lambda r, f=native: f.turbulent(r))
            run_xla = jax.jit(lambda r, f=xla: f.turbulent(r))
            pts = jnp.asarray(points)
            b_native = np.asarray(run_native(pts).block_until_ready())
            run_xla(pts).block_until_ready()

            def timed(fn, reps=20):
                t = time.perf_counter()
                for _ in range(reps):
                    fn(pts).block_until_ready()
                return (time.perf_counter() - t) / reps

            rates = []
            for _ in range(args.pairs):
                cmd = [str(exe), str(tmp_path / "modes.bin"), str(tmp_path / "points.bin"), str(level), "20",
                       str(tmp_path / "out.bin")]  # fmt: skip
                c_time = float(subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout)
                rates.append((work / c_time, work / timed(run_native), work / timed(run_xla)))
            b_c = np.fromfile(tmp_path / "out.bin").reshape(-1, 3)
            c_rate, n_rate, x_rate = (statistics.median(r[i] for r in rates) for i in range(3))
            print(
                f"{precision}: N={args.modes}, {args.points} points, {args.threads} threads, {args.pairs} alternating "
                f"pairs (median mode-evaluations/s): C loop {c_rate:.3g}, jaxcr native {n_rate:.3g} "
                f"({statistics.median(r[1] / r[0] for r in rates):.0%} of the C loop), jaxcr pure-JAX {x_rate:.3g} "
                f"({statistics.median(r[2] / r[0] for r in rates):.0%}); max |b − exact|: C loop "
                f"{np.max(np.abs(b_c - exact)):.1e}, jaxcr {np.max(np.abs(b_native - exact)):.1e} B0"
            )


if __name__ == "__main__":
    main()
