"""Ensemble runs over backtracking time: maps, spectra and diffusion statistics (Fig. 2).

For N_B field realisations every HEALPix pixel is backtracked segment by segment along a grid
of times ΩT. After each segment :func:`jaxcr.forward.observe` computes, per time, the
per-realisation C_ℓ(T) of the δI maps (Eq. 5, or Eq. 7 without the Fick term) for each gradient,
⟨C_ℓ⟩ and its standard error, the C_ℓ of the realisation-averaged map (the standard-diffusion
prediction, Fig. 2 magenta), Eq. 6 with K from both estimators (the Green-Kubo running integral
converges like the averaged map does; the Einstein K(T) = ⟨ΔrΔr⟩/2T lags by ~τ_c/T), K(T),
its Green-Kubo estimate, K̃s(T) (Eq. 9), the noise level (Eq. 12), both sides of the sum rule
(Eq. 8) and the pixel variance; optionally the Liouville maps f̃(p̂(−T)) of a dipole f̃ (Sec. 2)
and their spectra.

Only the particles' current state and the per-time statistics are stored, so memory does not
grow with the number of steps. A checkpoint is written atomically after each segment; a run
started again with the same configuration and checkpoint path resumes from it and produces
results identical to an uninterrupted run (same code path, same compiled segments).
"""

from __future__ import annotations

import dataclasses
import hashlib
import time as _time
from pathlib import Path

import diffrax
import jax
import jax.numpy as jnp
import numpy as np

from . import _checks, _dataset, io, theory
from ._progress import COMPILING, show_eta, ticking
from ._version import __version__
from .conventions import FIG2_GRADIENTS
from .dynamics import Boris, check_step_resolves, default_step, steps_per_interval
from .field import FieldPrecision, ModeSumLayout, as_option
from .forward import SkyModel, advance, initial_state, observe, sample_fields
from .random import realisation_keys
from .spectra import angular_power_spectrum, check_lmax
from .turbulence import TurbulenceParameters

__all__ = ["EnsembleConfig", "run_ensemble", "log_time_grid", "describe_solver"]


def _update_progress(bar, work, start: int, k: int, timed: list[tuple[float, float]]) -> None:
    """Advance the bar to the end of segment k. Unit: work, plus per segment its fixed cost
    (statistics, checkpoint, calls) as E = a/b work units from a fit t = a + b·work over the timed
    segments, so the ETA holds on log-spaced grids; the rate is measured after the compiling
    first segment, and the ETA shown once two segments after it are timed (jaxcr._progress)."""
    if bar.disable:
        return
    extra = 0.0
    if len({w for w, _ in timed}) >= 2:
        b, a = np.polyfit([w for w, _ in timed], [s for _, s in timed], 1)
        # a fit over a few early segments of similar work can put b near 0 and a/b far above any
        # segment's work (the total once jumped 4× for one refresh): at most the largest timed one's
        extra = min(max(a, 0.0) / b, max(w for w, _ in timed)) if b > 0 else 0.0
    bar.total = float(work.sum() + len(work) * extra)
    show_eta(bar, len(timed))
    if k == start:  # compiled: time the remaining work only
        bar.set_description("backtracking")
        bar.start_t = _time.time()
    bar.initial = float(work[: start + 1].sum() + (start + 1) * extra)
    bar.n = float(work[: k + 1].sum() + (k + 1) * extra)
    bar.refresh()


def log_time_grid(t_min: float, t_max: float, n: int) -> tuple[float, ...]:
    """n log-spaced backtracking times ΩT from t_min to t_max."""
    _checks.check_positive("t_min", t_min)
    _checks.check_less("t_min", t_min, "t_max", t_max)
    _checks.check_positive_int("n", n)
    return tuple(float(t) for t in np.geomspace(t_min, t_max, n))


