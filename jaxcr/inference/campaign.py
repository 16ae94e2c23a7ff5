"""Campaigns: model spectra on a design of named-parameter points, one independent task per point.

The expensive part of a fit is the model: at every design point θ_k (the coordinates of the
named parameters, :mod:`jaxcr.parametrisation`; for the paper's model θ = (ln σ², ln ρ)) the
campaign backtracks N_B field realisations from every HEALPix pixel to several times ΩT_j and
stores, per realisation and time, the spectrum each observatory analysis
(:class:`jaxcr.analysis.Analysis`) would publish of the unit-gradient sky δI = r(−T)·ĝ (Eq. 7),
and the map's own pixel-noise level (:func:`jaxcr.spectrum_model.pixel_noise_level`); the maps
come from :func:`jaxcr.spectrum_model.backtracked_maps`, the one path to them. Each task
writes its own file, atomically, so tasks run in any order, on any machine, and a killed
campaign resumes where it stopped: point k always draws the realisations of stream 1 + k of the
campaign seed (:func:`jaxcr.random.realisation_keys`), whoever computes it. A point given more
realisations (:meth:`Campaign.add_realisations`) keeps the ones it has and computes the rest.

:mod:`jaxcr.inference.scheduling` runs the tasks: in this process, a local process pool, a SLURM
job array or a Dask cluster. :func:`jaxcr.inference.artifact.build_artifact` turns a finished campaign into an
emulator artifact that fits load (:func:`jaxcr.inference.sky_fit.fit_sky`).

Folder layout: ``campaign.json`` (the :class:`CampaignSpec`: model, times, analyses, named
parameters and design) and
``points/point_<k>.npz`` (one per finished design point, with its θ, the spec's digest, the
versions and the wall time).
"""

from __future__ import annotations

import dataclasses
import json
import platform
import sys
import time as _time
from pathlib import Path

import numpy as np

from .. import _checks, io
from .._dataset import dependency_versions
from .._version import __version__
from ..random import realisation_keys
from ..spectrum_model import backtracked_maps
from .campaign_spec import CAMPAIGN_FORMAT, CampaignSpec

__all__ = ["CampaignSpec", "Campaign", "software_versions", "CAMPAIGN_FORMAT"]


#: the arrays of a point file with one row per realisation (the others: its θ and step)
PER_REALISATION = ("pixel_noise", "cl_")


def _point_spectra(spec: CampaignSpec, index: int, first: int = 0) -> dict:
    """Backtrack realisations ``first`` … N_B,k − 1 of design point ``index`` and return their arrays
    (the task's whole computation)."""
    model = spec.model_at(index)
    keys = realisation_keys(model.seed, spec.n_realisations(index) - first, first=first, stream=1 + index)
    maps, noise = backtracked_maps(model, spec.values(index), keys, spec.point_times(index))
    out = {"pixel_noise": noise, "theta": np.asarray(spec.design[index])}
    if spec.step_per_point:
        out["dt"] = np.asarray(model.dt)
    for a in spec.analyses:
        # (R, T, L): realisations first, as everywhere else
        out[f"cl_{a.name}"] = np.stack(
            [np.asarray(a.spectra(maps[:, j, None]))[:, 0] for j in range(len(spec.times))], 1
        )
    return out


