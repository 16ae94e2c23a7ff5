"""Test configuration: float64 everywhere (DESIGN §3: float32 phases and SHTs are not accurate)."""

import jax

jax.config.update("jax_enable_x64", True)
