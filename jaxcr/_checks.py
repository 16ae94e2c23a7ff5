"""Input validation shared by the public API.

Every check runs eagerly on concrete values, before any expensive work, and raises a
``ValueError`` (``TypeError`` for a value of the wrong kind) that names the offending parameter
and says what is allowed. Inside a traced computation (``jax.grad``, ``jax.jit``) values are
abstract and these checks are skipped; what only shows while tracing (a NaN made inside
compiled code) is caught there by ``equinox.error_if`` (see :mod:`jaxcr.backtracking`).
"""

from __future__ import annotations

import jax
import numpy as np


def is_traced(x) -> bool:
    """True when ``x`` is a JAX tracer (no concrete value available)."""
    return isinstance(x, jax.core.Tracer)


def concrete(x):
    """``x`` as a NumPy array, or ``None`` when it is being traced."""
    if is_traced(x):
        return None
    return np.asarray(x)


def check_finite(name: str, x) -> None:
    v = concrete(x)
    if v is not None and not np.all(np.isfinite(v)):
        bad = np.argwhere(~np.isfinite(v))
        where = f" at index {tuple(bad[0])}" if v.ndim else ""
        raise ValueError(
            f"{name} must be finite; got a non-finite value{where}: {v.ravel()[~np.isfinite(v.ravel())][0]}"
        )


def check_positive(name: str, x) -> None:
    check_finite(name, x)
    v = concrete(x)
    if v is not None and not np.all(v > 0):
        raise ValueError(f"{name} must be > 0; got {v}")


def check_nonnegative(name: str, x) -> None:
    check_finite(name, x)
    v = concrete(x)
    if v is not None and not np.all(v >= 0):
        raise ValueError(f"{name} must be >= 0; got {v}")


def check_less(name_a: str, a, name_b: str, b) -> None:
    va, vb = concrete(a), concrete(b)
    if va is not None and vb is not None and not np.all(va < vb):
        raise ValueError(f"{name_a} must be smaller than {name_b}; got {name_a}={va}, {name_b}={vb}")


def check_last_axis(name: str, x, size: int = 3) -> None:
    shape = np.shape(x)
    if len(shape) == 0 or shape[-1] != size:
        raise ValueError(f"{name} must have shape (..., {size}); got shape {shape}")


def check_direction(name: str, v) -> None:
    """``v`` must be one unit 3-vector."""
    v = np.asarray(v, dtype=float)
    if v.shape != (3,):
        raise ValueError(f"{name} must be a 3-vector; got shape {v.shape}")
    check_unit_vectors(name, v)


def check_unit_vectors(name: str, x, atol: float = 1e-6) -> None:
    check_last_axis(name, x)
    check_finite(name, x)
    v = concrete(x)
    if v is not None:
        norms = np.linalg.norm(v, axis=-1)
        if not np.allclose(norms, 1.0, atol=atol):
            i = int(np.argmax(np.abs(norms - 1.0)))
            raise ValueError(
                f"{name} must be unit vectors (|n| = 1 within {atol}); entry {i} has norm {norms.ravel()[i]:.6g}. "
                "Normalise them first."
            )


def check_increasing_times(name: str, t) -> np.ndarray:
    """Validate a 1-D grid of non-negative, strictly increasing times; return it as NumPy."""
    v = concrete(t)
    if v is None:
        raise ValueError(f"{name} must be concrete (not traced): it sets the number of solver steps")
    v = np.atleast_1d(np.asarray(v, dtype=np.float64))
    if v.ndim != 1 or v.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array; got shape {np.shape(t)}")
    check_finite(name, v)
    if v[0] < 0:
        raise ValueError(f"{name} must be >= 0 (backtracking times Omega*T); got first value {v[0]}")
    if v.size > 1 and not np.all(np.diff(v) > 0):
        i = int(np.argmin(np.diff(v)))
        raise ValueError(f"{name} must be strictly increasing; {name}[{i}]={v[i]} >= {name}[{i + 1}]={v[i + 1]}")
    if v[-1] <= 0:
        raise ValueError(f"{name} must end at a time > 0; got {v[-1]}")
    return v


def check_power_of_two(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1 or (int(n) & (int(n) - 1)) != 0:
        raise ValueError(f"{name} must be a positive power of two (1, 2, 4, ..., 1024); got {n!r}")
    return int(n)


def check_positive_int(name: str, n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive integer; got {n!r}")
    return int(n)


def check_bool(name: str, value) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False; got {value!r}")
    return bool(value)


def check_seed(name: str, seed) -> int:
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be an integer; got {seed!r}")
    if seed < 0:
        raise ValueError(f"{name} must be >= 0; got {seed}")
    return int(seed)


def require_x64(where: str) -> None:
    """Raise unless JAX runs in float64 (jaxcr enables it on import; see the README)."""
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError(
            f"{where} needs float64, but jax_enable_x64 is off (it was switched off after importing jaxcr): "
            "float32 phases and spherical transforms give wrong results (C_ℓ 8.5 % off healpy). Call "
            'jax.config.update("jax_enable_x64", True) before creating arrays.'
        )


def check_scalar(name: str, x) -> None:
    """Raise unless ``x`` is a single number (not a vector), concrete or traced."""
    if np.ndim(x) != 0:
        raise ValueError(f"{name} must be a single number; got shape {np.shape(x)}")


def check_real_array(name: str, x):
    """``x`` as a float array: integers converted, booleans, complex and non-numeric values refused."""
    if is_traced(x):
        return x
    try:
        v = np.asarray(x)
    except Exception as err:  # ragged lists etc.
        raise ValueError(f"{name} must be an array of real numbers; got {type(x).__name__}: {err}") from None
    if np.iscomplexobj(v):
        raise TypeError(f"{name} must be real; got a complex array")
    if v.dtype == bool or not (np.issubdtype(v.dtype, np.integer) or np.issubdtype(v.dtype, np.floating)):
        raise TypeError(f"{name} must be an array of real numbers; got dtype {v.dtype}")
    return x if isinstance(x, jax.Array) and np.issubdtype(v.dtype, np.floating) else v.astype(np.float64)