def describe_solver(solver, controller=None) -> dict:
    """A JSON-able record of an integrator: its type and its numeric settings."""
    out: dict = {"type": type(solver).__name__}
    if isinstance(solver, Boris):
        out["dt"] = solver.dt
        if solver.allow_unresolved:
            out["allow_unresolved"] = True
    if controller is not None:
        out["stepsize_controller"] = {
            "type": type(controller).__name__,
            **{k: getattr(controller, k) for k in ("rtol", "atol") if hasattr(controller, k)},
        }
    return out


@dataclasses.dataclass(frozen=True)
class EnsembleConfig:
    """Everything that defines an ensemble run (all saved with the results).

    Attributes:
        turbulence: dict of :class:`TurbulenceParameters` arguments (lengths in r_L by default).
        nside: HEALPix resolution of the backtracked pixels (paper: 32).
        n_realisations: N_B field realisations (paper: 10).
        times: strictly increasing ΩT at which everything is evaluated.
        gradients: name → g = ∇n/n (1/r_L). C_ℓ scale as |g|²; the defaults are unit vectors
            parallel and perpendicular to B0 = ẑ (paper Fig. 2).
        seed: integer seed of the field realisations (realisation i uses
            :func:`jaxcr.random.realisation_key` (seed, i), as everywhere in jaxcr).
        b0_direction: ê of the regular field.
        charge_sign: +1 for nuclei.
        solver: ``Boris(dt=...)`` (default ``Boris()``: :func:`jaxcr.default_step`) or a diffrax
            solver with ``stepsize_controller`` (default PIDController(rtol=1e-8, atol=1e-10)).
        lmax, iterations: spectrum settings (lmax ≤ 2·nside − 1; None → 2·nside − 1).
        fick_term: include −3p̂·K·g in δI (Eq. 5) with the run's own K(T); False → Eq. 7 maps.
        liouville_dipole: if given, also compute the spectra of f̃(p̂(−T)) = d·p̂(−T) (Sec. 2).
        particle_chunk: integrate particles in chunks of this size (memory/cache).
        field_precision: :class:`FieldPrecision` of the mode sum (positions and phases stay float64).
        field_layout: :class:`ModeSumLayout` of the mode sum (an execution option; results
            agree to rounding).
    """

    turbulence: dict = dataclasses.field(default_factory=lambda: {"n_modes": 256})
    nside: int = 32
    n_realisations: int = 10
    times: tuple = (1.0, 10.0, 100.0)
    gradients: dict = dataclasses.field(default_factory=lambda: dict(FIG2_GRADIENTS))
    seed: int = 0
    b0_direction: tuple = (0.0, 0.0, 1.0)
    charge_sign: float = 1.0
    solver: diffrax.AbstractSolver = Boris()
    stepsize_controller: diffrax.AbstractStepSizeController | None = None
    lmax: int | None = None
    iterations: int = 3
    fick_term: bool = False
    liouville_dipole: tuple | None = None
    particle_chunk: int | None = None
    field_precision: FieldPrecision | str = FieldPrecision.FLOAT64
    field_layout: ModeSumLayout | str = ModeSumLayout.AUTO

    def parameters(self) -> TurbulenceParameters:
        return TurbulenceParameters(**self.turbulence)

    def as_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        d["times"] = [float(t) for t in self.times]
        d["gradients"] = {k: [float(x) for x in v] for k, v in self.gradients.items()}
        d["solver"] = describe_solver(self.solver, self.stepsize_controller)
        del d["stepsize_controller"]
        d["field_precision"] = as_option(FieldPrecision, "field_precision", self.field_precision).value
        d["field_layout"] = as_option(ModeSumLayout, "field_layout", self.field_layout).value
        return d

    def digest(self) -> str:
        return hashlib.sha256(io.to_json(self.as_dict()).encode()).hexdigest()[:16]

    def validate(self) -> None:
        """Raise a clear error for bad settings, before any expensive work."""
        if not isinstance(self.turbulence, dict):
            raise TypeError(
                f"turbulence must be a dict of TurbulenceParameters arguments; got {type(self.turbulence).__name__}"
            )
        self.parameters()
        _checks.check_power_of_two("nside", self.nside)
        _checks.check_positive_int("n_realisations", self.n_realisations)
        if self.n_realisations < 2:
            raise ValueError(
                f"n_realisations must be >= 2: the run reports standard errors over realisations; got "
                f"{self.n_realisations} (for one sky, use jaxcr.backtrack and jaxcr.angular_power_spectrum)"
            )
        _checks.check_increasing_times("times", np.asarray(self.times))
        _checks.check_seed("seed", self.seed)
        if not self.gradients:
            raise ValueError("gradients must name at least one gradient vector")
        for name, g in self.gradients.items():
            if np.shape(g) != (3,):
                raise ValueError(f"gradient {name!r} must be a 3-vector; got shape {np.shape(g)}")
            _checks.check_finite(f"gradient {name!r}", np.asarray(g, dtype=float))
        if not isinstance(self.solver, diffrax.AbstractSolver):
            raise TypeError(f"solver must be jaxcr.Boris(dt=...) or a diffrax solver; got {self.solver!r}")
        if isinstance(self.solver, Boris) and self.solver.dt is not None:
            _checks.check_positive("solver dt", self.solver.dt)
            check_step_resolves(
                float(self.solver.dt), self.parameters().resolution_scales(), self.solver.allow_unresolved
            )
        if (
            not (isinstance(self.iterations, (int, np.integer)) and not isinstance(self.iterations, bool))
            or self.iterations < 0
        ):
            raise ValueError(f"iterations must be a non-negative integer; got {self.iterations!r}")
        if self.lmax is not None and (not isinstance(self.lmax, (int, np.integer)) or self.lmax < 2):
            raise ValueError(
                f"lmax must be an integer >= 2 (the sum rule and noise correction need ℓ ≥ 1 and the "
                f"upper half of the spectrum); got {self.lmax!r}"
            )
        _checks.check_unit_vectors("b0_direction", np.asarray(self.b0_direction, dtype=float))
        if self.particle_chunk is not None:
            _checks.check_positive_int("particle_chunk", self.particle_chunk)
        if isinstance(self.charge_sign, bool) or self.charge_sign not in (1, -1):
            raise ValueError(f"charge_sign must be +1 or -1; got {self.charge_sign!r}")
        as_option(FieldPrecision, "field_precision", self.field_precision)
        as_option(ModeSumLayout, "field_layout", self.field_layout)
        _checks.check_bool("fick_term", self.fick_term)
        check_lmax(self.lmax, self.nside)
        if self.liouville_dipole is not None:
            if np.shape(self.liouville_dipole) != (3,):
                raise ValueError(f"liouville_dipole must be a 3-vector; got shape {np.shape(self.liouville_dipole)}")
            _checks.check_finite("liouville_dipole", np.asarray(self.liouville_dipole, dtype=float))

    def sky_model(self) -> SkyModel:
        """The :class:`jaxcr.forward.SkyModel` this configuration describes."""
        return SkyModel(
            turbulence=self.parameters(),
            b0_direction=jnp.asarray(self.b0_direction, dtype=float),
            gradients=jnp.asarray([self.gradients[k] for k in self.gradients], dtype=float),
            gradient_names=tuple(self.gradients),
            times=tuple(float(t) for t in self.times),
            nside=self.nside,
            solver=self.solver,
            stepsize_controller=self.stepsize_controller,
            charge_sign=float(self.charge_sign),
            fick_term=self.fick_term,
            lmax=self.lmax,
            iterations=self.iterations,
            field_precision=as_option(FieldPrecision, "field_precision", self.field_precision),
            field_layout=as_option(ModeSumLayout, "field_layout", self.field_layout),
        )

    def fields(self):
        """The run's field realisations 0..N_B−1, stacked (:func:`jaxcr.forward.sample_fields`)."""
        return sample_fields(self.sky_model(), realisation_keys(self.seed, self.n_realisations))