class Campaign:
    """A campaign folder (module docstring): its spec, which points are done, and running them."""

    def __init__(self, folder, spec: CampaignSpec):
        self.folder = Path(folder)
        self.spec = spec

    @classmethod
    def create(cls, folder, spec: CampaignSpec, exist_ok: bool = False) -> "Campaign":
        """Write ``campaign.json`` into ``folder``. An existing campaign there is opened instead
        when ``exist_ok`` and its spec is the same (else an error that says what differs)."""
        folder = Path(folder)
        if (folder / "campaign.json").exists():
            old = cls.open(folder)
            if not exist_ok or old.spec.digest() != spec.digest() or not np.array_equal(old.spec.design, spec.design):
                raise ValueError(
                    f"{folder} already holds a campaign (digest {old.spec.digest()}, {len(old.spec.design)} points); "
                    "open it with Campaign.open / `jaxcr campaign run`, extend it, or choose another folder"
                )
            return old
        io.check_writable("folder", folder / "campaign.json")
        (folder / "points").mkdir(parents=True, exist_ok=True)
        campaign = cls(folder, spec)
        campaign._write_spec()
        return campaign

    @classmethod
    def open(cls, folder) -> "Campaign":
        path = Path(folder) / "campaign.json"
        try:
            spec = CampaignSpec.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise ValueError(f"{folder} is not a campaign folder (no campaign.json); create one first") from None
        except (json.JSONDecodeError, KeyError, TypeError) as err:
            raise ValueError(f"{path} is damaged ({err}); recreate the campaign") from None
        return cls(folder, spec)

    def _write_spec(self) -> None:
        text = json.dumps(self.spec.as_dict(), indent=1)
        io.atomic_write(self.folder / "campaign.json", lambda tmp: Path(tmp).write_text(text))

    def point_path(self, index: int) -> Path:
        return self.folder / "points" / f"point_{index:05d}.npz"

    def written(self) -> list[int]:
        """The design points that have a file (complete, or holding fewer realisations than raised to)."""
        return [k for k in range(len(self.spec.design)) if self.point_path(k).exists()]

    def realisations_done(self, index: int) -> int:
        """How many realisations of design point ``index`` its file holds (0: none)."""
        return _held(*self.load_point(index)) if self.point_path(index).exists() else 0

    def _complete(self, index: int) -> bool:
        if not self.point_path(index).exists():
            return False
        # only a point given more realisations than the model's can hold fewer than it needs
        return self.spec.n_realisations(index) == self.spec.model.n_realisations or (
            self.realisations_done(index) >= self.spec.n_realisations(index)
        )

    def done(self) -> list[int]:
        return [k for k in range(len(self.spec.design)) if self._complete(k)]

    def pending(self) -> list[int]:
        return [k for k in range(len(self.spec.design)) if not self._complete(k)]

    def _point_indices(self, points) -> list[int]:
        """``points`` as sorted unique design-point indices, or a ``ValueError`` that says which are allowed."""
        k_points = len(self.spec.design)
        chosen = sorted({int(k) for k in points}) if all(isinstance(k, (int, np.integer)) for k in points) else None
        if not chosen or chosen[0] < 0 or chosen[-1] >= k_points:
            raise ValueError(
                f"points must be design-point indices in [0, {k_points - 1}] (the #k `jaxcr campaign status` and "
                f"`artifact` list); got {points!r}"
            )
        return chosen

    def work_left(self) -> dict[int, float]:
        """Per pending point, the particle-steps still to compute (those of the realisations its file lacks)."""
        work = self.spec.point_particle_steps()
        return {k: work[k] * (1 - self.realisations_done(k) / self.spec.n_realisations(k)) for k in self.pending()}

    def add_realisations(self, points, n_realisations: int) -> list[int]:
        """Raise the design points of indices ``points`` to ``n_realisations`` realisations each.

        For points whose mean is too uncertain, e.g. where fits on mock skies are biased by a design
        point's sampling error (docs/fitting.md). Their files are kept: the next run computes only
        realisations N_B,k … ``n_realisations`` − 1 of each (the same stream, so the result equals
        a campaign made with that many from the start). Returns the indices raised."""
        chosen = self._point_indices(points)
        now = max(self.spec.n_realisations(k) for k in chosen)
        if (
            isinstance(n_realisations, bool)
            or not isinstance(n_realisations, (int, np.integer))
            or n_realisations <= now
        ):
            raise ValueError(
                f"n_realisations must be an integer above the {now} realisations these points have; got {n_realisations!r}"
            )
        counts = np.array(self.spec.realisations)
        counts[chosen] = int(n_realisations)
        self.spec = dataclasses.replace(self.spec, realisations=counts)
        self._write_spec()
        return chosen

    def extend(self, thetas) -> list[int]:
        """Append design points θ (K, P) not already in the design; returns their indices.
        Existing points keep their indices and files, so an extended campaign reuses them. An
        artifact pools one sky's covariance as the plain mean over the design points, so points
        added in one region change the likelihood over the whole box (docs/fitting.md)."""
        thetas = np.atleast_2d(np.asarray(thetas, dtype=float))
        if thetas.shape[1] != len(self.spec.parameters):
            raise ValueError(
                f"design points need {len(self.spec.parameters)} coordinates ({list(self.spec.parameters.names)}); "
                f"got shape {thetas.shape}"
            )
        new = [t for t in thetas if not np.any(np.all(np.isclose(self.spec.design, t, atol=1e-12), axis=1))]
        if not new:
            return []
        first = len(self.spec.design)
        self.spec = dataclasses.replace(
            self.spec,
            design=np.concatenate([self.spec.design, np.array(new)]),
            time_scales=np.concatenate([np.asarray(self.spec.time_scales), np.ones(len(new))]),
            realisations=np.concatenate([self.spec.realisations, np.full(len(new), self.spec.model.n_realisations)]),
        )
        self._write_spec()
        return list(range(first, len(self.spec.design)))

    def lengthen(self, points, factor: float = 2.0) -> list[int]:
        """Follow the design points of indices ``points`` ``factor`` times longer: their stored times become
        ``factor`` × what they were (the same multiples of a longer unit, :attr:`CampaignSpec.time_scales`).

        For points the convergence diagnostic finds still changing at the last stored times (the
        separation law understates their time to converge; :func:`jaxcr.inference.convergence.convergence_table` lists them as
        ``points_changing``). Their files are moved to ``points/superseded/`` (kept, not used), so the
        next run recomputes them, from the same realisations (stream 1 + k); the rest are reused.
        Returns the lengthened indices."""
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not np.isfinite(factor) or factor <= 1:
            raise ValueError(f"factor must be a number > 1 (how many times longer); got {factor!r}")
        chosen = self._point_indices(points)
        scales = np.array(self.spec.time_scales, dtype=float)
        scales[chosen] *= float(factor)
        old = {k: self.spec.time_scale(k) for k in chosen}
        for k in chosen:  # first, so that no file of the old times is left under the new spec
            path = self.point_path(k)
            if path.exists():
                (path.parent / "superseded").mkdir(exist_ok=True)
                path.replace(path.parent / "superseded" / f"{path.stem}_x{old[k]:g}{path.suffix}")
        self.spec = dataclasses.replace(self.spec, time_scales=scales)
        self._write_spec()
        return chosen

    def run_task(self, index: int) -> Path:
        """Compute design point ``index`` and write its file (nothing to do if it exists)."""
        if (
            isinstance(index, bool)
            or not isinstance(index, (int, np.integer))
            or not 0 <= index < len(self.spec.design)
        ):
            raise ValueError(f"index must be an integer in [0, {len(self.spec.design) - 1}]; got {index!r}")
        path = self.point_path(int(index))
        if self._complete(int(index)):
            return path
        _checks.require_x64("a campaign task")
        t0 = _time.perf_counter()
        first, earlier_s = 0, 0.0
        if path.exists():  # given more realisations: keep those done, compute the rest
            old, old_meta = self.load_point(int(index))
            first, earlier_s = len(old["pixel_noise"]), float(old_meta["wall_time_s"])
        arrays = _point_spectra(self.spec, int(index), first)
        if first:
            arrays = {
                name: np.concatenate([old[name], a]) if name.startswith(PER_REALISATION) else a
                for name, a in arrays.items()
            }
        meta = dict(
            format=CAMPAIGN_FORMAT,
            digest=self.spec.digest(),
            index=int(index),
            theta=self.spec.design[index].tolist(),
            time_scale=self.spec.time_scale(int(index)),
            n_realisations=len(arrays["pixel_noise"]),
            wall_time_s=earlier_s + _time.perf_counter() - t0,
            host=platform.node(),
            versions=software_versions(),
            finished=_time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        return io.save_checkpoint(path, arrays, meta)

    def check_points(self) -> None:
        """Read every point file on disk (checksum, spec digest, θ) and raise one ``ValueError``
        listing the damaged or foreign ones, so that a run or an artifact finds them before any work."""
        bad = []
        for k in self.written():  # partial files of points given more realisations included
            try:
                self.load_point(k)
            except ValueError as err:
                bad.append((k, " ".join(str(err).split())))
        if bad:
            listed = "; ".join(f"point {k}: {why}" for k, why in bad[:3]) + (
                f"; and {len(bad) - 3} more" if len(bad) > 3 else ""
            )
            files = " ".join(str(self.point_path(k)) for k, _ in bad)
            raise ValueError(
                f"{len(bad)} point file(s) of campaign {self.folder} cannot be used ({listed}). Delete them "
                f"(rm {files}) and run the campaign again: only these points are recomputed"
            )

    def load_point(self, index: int) -> tuple[dict, dict]:
        arrays, meta = io.load_checkpoint(self.point_path(index), kind="campaign point")
        if meta.get("digest") != self.spec.digest():
            raise ValueError(
                f"{self.point_path(index)} was made by another campaign spec (digest {meta.get('digest')} vs "
                f"{self.spec.digest()}); delete it to recompute"
            )
        if not np.allclose(arrays["theta"], self.spec.design[index], atol=1e-12):
            raise ValueError(f"{self.point_path(index)} holds θ = {arrays['theta']}, not the design's point {index}")
        if len(arrays["pixel_noise"]) > self.spec.n_realisations(index):
            raise ValueError(
                f"{self.point_path(index)} holds {len(arrays['pixel_noise'])} realisations, more than the spec's "
                f"{self.spec.n_realisations(index)} for point {index}; delete it to recompute"
            )
        if float(meta.get("time_scale", 1.0)) != self.spec.time_scale(index):
            raise ValueError(
                f"{self.point_path(index)} was backtracked to {meta.get('time_scale', 1.0):g}× the times, not the "
                f"spec's {self.spec.time_scale(index):g}×; delete it to recompute"
            )
        return arrays, meta

    def _step_text(self) -> str:
        if not self.spec.step_per_point:
            return f"dt {self.spec.model.dt:.4g}/Ω"
        steps = self.spec.steps()
        return f"dt {min(steps):.4g}-{max(steps):.4g}/Ω (each point its own)"

    def time_left(self) -> dict:
        """Wall time of the pending work on one worker, from the point files written: the
        particle-steps of the realisations still missing over the median rate of the files (the
        first point of every process also compiles, so a mean over points would count compiling at
        every point), plus one compilation, the largest excess of a file over that rate."""
        work = self.spec.point_particle_steps()
        loaded = {k: self.load_point(k) for k in self.written()}  # each file read once
        seconds = np.array([meta["wall_time_s"] for _, meta in loaded.values()])
        done_work = np.array([work[k] * _held(*point) / self.spec.n_realisations(k) for k, point in loaded.items()])
        per_step = float(np.median(seconds / done_work))
        compile_s = float(max(0.0, np.max(seconds - per_step * done_work)))
        pending = sum(self.work_left().values())
        left = per_step * pending + (compile_s if pending else 0.0)
        how = f"{1 / per_step:.3g} particle-steps/s, the median of {len(loaded)} points, plus {compile_s:.0f} s to compile"
        return dict(seconds=left, rate=1 / per_step, compile_s=compile_s, how=how)

    def status(self) -> str:
        done, total = len(self.done()), len(self.spec.design)
        line = f"campaign {self.folder}: {done}/{total} design points done"
        if done < total and self.written():
            left = self.time_left()
            line += f", ≈ {left['seconds'] / 60:.1f} min left on one worker ({left['how']})"
        m = self.spec.model
        more = self.spec.more_realisations()
        n_b = f"N_B {m.n_realisations}" + (
            f" ({', '.join(f'#{k}: {self.spec.n_realisations(k)}' for k in more)})" if more else ""
        )
        return (
            f"{line}\n  model: nside {m.nside}, {n_b}, {m.turbulence.as_dict()}, {self._step_text()}, "
            f"field {m.field_precision.value}, parameters {', '.join(self.spec.parameters.names)}, "
            f"ΩT = {self.spec.times_text()}; analyses: "
            f"{', '.join(a.name for a in self.spec.analyses)}"
        )


def _held(arrays: dict, meta: dict) -> int:
    """How many realisations a point file (its arrays and metadata) holds."""
    return int(meta["n_realisations"]) if "n_realisations" in meta else len(arrays["pixel_noise"])  # older files


def software_versions() -> dict:
    """jaxcr, Python and the dependencies' versions, recorded with every saved result."""
    return dict(jaxcr=__version__, python=sys.version.split()[0], **dependency_versions())
