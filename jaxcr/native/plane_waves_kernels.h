// The plane-wave mode sum of jaxcr (paper Eq. 10) for a range of particles, written so that the
// compiler vectorises the loop over modes. This header is compiled once per instruction set
// (plane_waves_kernels.cc with -march=x86-64, x86-64-v3 and x86-64-v4, or the platform default
// elsewhere); plane_waves_ffi.cc picks the variant the running CPU supports.
//
//   b(r) = Σ_n E_n cos(2π f_n),   f_n = κ_n·r + β_n/2π,   κ_n = k_n/2π   (phase in turns)
//
// The phase is formed in float64 and reduced exactly, f − round(f) ∈ [−1/2, 1/2]; then
// cos(πf) is a Taylor polynomial in f² and cos(2πf) = 2 cos²(πf) − 1 (the same algorithm as
// jaxcr._fastmath.fast_cos). Levels: FULL (float64, 9 terms, error ~1e-13 of |E|), FAST (float64,
// 7 terms, ~1e-9 of |E| per mode), SINGLE (the polynomial and the sum in float32, ~1e-7).
#pragma once
#include <cstdint>

namespace jaxcr {

enum Level : int32_t { kFull = 0, kFast = 1, kSingle = 2 };

// One mode table in structure-of-arrays form, padded with zero-amplitude modes to a multiple of
// kModeBlock so that the vector loop has no remainder.
struct ModeTable {
  int64_t n;          // padded number of modes
  const double* kx;   // κ = k/2π, turns per r_L
  const double* ky;
  const double* kz;
  const double* b;    // β/2π, turns
  const double* ex;   // E_n in units of B0
  const double* ey;
  const double* ez;
  const float* fx;    // E_n as float32 (SINGLE)
  const float* fy;
  const float* fz;
};

constexpr int64_t kModeBlock = 16;

using FieldFn = void (*)(int32_t level, const ModeTable& modes, const double* positions, double* field,
                         int64_t count);
using BorisFn = void (*)(int32_t level, const ModeTable& modes, const double* b0, const double* h,
                        const int64_t* steps, double* r, double* u, int64_t count);
using JacobianFn = void (*)(const ModeTable& modes, const double* positions, double* field, double* jacobian,
                            int64_t count);

}  // namespace jaxcr
