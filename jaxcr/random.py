"""One key scheme for every random draw of a field realisation.

Realisation ``i`` of seed ``s`` uses the key ``fold_in(key(s), i)``. The same (seed, index) pair
gives the same field in :meth:`jaxcr.PlaneWaveTurbulence.sample`, in
:func:`jaxcr.run_ensemble` and in the fits' forward model (:mod:`jaxcr.inference`): all of
them take their keys from :func:`realisation_keys`.

Independent sets of realisations drawn from one seed (the emulator's design points, each of
which needs fresh realisations) use a numbered ``stream``. Stream 0 is the main ensemble above;
stream ``k ≥ 1`` folds ``2³² − k`` into the seed's key first, so its realisations are
independent of the main ensemble's and of every other stream's.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Key, PRNGKeyArray

__all__ = ["as_key", "realisation_key", "realisation_keys", "MAX_STREAM"]

MAX_STREAM = 2**31  # streams 1..MAX_STREAM fold in 2³² − k (never a realisation index in practice)


def as_key(seed) -> PRNGKeyArray:
    """A PRNG key from an integer seed, or a key returned unchanged.

    Raises:
        TypeError: for anything else (a float or a bool is not a seed).
    """
    if isinstance(seed, (bool, np.bool_)):
        raise TypeError(f"seed must be an integer or a jax.random key; got {seed!r}")
    if isinstance(seed, (int, np.integer)):
        return jax.random.key(int(seed))
    if isinstance(seed, jax.Array) and jnp.issubdtype(seed.dtype, jax.dtypes.prng_key):
        return seed
    raise TypeError(f"seed must be an integer or a jax.random key; got {type(seed).__name__} {seed!r}")


def _stream_key(seed, stream: int) -> PRNGKeyArray:
    key = as_key(seed)
    if isinstance(stream, bool) or not isinstance(stream, (int, np.integer)) or not 0 <= stream <= MAX_STREAM:
        raise ValueError(f"stream must be an integer in [0, {MAX_STREAM}]; got {stream!r}")
    return key if stream == 0 else jax.random.fold_in(key, jnp.uint32(2**32 - int(stream)))


def realisation_key(seed, index, stream: int = 0) -> PRNGKeyArray:
    """The key of realisation ``index`` (an integer ≥ 0, may be traced) of ``stream`` for ``seed``."""
    if isinstance(index, (bool, np.bool_, float, np.floating)):
        raise TypeError(f"realisation index must be an integer; got {index!r}")
    if isinstance(index, (int, np.integer)) and index < 0:
        raise ValueError(f"realisation index must be >= 0; got {index}")
    return jax.random.fold_in(_stream_key(seed, stream), index)


def realisation_keys(seed, n: int, first: int = 0, stream: int = 0) -> Key[Array, " n"]:
    """Keys of realisations ``first .. first + n − 1`` of ``stream``, shape (n,)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"the number of realisations must be a positive integer; got {n!r}")
    if isinstance(first, bool) or not isinstance(first, (int, np.integer)) or first < 0:
        raise ValueError(f"first realisation must be an integer >= 0; got {first!r}")
    key = _stream_key(seed, stream)
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(jnp.arange(first, first + n))
