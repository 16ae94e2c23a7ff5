// The vectorised mode sums (see plane_waves_kernels.h). Compiled once per instruction set with
// -DJAXCR_VARIANT=<name>; every symbol carries that name so that the variants link side by side.
#include "plane_waves_kernels.h"

#ifndef JAXCR_VARIANT
#error "compile with -DJAXCR_VARIANT=<name>"
#endif
#define JAXCR_CAT2(a, b) a##_##b
#define JAXCR_CAT(a, b) JAXCR_CAT2(a, b)

namespace jaxcr {
namespace {

constexpr double kPi = 3.14159265358979323846;
// 1.5·2^52: for |t| < 2^51, t + kRoundMagic holds round(t) (ties to even) in its low mantissa
// bits, exactly; subtracting it again gives round(t) as a double.
constexpr double kRoundMagic = 6755399441055744.0;

// cos(πs) on s ∈ [−1/2, 1/2] as a polynomial in u = s² (Chebyshev fits in u, max error 2.7e-15
// with 8 terms, 2.2e-10 with 6; tests/test_native.py refits them and checks their errors).
constexpr double kCosFull[8] = {
    9.99999999999998446e-01, -4.93480220054361496e+00, 4.05871212632804035e+00, -1.33526276605789018e+00,
    2.35330586938715752e-01, -2.58065240769178965e-02, 1.92784731825243840e-03, -1.00390572370139355e-04,
};
constexpr double kCosFast[6] = {
    9.99999999779904503e-01, -4.93480213707882864e+00, 4.05870915955638978e+00,
    -1.33521200305110277e+00, 2.34937313818030180e-01, -2.43963243510902719e-02,
};
// Taylor coefficients of cos(πs) and sin(πs)/(πs) in u = s² for the Jacobian: (−1)^j π^{2j}/(2j)!
// and (−1)^j π^{2j}/(2j+1)! (17 significant digits; truncation < 4e-15 on |s| ≤ 1/2).
constexpr double kCosTaylor[10] = {
    1.00000000000000000e+00, -4.93480220054467900e+00, 4.05871212641676848e+00, -1.33526276885458950e+00,
    2.35330630358893206e-01, -2.58068913900140612e-02, 1.92957430940392314e-03, -1.04638104924845705e-04,
    4.30306958703294729e-06, -1.38789524622137714e-07,
};
constexpr double kSinTaylor[11] = {
    1.00000000000000000e+00, -1.64493406684822641e+00, 8.11742425283353607e-01, -1.90751824122084226e-01,
    2.61478478176548001e-02, -2.34608103545582348e-03, 1.48428793031071005e-04, -6.97587366165638030e-06,
    2.53121740413702767e-07, -7.30471182221777535e-09, 1.71653847498214329e-10,
};

template <typename T, int Terms>
inline T horner(const double (&c)[Terms], T u) {
  T r = T(c[Terms - 1]);
  for (int j = Terms - 2; j >= 0; --j) r = r * u + T(c[j]);
  return r;
}

// The phase t in half-turns (t = φ/π) as s = t − round(t) ∈ [−1/2, 1/2] and the sign bit of
// (−1)^round(t): cos(πt) = ±cos(πs), sin(πt) = ±sin(πs).
struct Reduced {
  double s;
  uint64_t sign;
};

inline Reduced reduce_half_turns(double t) {
  const double shifted = t + kRoundMagic;
  const double s = t - (shifted - kRoundMagic);
  return {s, __builtin_bit_cast(uint64_t, shifted) << 63};
}

inline double with_sign(double x, uint64_t sign) {
  return __builtin_bit_cast(double, __builtin_bit_cast(uint64_t, x) ^ sign);
}

// Eight lanes of float64 as a GCC vector: one AVX-512 register, two AVX2 or four SSE2 registers.
typedef double vd __attribute__((vector_size(64)));
typedef uint64_t vu __attribute__((vector_size(64)));
constexpr int kLanes = 8;

inline vd load(const double* p) {
  vd v;
  __builtin_memcpy(&v, p, sizeof(v));
  return v;
}

inline double lane_sum(vd v) {
  double s = 0.0;
  for (int l = 0; l < kLanes; ++l) s += v[l];
  return s;
}

// δb at M points at once: the mode loop is shared (each mode block is loaded once for all M
// points) and the M independent chains keep the vector units busy.
template <int Terms, int M>
inline void field_block(const double (&coeffs)[Terms], const ModeTable& m, const double* positions, double* field) {
  vd acc[M][3];
  for (int j = 0; j < M; ++j) acc[j][0] = acc[j][1] = acc[j][2] = vd{};
  for (int64_t i = 0; i < m.n; i += kLanes) {
    const vd kx = load(m.kx + i), ky = load(m.ky + i), kz = load(m.kz + i), b = load(m.b + i);
    const vd ex = load(m.ex + i), ey = load(m.ey + i), ez = load(m.ez + i);
    for (int j = 0; j < M; ++j) {
      const vd t = b + kx * positions[3 * j] + ky * positions[3 * j + 1] + kz * positions[3 * j + 2];
      const vd shifted = t + kRoundMagic;
      const vd s = t - (shifted - kRoundMagic);
      const vu sign = reinterpret_cast<const vu&>(shifted) << 63;
      const vd u = s * s;
      vd c = vd{} + coeffs[Terms - 1];
      for (int k = Terms - 2; k >= 0; --k) c = c * u + coeffs[k];
      const vu signed_bits = reinterpret_cast<const vu&>(c) ^ sign;
      const vd cos_phase = reinterpret_cast<const vd&>(signed_bits);
      acc[j][0] += ex * cos_phase;
      acc[j][1] += ey * cos_phase;
      acc[j][2] += ez * cos_phase;
    }
  }
  for (int j = 0; j < M; ++j) {
    for (int c = 0; c < 3; ++c) field[3 * j + c] = lane_sum(acc[j][c]);
  }
}

constexpr int kBlock = 2;  // points per block

template <int Terms>
void field_sum(const double (&coeffs)[Terms], const ModeTable& m, const double* positions, double* field,
               int64_t count) {
  int64_t p = 0;
  for (; p + kBlock <= count; p += kBlock) field_block<Terms, kBlock>(coeffs, m, positions + 3 * p, field + 3 * p);
  for (; p < count; ++p) field_block<Terms, 1>(coeffs, m, positions + 3 * p, field + 3 * p);
}

// SINGLE: the polynomial (6 terms) and the sum in float32 after the float64 reduction.
void field_single(const ModeTable& m, const double* positions, double* field, int64_t count) {
  const int64_t n = m.n;
  const double *kx = m.kx, *ky = m.ky, *kz = m.kz, *b = m.b;
  const float *ex = m.fx, *ey = m.fy, *ez = m.fz;
  for (int64_t p = 0; p < count; ++p) {
    const double x = positions[3 * p], y = positions[3 * p + 1], z = positions[3 * p + 2];
    float bx = 0.0f, by = 0.0f, bz = 0.0f;
#pragma omp simd reduction(+ : bx, by, bz)
    for (int64_t i = 0; i < n; ++i) {
      const Reduced r = reduce_half_turns(b[i] + kx[i] * x + ky[i] * y + kz[i] * z);
      const float s = static_cast<float>(r.s);
      const float c = horner<float, 6>(kCosFast, s * s);
      const float cos_phase = (r.sign != 0) ? -c : c;
      bx += ex[i] * cos_phase;
      by += ey[i] * cos_phase;
      bz += ez[i] * cos_phase;
    }
    field[3 * p] = bx;
    field[3 * p + 1] = by;
    field[3 * p + 2] = bz;
  }
}

}  // namespace

extern "C" void JAXCR_CAT(jaxcr_plane_wave_field, JAXCR_VARIANT)(int32_t level, const ModeTable& modes,
                                                                  const double* positions, double* field,
                                                                  int64_t count) {
  if (level == kSingle) {
    field_single(modes, positions, field, count);
  } else if (level == kFast) {
    field_sum(kCosFast, modes, positions, field, count);
  } else {
    field_sum(kCosFull, modes, positions, field, count);
  }
}

namespace {

// One Boris step of each of M particles in δb + b0 (the step of jaxcr.dynamics.boris_step);
// particle j moves only if active[j].
template <int M>
inline void boris_block(int32_t level, const ModeTable& m, const double* b0, const double* half, const bool* active,
                        double* r, double* u) {
  double pos[3 * M], b[3 * M];
  for (int j = 0; j < M; ++j) {
    for (int c = 0; c < 3; ++c) pos[3 * j + c] = r[3 * j + c] + half[j] * u[3 * j + c];
  }
  if (level == kFast) {
    field_block<6, M>(kCosFast, m, pos, b);
  } else if (level == kFull) {
    field_block<8, M>(kCosFull, m, pos, b);
  } else {
    field_single(m, pos, b, M);
  }
  for (int j = 0; j < M; ++j) {
    if (!active[j]) continue;
    double* rj = r + 3 * j;
    double* uj = u + 3 * j;
    const double tx = half[j] * (b0[0] + b[3 * j]), ty = half[j] * (b0[1] + b[3 * j + 1]),
                 tz = half[j] * (b0[2] + b[3 * j + 2]);
    const double px = uj[0] + (uj[1] * tz - uj[2] * ty), py = uj[1] + (uj[2] * tx - uj[0] * tz),
                 pz = uj[2] + (uj[0] * ty - uj[1] * tx);
    const double denominator = 1.0 + (tx * tx + ty * ty + tz * tz);
    const double sx = 2.0 * tx / denominator, sy = 2.0 * ty / denominator, sz = 2.0 * tz / denominator;
    uj[0] = uj[0] + (py * sz - pz * sy);
    uj[1] = uj[1] + (pz * sx - px * sz);
    uj[2] = uj[2] + (px * sy - py * sx);
    for (int c = 0; c < 3; ++c) rj[c] = pos[3 * j + c] + half[j] * uj[c];
  }
}

template <int M>
void boris_particles(int32_t level, const ModeTable& m, const double* b0, const double* h, const int64_t* steps,
                     double* r, double* u) {
  double half[M];
  int64_t most = 0;
  for (int j = 0; j < M; ++j) {
    half[j] = 0.5 * h[j];
    most = steps[j] > most ? steps[j] : most;
  }
  bool active[M];
  for (int64_t n = 0; n < most; ++n) {
    for (int j = 0; j < M; ++j) active[j] = n < steps[j];
    boris_block<M>(level, m, b0, half, active, r, u);
  }
}

}  // namespace

// Boris steps (drift-kick-drift, as jaxcr.dynamics.boris_step) for dr/dt = u, du/dt = u × b(r),
// b = b0 + δb (the caller folds the charge sign into b0 and the polarisations): particle p takes
// steps[p] steps of h[p] from (r, u), updated in place; particles advance kBlock at a time.
extern "C" void JAXCR_CAT(jaxcr_boris, JAXCR_VARIANT)(int32_t level, const ModeTable& m, const double* b0,
                                                       const double* h, const int64_t* steps, double* r, double* u,
                                                       int64_t count) {
  int64_t p = 0;
  for (; p + kBlock <= count; p += kBlock) {
    boris_particles<kBlock>(level, m, b0, h + p, steps + p, r + 3 * p, u + 3 * p);
  }
  for (; p < count; ++p) boris_particles<1>(level, m, b0, h + p, steps + p, r + 3 * p, u + 3 * p);
}

// b and its Jacobian ∂b_i/∂r_j = −Σ_n E_{n,i} k_{n,j} sin(k_n·r + β_n), k = πκ (κ in half-turns
// per r_L), full accuracy. jacobian is (count, 3, 3), row-major.
extern "C" void JAXCR_CAT(jaxcr_plane_wave_jacobian, JAXCR_VARIANT)(const ModeTable& m, const double* positions,
                                                                     double* field, double* jacobian,
                                                                     int64_t count) {
  const int64_t n = m.n;
  const double *kx = m.kx, *ky = m.ky, *kz = m.kz, *b = m.b, *ex = m.ex, *ey = m.ey, *ez = m.ez;
  for (int64_t p = 0; p < count; ++p) {
    const double x = positions[3 * p], y = positions[3 * p + 1], z = positions[3 * p + 2];
    double bx = 0.0, by = 0.0, bz = 0.0;
    double j00 = 0.0, j01 = 0.0, j02 = 0.0, j10 = 0.0, j11 = 0.0, j12 = 0.0, j20 = 0.0, j21 = 0.0, j22 = 0.0;
#pragma omp simd reduction(+ : bx, by, bz, j00, j01, j02, j10, j11, j12, j20, j21, j22)
    for (int64_t i = 0; i < n; ++i) {
      const Reduced r = reduce_half_turns(b[i] + kx[i] * x + ky[i] * y + kz[i] * z);
      const double u = r.s * r.s;
      const double cos_phase = with_sign(horner<double, 10>(kCosTaylor, u), r.sign);
      const double sin_phase = with_sign(kPi * r.s * horner<double, 11>(kSinTaylor, u), r.sign);
      const double w = -kPi * sin_phase;  // −sin(φ) times the π of k = πκ
      bx += ex[i] * cos_phase;
      by += ey[i] * cos_phase;
      bz += ez[i] * cos_phase;
      const double gx = ex[i] * w, gy = ey[i] * w, gz = ez[i] * w;
      j00 += gx * kx[i];
      j01 += gx * ky[i];
      j02 += gx * kz[i];
      j10 += gy * kx[i];
      j11 += gy * ky[i];
      j12 += gy * kz[i];
      j20 += gz * kx[i];
      j21 += gz * ky[i];
      j22 += gz * kz[i];
    }
    field[3 * p] = bx;
    field[3 * p + 1] = by;
    field[3 * p + 2] = bz;
    double* jac = jacobian + 9 * p;
    jac[0] = j00;
    jac[1] = j01;
    jac[2] = j02;
    jac[3] = j10;
    jac[4] = j11;
    jac[5] = j12;
    jac[6] = j20;
    jac[7] = j21;
    jac[8] = j22;
  }
}

}  // namespace jaxcr
