"""The fused Pallas mode-sum kernel (jaxcr.pallas_kernel) on CPU, in Pallas' interpreter.

The interpreter runs the kernel's own code (the block loop, the half-turn reduction, the
polynomial, the masking of padded particles and modes, the Boris step) as XLA operations, so
these tests check its arithmetic against the exact sum ``reference_field`` (``jnp.cos`` and
autodiff, independent of the kernel). That the same kernel is expressible for the GPU is checked
by lowering it to Triton for CUDA here (no GPU needed); compiling it to machine code and timing
it needs a GPU (benchmarks/bench_gpu.py).
"""

import contextlib
import subprocess
import sys
import textwrap
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcr
from jaxcr import pallas_kernel
from jaxcr._fastmath import reference_field


@pytest.fixture(scope="module")
def field():
    return jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters.paper(n_modes=100))


def _exact(f, r):
    return np.asarray(reference_field(jnp.asarray(r), f.wavevectors, f.polarisations, f.phases))


def test_pallas_field_agrees_with_the_exact_sum_at_each_accuracy_level(field):
    # 300 points (not a multiple of the 128-particle block) and N = 100 (not a multiple of the
    # 32-mode block): the padding must contribute nothing. Tolerances as for the native kernel:
    # full 1e-12 of the rms field within 100 r_L (measured 1e-13) and 1e-10 at 1e4 r_L, where the
    # phases (6e5 rad, ulp 1.2e-10) are rounded differently in half-turns; fast 4e-8 (measured
    # 9e-10); float32 2e-6 (measured 3e-7).
    rng = np.random.default_rng(0)
    for scale, full_tol in ((100.0, 1e-12), (1e4, 1e-10)):
        r = rng.uniform(-scale, scale, size=(300, 3))
        exact = _exact(field, r)
        for precision, tol in (("float64", full_tol), ("fast", 4e-8), ("float32", 2e-6)):
            f = field.with_precision(precision).with_layout("pallas")
            b = np.asarray(jax.jit(lambda x, f=f: f.turbulent(x))(r))
            assert np.max(np.abs(b - exact)) < tol, (precision, scale)


@pytest.mark.slow  # 6 s each on 2 cores (interpret mode); the accuracy test stays in the default run
def test_pallas_field_shapes_realisations_and_vmap():
    # A single point, a (5, 4, 3) batch, an ensemble field with its realisation axis leading the
    # positions (as the native kernel takes it), and nested vmap; tolerance 1e-12 as above.
    fields = jaxcr.PlaneWaveTurbulence.sample_ensemble(2, jaxcr.TurbulenceParameters.paper(n_modes=37), 3)
    fields = fields.with_layout("pallas")
    one = fields.realisation(0)
    rng = np.random.default_rng(1)
    for shape in ((3,), (5, 4, 3)):
        r = rng.normal(scale=30.0, size=shape)
        np.testing.assert_allclose(one.turbulent(r), _exact(one, r), rtol=0, atol=1e-12)
    r = rng.normal(scale=50.0, size=(3, 17, 3))
    exact = jax.vmap(lambda f, x: reference_field(x, f.wavevectors, f.polarisations, f.phases))(fields, r)
    np.testing.assert_allclose(fields.turbulent(r), exact, rtol=0, atol=1e-12)
    nested = jax.vmap(lambda f, x: jax.vmap(f.turbulent)(x))(fields, r)
    np.testing.assert_allclose(nested, exact, rtol=0, atol=1e-12)


@pytest.mark.slow  # 6 s each on 2 cores (interpret mode); the accuracy test stays in the default run
def test_pallas_jacobian_and_parameter_gradients_equal_autodiff_of_the_exact_sum(field):
    # ∂b/∂r from the Jacobian kernel, forward and reverse mode, against autodiff of the jnp.cos
    # sum (tolerance 1e-11: |J| ~ 10, rounding ~1e-13); the pathwise gradient in σ² and λ_c
    # against the pure-JAX layout (1e-10 relative: both exact to rounding).
    f = field.with_layout("pallas")
    r = jnp.asarray([12.5, -40.0, 3.25])
    exact = jax.jacfwd(lambda x: reference_field(x, field.wavevectors, field.polarisations, field.phases))(r)
    np.testing.assert_allclose(jax.jacfwd(f.turbulent)(r), exact, rtol=0, atol=1e-11)
    np.testing.assert_allclose(jax.jacrev(f.turbulent)(r), exact, rtol=0, atol=1e-11)
    noise = jaxcr.TurbulenceNoise.sample(jax.random.key(3), 40)
    points = jnp.asarray(np.random.default_rng(3).normal(scale=20.0, size=(50, 3)))

    def total(theta, layout):
        params = jaxcr.TurbulenceParameters(sigma2=theta[0], coherence_length=theta[1], n_modes=40)
        return jnp.sum(jaxcr.PlaneWaveTurbulence.from_parameters(params, noise).with_layout(layout)(points) ** 2)

    theta = jnp.asarray([0.7, 12.0])
    np.testing.assert_allclose(jax.grad(total)(theta, "pallas"), jax.grad(total)(theta, "matmul"), rtol=1e-10)


