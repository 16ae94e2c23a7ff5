"""Minimisation by an optax optimiser, jit- and vmap-able: the one used by every fit and by the
toy fits that calibrate intervals (:mod:`jaxcr.inference.neyman`)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

__all__ = ["minimise"]


def minimise(f, x0, optimiser: optax.GradientTransformation | None = None, max_steps: int = 300, tol: float = 1e-8):
    """Minimise f from x0 with an optax optimiser (default L-BFGS with its zoom line search) until
    |∇f| < tol or ``max_steps``; jit/vmap-able."""
    if optimiser is None:
        return _lbfgs(f, x0, max_steps, tol)
    opt = optax.with_extra_args_support(optimiser)
    value_and_grad = jax.value_and_grad(f)

    def step(carry):
        x, state, _, k = carry
        value, grad = value_and_grad(x)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=f)
        return optax.apply_updates(x, updates), state, optax.tree_utils.tree_norm(grad), k + 1

    def going(carry):
        _, _, gnorm, k = carry
        return (k == 0) | ((k < max_steps) & (gnorm >= tol))

    init = (x0, opt.init(x0), jnp.asarray(jnp.inf, dtype=x0.dtype), jnp.asarray(0))
    return jax.lax.while_loop(going, step, init)[0]


def _lbfgs(f, x0, max_steps: int, tol: float):
    """optax L-BFGS, reusing the line search's value and gradient (the state holds them)."""
    opt = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(f)

    def step(carry):
        x, state = carry
        value, grad = value_and_grad(x, state=state)
        updates, state = opt.update(grad, state, x, value=value, grad=grad, value_fn=f)
        return optax.apply_updates(x, updates), state

    def going(carry):
        _, state = carry
        count = optax.tree_utils.tree_get(state, "count")
        grad = optax.tree_utils.tree_get(state, "grad")
        return (count == 0) | ((count < max_steps) & (optax.tree_utils.tree_norm(grad) >= tol))

    return jax.lax.while_loop(going, step, (x0, opt.init(x0)))[0]
