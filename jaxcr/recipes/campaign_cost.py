"""The work of a campaign and its time at the rates measured on this project's machines, and the
warning for design points without a gyro-resonant mode (printed by ``jaxcr campaign create``)."""

from __future__ import annotations

import numpy as np

__all__ = ["cpu_rate", "cost_line", "work_line", "resonance_warning", "DEFAULT_SEPARATION_TIMES"]

# Measured particle-steps/s on 2 CPU cores (idle AMD EPYC VM, float64): 3.3e7 in campaign points of N = 32 modes,
# 1.18e7 in the side-by-side benchmark with the C++ code at N = 256; a step costs a + b·N s per particle.
CPU_RATES = {32: 3.3e7, 256: 1.18e7}
# The fast field level ran the shipped artifacts' campaign (16 points, N = 32, nside 32, 2026-12-04) at 6.8e7
# particle-steps/s on the same machine: 2.06 times float64. The float32 level is counted at the same rate.
REDUCED_PRECISION_SPEEDUP = 6.8e7 / 3.3e7
DEFAULT_SEPARATION_TIMES = (0.5, 1.0, 2.0, 4.0)  # × t_sep(σ², ρ): the measured T_conv/t_sep was 0.3-6.8
GPU_MODE_STEPS = 1.1e11  # mode-steps/s on one NVIDIA H200 (4.3e8 particle-steps/s at N = 256)
GPU_MEASURED_MODES = 256  # fewer modes are not assumed faster per particle-step than this


def cpu_rate(n_modes: int, field_precision: str = "float64") -> float:
    """Particle-steps/s on 2 CPU cores at N modes, linear in the time per step between the measured
    mode counts and beyond the largest; fewer modes than the smallest are not assumed faster. The
    fast and float32 field levels are REDUCED_PRECISION_SPEEDUP times faster (measured at N = 32)."""
    (n1, r1), (n2, r2) = sorted(CPU_RATES.items())
    b = (1 / r2 - 1 / r1) / (n2 - n1)
    speedup = 1.0 if field_precision == "float64" else REDUCED_PRECISION_SPEEDUP
    return speedup / (1 / r1 + b * (max(n_modes, n1) - n1))


def resonance_warning(spec) -> str | None:
    """A warning when design points have no gyro-resonant mode (2π r_L < λ_min), else None.

    Measured at ρ = 0.01 (experiments/resonant_modes.py): with λ_min = 0.1 λ_c, ⟨C_ℓ⟩ was 110-180
    times that of the same turbulence with modes down to 0.01 λ_c, and still rising at 8 t_sep
    where the resonant one had converged by 1 t_sep."""
    from jaxcr.turbulence_model import MODES_PER_DECADE, resonant_lambda_min

    lambda_min = getattr(spec.model.turbulence, "lambda_min_over_lc", None)
    if lambda_min is None or "rho" not in spec.parameters.names:
        return None
    rhos = np.array([float(spec.values(k)["rho"]) for k in range(len(spec.design))])
    low = rhos[2 * np.pi * rhos < lambda_min]
    if not low.size:
        return None
    return (
        f"warning: {low.size} of {rhos.size} design points (r_L/λ_c down to {low.min():.3g}) have no gyro-resonant mode: "
        f"2π r_L < λ_min = {lambda_min:g} λ_c below r_L/λ_c = {lambda_min / (2 * np.pi):.3g}. Measured at r_L/λ_c = 0.01, "
        "⟨C_ℓ⟩ is then 110-180 times too large and still rises at 8 t_sep, where with resonant modes it has converged "
        "by 1 t_sep (docs/fitting.md). Give "
        f"--lambda-min-over-lc {resonant_lambda_min(low.min()):g} or less (modes to below 2π r_L) and about "
        f"{MODES_PER_DECADE} modes per decade of wavelength (--modes), or leave both to their defaults, which do this."
    )


def work_line(spec, work: float, what: str) -> str:
    """``work`` particle-steps of campaign ``spec`` (``what`` they are) and their time at the
    measured rates, on 2 CPU cores and on one GPU (compilation not included)."""
    n_modes = int(getattr(spec.model.turbulence, "n_modes", 32))
    level = spec.model.field_precision.value
    rate = cpu_rate(n_modes, level)
    gpu_hours = work * max(n_modes, GPU_MEASURED_MODES) / GPU_MODE_STEPS / 3600
    return (
        f"work: {work:.3g} particle-steps ({what}, N = {n_modes} modes); ≈ {work / rate / 3600:.3g} h "
        f"on 2 CPU cores at {rate:.2g} particle-steps/s (field {level}; an idle 2-core AMD EPYC VM; `jaxcr benchmark` measures this "
        f"machine), ≈ {gpu_hours:.3g} h on one H200 GPU at {GPU_MODE_STEPS:.2g} mode-steps/s (measured at N = 256; fewer modes counted as 256)"
    )


def cost_line(spec) -> str:
    """The whole campaign's work and its time at the measured rates (:func:`work_line`)."""
    what = (
        f"{len(spec.design)} points × {spec.model.n_realisations} realisations × {12 * spec.model.nside**2} pixels "
        f"to ΩT = {spec.time_range()[1]:.4g} at most"
    )
    return work_line(spec, spec.particle_steps(), what)