@pytest.mark.slow  # 6 s each on 2 cores (interpret mode); the accuracy test stays in the default run
def test_pallas_boris_steps_equal_the_per_step_orbits(field):
    # 400 Boris steps (ΩT = 2) from 64 directions inside the kernel against one diffrax step per
    # Boris step in the pure-JAX field: a short orbit, so the sums (equal to ~1e-13) give orbits
    # equal to ~1e-14 r_L (measured 5e-15); tolerance 1e-10 r_L. Also per-particle step counts
    # (particles with fewer steps stop) against that many single steps (1e-12 r_L).
    n = np.random.default_rng(4).normal(size=(64, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    solver = jaxcr.Boris(dt=0.005)
    a = jaxcr.backtrack(field.with_layout("pallas"), n, [1.0, 2.0], solver=solver).positions
    b = jaxcr.backtrack(field.with_layout("matmul"), n, [1.0, 2.0], solver=jaxcr.Boris(dt=0.005, fused=False))
    np.testing.assert_allclose(a, b.positions, rtol=0, atol=1e-10)
    modes = (field.wavevectors, field.polarisations, field.phases, field.regular_field)
    steps = np.array([0, 1, 50, 200])
    r, u = pallas_kernel.boris_advance(np.zeros((4, 3)), -n[:4], 0.01, steps, *modes, charge_sign=-1.0)
    step = lambda _, y: jaxcr.dynamics.boris_step(field.with_layout("matmul"), -1.0, y, 0.01)
    for i, s in enumerate(steps):
        y = jax.jit(jax.lax.fori_loop, static_argnums=2)(0, s, step, (jnp.zeros(3), jnp.asarray(-n[i])))
        np.testing.assert_allclose(r[i], y[0], rtol=0, atol=1e-12)
        np.testing.assert_allclose(u[i], y[1], rtol=0, atol=1e-12)


def test_pallas_kernel_lowers_to_triton_for_cuda(field):
    # The GPU path without a GPU: every kernel (three accuracy levels, the Jacobian, the Boris
    # steps, and a vmap over realisations) lowers to one Triton custom call for the CUDA
    # platform. Lowering fails on any operation Triton cannot express (e.g. lax.round, which the
    # reduction therefore avoids); compiling the Triton code to the card happens only on a GPU.
    modes = (field.wavevectors, field.polarisations, field.phases)
    r = jnp.zeros((300, 3))

    def triton_calls(fn, *args):
        with _cuda_target():
            text = jax.jit(fn).trace(*args).lower(lowering_platforms=("cuda",)).as_text()
        return text.count("__gpu$xla.gpu.triton")

    for precision in ("float64", "fast", "float32"):
        assert triton_calls(lambda x: pallas_kernel.plane_wave_field(x, *modes, precision, interpret=False), r) == 1
    jac = jax.jacfwd(lambda y: pallas_kernel.plane_wave_field(y, *modes, interpret=False))
    assert triton_calls(jac, r[0]) == 1
    boris = lambda x: pallas_kernel.boris_advance(x, x, 0.01, 10, *modes, field.regular_field, interpret=False)
    assert triton_calls(boris, r) == 1
    fields = jaxcr.PlaneWaveTurbulence.sample_ensemble(0, jaxcr.TurbulenceParameters.paper(n_modes=64), 3)
    per_field = lambda f, x: pallas_kernel.plane_wave_field(
        x, f.wavevectors, f.polarisations, f.phases, interpret=False
    )
    assert triton_calls(lambda x: jax.vmap(per_field)(fields, x), jnp.zeros((3, 50, 3))) == 1


def _cuda_target():
    """From jax 0.11 on, lowering the Triton kernel asks for the GPU's compute capability, which
    a machine without one gives through an abstract device: an H200 (sm_90) here."""
    if not hasattr(jax.sharding, "AbstractDevice"):
        return contextlib.nullcontext()
    device = jax.sharding.AbstractDevice(device_kind="NVIDIA H200", num_cores=132, platform="gpu")
    return jax.sharding.use_abstract_mesh(jax.sharding.AbstractMesh((1,), ("d",), abstract_device=device))


def test_auto_layout_on_a_gpu_takes_the_kernel_only_after_its_check(monkeypatch):
    # On CPU AUTO is the native kernel and the Pallas kernel says why it is not used. Pretending
    # the backend is a GPU: the check compiles the kernel, which fails on this CPU, so AUTO falls
    # back to SPLIT with a warning that says why (also where jax has no Pallas Triton backend,
    # deprecated from jax 0.11). The check itself (the kernel against the exact
    # sum, max error < 1e-10) passes when the kernel runs, here in the interpreter.
    assert "GPUs only" in pallas_kernel.unavailable_reason()
    f = jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters(n_modes=8))
    monkeypatch.setattr(pallas_kernel, "_state", {})
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with pytest.warns(RuntimeWarning, match="Pallas mode-sum kernel is unavailable .*failed to compile"):
        assert f.resolved_layout() == jaxcr.ModeSumLayout.SPLIT
    monkeypatch.setattr(pallas_kernel, "_state", {})
    monkeypatch.setattr(pallas_kernel, "pallas_triton", None)  # a jax that has dropped the backend
    with pytest.warns(RuntimeWarning, match="has no Pallas Triton backend"):
        assert f.resolved_layout() == jaxcr.ModeSumLayout.SPLIT
    monkeypatch.setattr(pallas_kernel, "_state", {"reason": None})
    assert f.resolved_layout() == jaxcr.ModeSumLayout.PALLAS and f.uses_fused_kernel()
    monkeypatch.setattr(pallas_kernel, "_state", {})
    monkeypatch.setenv("JAXCR_PALLAS", "0")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f.resolved_layout() == jaxcr.ModeSumLayout.SPLIT
    monkeypatch.undo()
    checks = []  # the check runs when a caller is traced (resolved_layout), so run it inside jit
    jax.jit(lambda x: (checks.append(pallas_kernel._probe()), x)[1])(1.0)
    assert checks == [None]


def test_pallas_options_are_checked(field):
    with pytest.raises(ValueError, match="block_modes must be a power of two"):
        pallas_kernel.Tiling(block_modes=48)
    with pytest.raises(ValueError, match="precision must be"):
        pallas_kernel.plane_wave_field(np.zeros(3), field.wavevectors, field.polarisations, field.phases, "half")
    args = (field.wavevectors, field.polarisations, field.phases, field.regular_field)
    with pytest.raises(TypeError, match="fused Pallas Boris steps have no derivative"):
        jax.grad(lambda h: jnp.sum(pallas_kernel.boris_advance(np.zeros(3), np.ones(3) / 3**0.5, h, 5, *args)[0]))(0.01)


SHARDED = textwrap.dedent("""
    import os
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    import jaxcr
    p = jaxcr.TurbulenceParameters(lambda_min=1.0, lambda_max=100.0, n_modes=16)
    fields = jaxcr.PlaneWaveTurbulence.sample_ensemble(0, p, 2).with_layout("pallas")
    n = jaxcr.pixel_directions(1)
    one = jaxcr.backtrack(fields, n, [5.0], solver=jaxcr.Boris(dt=0.05))
    two = jaxcr.backtrack(fields, n, [5.0], solver=jaxcr.Boris(dt=0.05), devices=2)
    print(float(np.abs(np.asarray(one.positions) - np.asarray(two.positions)).max()))
""")


@pytest.mark.slow
def test_pallas_fused_steps_for_an_ensemble_equal_the_per_step_orbits():
    # Two realisations (the kernel under vmap over mode arrays), as above: tolerance 1e-10 r_L.
    n = jaxcr.pixel_directions(1)[:20]
    fields = jaxcr.PlaneWaveTurbulence.sample_ensemble(5, jaxcr.TurbulenceParameters.paper(n_modes=48), 2)
    a = jaxcr.backtrack(fields.with_layout("pallas"), n, [1.0], solver=jaxcr.Boris(dt=0.005)).positions
    b = jaxcr.backtrack(fields.with_layout("matmul"), n, [1.0], solver=jaxcr.Boris(dt=0.005, fused=False))
    np.testing.assert_allclose(a, b.positions, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_pallas_fused_steps_sharded_over_two_devices_equal_one_device():
    # The multi-device path (shard_map over particles) is unchanged with the kernel inside:
    # 2 forced CPU devices against one, ΩT = 5 (not chaotic yet), tolerance 1e-10 r_L.
    out = subprocess.run([sys.executable, "-c", SHARDED], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert float(out.stdout.strip().splitlines()[-1]) < 1e-10