def _statistics(model: SkyModel, positions, momenta, T: float, liouville_dipole) -> dict:
    """All per-time statistics (dict of NumPy arrays) for positions/momenta of shape (R, P, 3)."""
    out = observe(model, positions, momenta, T)
    if liouville_dipole is not None:
        lmaps = momenta @ jnp.asarray(liouville_dipole, dtype=float)  # f̃(p̂(−T)), (R, P)
        lcl = angular_power_spectrum(lmaps, lmax=model.lmax, iterations=model.iterations)
        out.update(liouville_cl=lcl, liouville_sum=theory.multipole_sum(lcl), liouville_mean_square=(lmaps**2).mean(-1))
    return {k: np.asarray(v) for k, v in out.items()}


def _to_dataset(stats: dict, cfg: EnsembleConfig, times, extra_attrs: dict):
    """The labelled Dataset of a run (schema, units and long names: :mod:`jaxcr._dataset`)."""
    import xarray as xr

    n_t = len(stats["cl"])
    lmax = stats["cl"].shape[-1] - 1
    ds = xr.Dataset(
        {name: _dataset.variable(name, values) for name, values in stats.items()},
        coords=dict(
            time=_dataset.coordinate("time", np.asarray(times[:n_t])),
            realisation=_dataset.coordinate("realisation", np.arange(cfg.n_realisations)),
            gradient=_dataset.coordinate("gradient", list(cfg.gradients)),
            ell=_dataset.coordinate("ell", np.arange(lmax + 1)),
            i=_dataset.coordinate("i", ["x", "y", "z"]),
            j=_dataset.coordinate("j", ["x", "y", "z"]),
        ),
    )
    ds["gradient_vector"] = (
        ("gradient", "i"),
        np.array([cfg.gradients[k] for k in cfg.gradients], dtype=float),
        {"units": "1/r_L", "long_name": "cosmic-ray gradient g = grad n / n"},
    )
    ds.attrs.update(
        config=io.to_json(cfg.as_dict()),
        config_digest=cfg.digest(),
        seed=cfg.seed,
        npix=12 * cfg.nside**2,
        units="internal: lengths r_L, times 1/Omega, fields B0, c = 1",
        normalisation=_dataset.NORMALISATION,
        **_dataset.provenance(),
        **{f"turbulence_{k}": float(v) for k, v in cfg.parameters().as_dict().items()},
        **extra_attrs,
    )
    return ds


