// The plane-wave mode sum of jaxcr (paper Eq. 10) for a range of particles, written so that the
// compiler vectorises the loop over modes. This header is compiled once per instruction set
// (plane_waves_kernels.cc with -march=x86-64, x86-64-v3 and x86-64-v4, or the platform default
// elsewhere); plane_waves_ffi.cc picks the variant the running CPU supports.
//
//   b(r) = Σ_n E_n cos(π t_n),   t_n = κ_n·r + β_n/π,   κ_n = k_n/π   (phase in half-turns)
//
// The phase is formed in float64 and reduced exactly, s = t − round(t) ∈ [−1/2, 1/2], with
// cos(πt) = (−1)^round(t) cos(πs); cos(πs) is a polynomial in s² fitted by Chebyshev interpolation
// (plane_waves_kernels.cc; tests/test_native.py refits it). Levels: FULL (float64, 8 terms, error
// 2.7e-15 per unit amplitude), FAST (float64, 6 terms, 2.2e-10), SINGLE (the polynomial and the
// sum in float32, ~1e-7). The Jacobian uses the Taylor series of cos(πs) and sin(πs)/(πs).
#pragma once
#include <cstdint>

namespace jaxcr {

enum Level : int32_t { kFull = 0, kFast = 1, kSingle = 2 };

// One mode table in structure-of-arrays form, padded with zero-amplitude modes to a multiple of
// kModeBlock so that the vector loop has no remainder.
struct ModeTable {
  int64_t n;          // padded number of modes
  const double* kx;   // κ = k/π, half-turns per r_L
  const double* ky;
  const double* kz;
  const double* b;    // β/π, half-turns
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
