"""Saving results and checkpoints atomically.

Every write goes to a temporary file in the target folder and is moved into place with
``os.replace`` (atomic on POSIX), so a crash or ``kill -9`` never leaves a half-written file.
Results are labelled xarray Datasets in netCDF (scipy engine, no extra C library); their attrs
carry the parameters, the seed and the jaxcr version.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "CheckpointError",
    "check_writable",
    "atomic_write",
    "save_checkpoint",
    "load_checkpoint",
    "save_dataset",
    "load_dataset",
    "to_json",
    "write_json",
]


def to_json(obj, indent: int | None = None) -> str:
    """JSON with NumPy/JAX arrays and scalars converted to lists and floats, paths to strings (sorted
    keys; ``indent`` as in :func:`json.dumps`)."""

    def default(o):
        if hasattr(o, "tolist"):
            return o.tolist()
        if isinstance(o, os.PathLike):
            return os.fspath(o)
        raise TypeError(f"cannot serialise {type(o).__name__}")

    return json.dumps(obj, default=default, sort_keys=True, indent=indent)


def write_json(path, obj, indent: int | None = 1) -> Path:
    """``obj`` as :func:`to_json` text, written atomically (:func:`atomic_write`) to ``path``."""
    text = to_json(obj, indent=indent)
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text))


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message names the file and says how to start afresh."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove_stale_temporaries(path: Path) -> None:
    """Temporary files of earlier writes to ``path`` that were killed before their rename."""
    for stale in path.parent.glob(f".{path.name}.*.tmp"):
        try:
            stale.unlink()
        except OSError:
            pass


def check_writable(name: str, path) -> Path:
    """Check, before any work, that ``path`` can be written: not a folder, its parent a folder
    (created if missing) in which a file can be made. Raises a ``ValueError`` naming ``name``."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{name}={str(path)!r} is a folder; give a file path")
    parent = path.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise ValueError(f"{name}={str(path)!r}: {str(ancestor)!r} is a file, not a folder")
            break
    try:
        parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=parent, prefix=f".{path.name}.", suffix=".probe")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(f"{name}={str(path)!r} cannot be written: {err.strerror}") from None
    return path


def atomic_write(path, write) -> Path:
    """Call ``write(tmp_path)`` then atomically move the temporary file to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # as open() would create it, not mkstemp's 0600
    try:
        write(tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


_DAMAGED_ADVICE = {
    "checkpoint": "Delete it to start the run afresh, or give another checkpoint path",
    "artifact": "Build it again with `jaxcr campaign artifact CAMPAIGN_FOLDER`, or give another artifact file",
    "campaign point": "Delete it and run the campaign again: only this design point is recomputed",
}


def save_checkpoint(path, arrays: dict, metadata: dict) -> Path:
    """Atomically write a checkpoint (or an artifact, a campaign point: the same format): named
    arrays plus a JSON metadata record."""

    def write(tmp):
        with open(tmp, "wb") as f:
            contents: dict[str, Any] = {"__metadata__": np.array(to_json(metadata))}
            contents |= {k: np.asarray(v) for k, v in arrays.items()}
            np.savez(f, **contents)

    return atomic_write(path, write)


def load_checkpoint(path, kind: str = "checkpoint") -> tuple[dict, dict]:
    """Read a file written by :func:`save_checkpoint`: (arrays, metadata). ``kind`` names the file
    in the error ("checkpoint", "artifact", "campaign point") and what to do about it.

    Raises:
        CheckpointError: the file is empty, truncated, not a jaxcr file of that kind or lacks its metadata.
    """
    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files") or "__metadata__" not in z.files:
                raise ValueError("no jaxcr metadata record")
            arrays = {k: z[k] for k in z.files if k != "__metadata__"}
            metadata = json.loads(str(z["__metadata__"]))
    except Exception as err:  # zipfile, EOF, pickle refusal, JSON: all mean the same to the user
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(
            f"{kind} {path} cannot be used ({reason}): it is damaged or not a jaxcr {kind}. {_DAMAGED_ADVICE[kind]}"
        ) from None
    return arrays, metadata


def save_dataset(ds, path) -> Path:
    """Atomically write an xarray Dataset to netCDF (scipy engine)."""
    return atomic_write(path, lambda tmp: ds.to_netcdf(tmp, engine="scipy"))


def load_dataset(path):
    """Load a Dataset written by :func:`save_dataset` (fully into memory)."""
    import xarray as xr

    with xr.open_dataset(path, engine="scipy") as ds:
        return ds.load()