def run_ensemble(
    config: EnsembleConfig,
    *,
    checkpoint: str | Path | None = None,
    output: str | Path | None = None,
    progress: bool = True,
    stop_after: int | None = None,
    devices: int | str | None = None,
):
    """Run (or resume) an ensemble backtracking run; return the results as an xarray Dataset.

    Args:
        config: the run's :class:`EnsembleConfig` (validated first).
        checkpoint: path of the checkpoint file; if it exists and was written for the same
            configuration the run resumes from it; a checkpoint of another configuration is an
            error (delete it or choose another path).
        output: netCDF path for the final Dataset (written atomically), optional.
        progress: show a tqdm bar over backtracking time ΩT with an ETA.
        stop_after: stop after this many segments in total (the checkpoint allows resuming);
            the partial Dataset is returned.
        devices: shard the particles over this many devices (:func:`jaxcr.track`); "all" for
            every device of every process. An execution option, not part of the configuration
            (results agree to rounding). In a multi-host run (:func:`jaxcr.distributed.initialize`)
            every process runs the same call and gets the same Dataset; only process 0 writes
            the checkpoint and the output file and shows the progress bar.
    """
    _checks.require_x64("run_ensemble")
    config.validate()
    if stop_after is not None:
        _checks.check_positive_int("stop_after", stop_after)
    for name, path in (("output", output), ("checkpoint", checkpoint)):
        if path is not None:
            io.check_writable(name, path)
    times = np.asarray(config.times, dtype=float)
    model = config.sky_model()
    stats: dict[str, list] = {}
    start, elapsed = 0, 0.0
    meta = dict(config_digest=config.digest(), jaxcr_version=__version__, config=config.as_dict())
    if checkpoint is not None and Path(checkpoint).exists():
        arrays, saved = io.load_checkpoint(checkpoint)
        if saved.get("jaxcr_version") != __version__:
            raise io.CheckpointError(
                f"checkpoint {checkpoint} was written by jaxcr {saved.get('jaxcr_version')}, this is jaxcr "
                f"{__version__}: resuming would mix two versions in one result. Delete it to start afresh, or "
                "finish the run with that version"
            )
        if saved.get("config_digest") != config.digest():
            raise ValueError(
                f"checkpoint {checkpoint} was written for another configuration "
                f"(digest {saved.get('config_digest')} != {config.digest()}); delete it or use another path"
            )
        start, elapsed = int(saved["segments_done"]), float(saved.get("elapsed_s", 0.0))
        positions, momenta = jnp.asarray(arrays.pop("positions")), jnp.asarray(arrays.pop("momenta"))
        stats = {k: list(v) for k, v in arrays.items()}

    fields = config.fields()
    if start == 0:
        positions, momenta = initial_state(model, config.n_realisations)
    durations = np.diff(np.concatenate([[0.0], times]))
    dt = model.solver.dt if isinstance(model.solver, Boris) else None
    if isinstance(model.solver, Boris) and dt is None:
        dt = default_step(fields)
        model = model.replace(solver=Boris(dt=dt))
    # Boris steps per segment, and one step bound for every segment (they share one compiled solver)
    segment_steps = [int(steps_per_interval([d], float(dt))[0]) for d in durations] if dt is not None else None
    bound = None if segment_steps is None else 1 << max(segment_steps).bit_length()
    execution = dict(particle_chunk=config.particle_chunk, devices=devices, max_steps=bound)

    from tqdm.auto import tqdm

    writer = jax.process_index() == 0  # multi-host: one process writes, all compute
    progress = progress and writer

    end = len(times) if stop_after is None else min(len(times), stop_after)
    # Progress in units of work (Boris: particle steps; adaptive solvers: ΩT × particles), see _update_progress
    particles = config.n_realisations * 12 * config.nside**2
    work = particles * np.asarray(durations if segment_steps is None else segment_steps, dtype=float)
    bar = tqdm(
        total=float(work.sum()),
        initial=float(work[:start].sum()),
        disable=not progress,
        desc="compiling (or loading it from the cache) and the first segment",
        unit=" particle-steps" if dt is not None else " ΩT·particles",
        unit_scale=True,
        smoothing=0,
        bar_format=COMPILING,
    )
    t_wall = _time.perf_counter()
    timed: list[tuple[float, float]] = []  # (work, seconds) of the segments after the compiling one
    with ticking(bar):
        for k in range(start, end):
            bar.set_postfix_str(f"ΩT → {times[k]:.4g}")
            t_segment = _time.perf_counter()
            positions, momenta = advance(model, fields, positions, momenta, float(durations[k]), **execution)
            seg = _statistics(model, positions, momenta, float(times[k]), config.liouville_dipole)
            for name, value in seg.items():
                stats.setdefault(name, []).append(value)
            if checkpoint is not None and writer:
                io.save_checkpoint(
                    checkpoint,
                    dict(positions=positions, momenta=momenta, **{n: np.stack(v) for n, v in stats.items()}),
                    dict(meta, segments_done=k + 1, elapsed_s=elapsed + _time.perf_counter() - t_wall),
                )
            if k > start:
                timed.append((float(work[k]), _time.perf_counter() - t_segment))
            _update_progress(bar, work, start, k, timed)
    bar.close()
    wall = elapsed + _time.perf_counter() - t_wall
    stacked = {n: np.stack(v) for n, v in stats.items()}
    ds = _to_dataset(
        stacked,
        config,
        times,
        dict(
            wall_time_s=wall,
            dt=float("nan") if dt is None else float(dt),
            complete=int(end == len(times)),
            device=str(jax.devices()[0].device_kind),
        ),
    )
    if output is not None and end == len(times) and writer:
        io.save_dataset(ds, output)
    return ds
