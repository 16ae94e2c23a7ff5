"""The native CPU mode-sum kernel (jaxcr.native) against the exact sum in jax.numpy.

The reference is ``native.reference_field``: Σ_n E_n cos(k_n·r + β_n) with ``jnp.cos`` and its
derivatives by JAX's autodiff, independent of the kernel's polynomial and of its vectorisation.
"""

import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcr
from jaxcr import native

pytestmark = pytest.mark.skipif(
    not native.available(), reason=f"native kernel unavailable: {native.unavailable_reason()}"
)


@pytest.fixture(scope="module")
def paper_field():
    return jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters.paper(n_modes=256))


def _reference(field, r):
    return native.reference_field(jnp.asarray(r), field.wavevectors, field.polarisations, field.phases)


def test_native_field_agrees_with_the_exact_sum_at_each_accuracy_level(paper_field):
    # Points within 100 r_L (phases ≤ 6e3 rad, whose own float64 rounding is ~1e-12 rad).
    # Tolerances: full 1e-12 of the rms field (b_rms = 1 here; measured 1.3e-13); fast 4e-8 B0
    # (the established C++ code's SIMD error; measured 5e-10); float32 2e-6 (measured 4e-7).
    # At 1e4 r_L (phases 6e5 rad) the phases themselves are rounded differently (k/π in the
    # kernel, k in the reference: ulp(6e5) = 1.2e-10 rad): tolerance 1e-10 there.
    rng = np.random.default_rng(0)
    for scale, full_tol in ((100.0, 1e-12), (1e4, 1e-10)):
        r = rng.uniform(-scale, scale, size=(2000, 3))
        exact = np.asarray(_reference(paper_field, r))
        for precision, tol in (("float64", full_tol), ("fast", 4e-8), ("float32", 2e-6)):
            field = paper_field.with_precision(precision).with_layout("native")
            b = np.asarray(jax.jit(lambda x: field.turbulent(x))(r))
            assert np.max(np.abs(b - exact)) < tol, (precision, scale)


def test_native_field_handles_odd_mode_counts_and_single_points():
    # N = 37 is padded to the vector block with zero-amplitude modes; shapes (3,), (5, 4, 3).
    field = jaxcr.PlaneWaveTurbulence.sample(1, jaxcr.TurbulenceParameters.paper(n_modes=37)).with_layout("native")
    for shape in ((3,), (5, 4, 3)):
        r = np.random.default_rng(1).normal(scale=30.0, size=shape)
        np.testing.assert_allclose(field.turbulent(r), _reference(field, r), rtol=0, atol=1e-12)


def test_native_field_under_nested_vmap_over_realisations_and_particles():
    # Realisations × particles, and one set of positions shared by all realisations (the kernel
    # broadcasts size-1 batch axes); tolerance 1e-12 as above.
    fields = jaxcr.PlaneWaveTurbulence.sample_ensemble(2, jaxcr.TurbulenceParameters.paper(n_modes=64), 3)
    fields = fields.with_layout("native")
    r = jnp.asarray(np.random.default_rng(2).normal(scale=50.0, size=(3, 17, 3)))
    exact = jax.vmap(lambda f, x: native.reference_field(x, f.wavevectors, f.polarisations, f.phases))(fields, r)
    nested = jax.vmap(lambda f, x: jax.vmap(f.turbulent)(x))(fields, r)
    shared = jax.vmap(lambda f: f.turbulent(r[0]))(fields)
    np.testing.assert_allclose(nested, exact, rtol=0, atol=1e-12)
    exact_shared = jax.vmap(lambda f: native.reference_field(r[0], f.wavevectors, f.polarisations, f.phases))(fields)
    np.testing.assert_allclose(shared, exact_shared, rtol=0, atol=1e-12)


def test_native_jacobian_equals_the_analytic_derivative(paper_field):
    # ∂b/∂r = −Σ E_n k_nᵀ sin(k_n·r + β_n) from the kernel, forward and reverse mode, against
    # autodiff of the jnp.cos sum; tolerance 1e-11 (|J| ~ 10, float64 rounding of the sum ~1e-13).
    f = paper_field.with_layout("native")
    r = jnp.asarray([12.5, -40.0, 3.25])
    exact = jax.jacfwd(lambda x: _reference(paper_field, x))(r)
    np.testing.assert_allclose(jax.jacfwd(f.turbulent)(r), exact, rtol=0, atol=1e-11)
    np.testing.assert_allclose(jax.jacrev(f.turbulent)(r), exact, rtol=0, atol=1e-11)


def test_native_gradient_with_respect_to_turbulence_parameters():
    # Pathwise derivative of Σ b(r) with respect to σ² and λ_c (through the mode arrays), native
    # against the pure-JAX layout; tolerance 1e-10 relative (both exact to rounding).
    noise = jaxcr.TurbulenceNoise.sample(jax.random.key(3), 64)
    r = jnp.asarray(np.random.default_rng(3).normal(scale=20.0, size=(50, 3)))

    def total(theta, layout):
        params = jaxcr.TurbulenceParameters(sigma2=theta[0], coherence_length=theta[1], n_modes=64)
        field = jaxcr.PlaneWaveTurbulence.from_parameters(params, noise).with_layout(layout)
        return jnp.sum(field(r) ** 2)

    theta = jnp.asarray([0.7, 12.0])
    g_native = jax.grad(total)(theta, "native")
    g_xla = jax.grad(total)(theta, "matmul")
    np.testing.assert_allclose(g_native, g_xla, rtol=1e-10)


def test_native_boris_orbits_equal_the_pure_jax_orbits(paper_field):
    # 400 Boris steps (ΩT = 2) from 64 directions: a short orbit, so the two mode sums (equal to
    # ~1e-13) give orbits equal to ~1e-12 r_L; tolerance 1e-10 r_L.
    n = np.random.default_rng(4).normal(size=(64, 3))
    n /= np.linalg.norm(n, axis=1, keepdims=True)
    solver = jaxcr.Boris(dt=0.005)
    a = jaxcr.backtrack(paper_field.with_layout("native"), n, [1.0, 2.0], solver=solver).positions
    b = jaxcr.backtrack(paper_field.with_layout("matmul"), n, [1.0, 2.0], solver=solver).positions
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


@pytest.mark.slow
def test_every_instruction_set_variant_gives_the_same_field(tmp_path):
    # The generic (SSE2), AVX2 and AVX-512 builds, forced one at a time in fresh processes,
    # agree to rounding (1e-13 B0); variants this CPU cannot run are skipped by the library.
    script = textwrap.dedent(
        """
        import numpy as np, jaxcr
        from jaxcr import native
        f = jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters.paper(n_modes=64)).with_layout("native")
        r = np.random.default_rng(5).uniform(-100, 100, size=(300, 3))
        print(native.instruction_set())
        np.save("out.npy", np.asarray(f.turbulent(r)))
        """
    )
    results = {}
    for variant in ("generic", "x86-64-v3", "x86-64-v4"):
        env = dict(os.environ, JAXCR_NATIVE_VARIANT=variant)
        proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=tmp_path)
        if proc.returncode == 0:
            assert proc.stdout.strip() == variant
            results[variant] = np.load(tmp_path / "out.npy")
        else:
            assert "not supported by this CPU" in proc.stderr or "unknown" in proc.stderr, proc.stderr
    assert "generic" in results
    for variant, b in results.items():
        np.testing.assert_allclose(b, results["generic"], rtol=0, atol=1e-13, err_msg=variant)


def test_without_a_compiler_the_pure_jax_sum_is_used_with_a_warning(tmp_path):
    # No compiler on PATH and an empty kernel cache: AUTO falls back to the pure-JAX sum with a
    # RuntimeWarning that says why, and an explicit NATIVE layout is an error naming the cause.
    script = textwrap.dedent(
        """
        import warnings, numpy as np, jaxcr
        f = jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters.paper(n_modes=16))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            b = f(np.zeros(3))
        print("WARN", [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)])
        assert np.allclose(b, f.with_layout("matmul")(np.zeros(3)), atol=1e-14)
        try:
            f.with_layout("native")(np.zeros(3))
        except RuntimeError as err:
            print("ERROR", err)
        """
    )
    env = dict(os.environ, PATH=str(tmp_path), JAXCR_NATIVE_CACHE=str(tmp_path / "cache"))
    env.pop("CXX", None)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "no C++ compiler found" in proc.stdout.split("ERROR")[0]
    assert "ERROR the native CPU mode-sum kernel is unavailable: no C++ compiler found" in proc.stdout


@pytest.mark.slow
def test_switching_the_kernel_off_uses_the_pure_jax_sum_silently(tmp_path):
    script = "import warnings; warnings.simplefilter('error'); import numpy as np, jaxcr; "
    script += "f = jaxcr.PlaneWaveTurbulence.sample(0, jaxcr.TurbulenceParameters.paper(n_modes=16)); "
    script += "print(float(f(np.ones(3))[0]) == float(f.with_layout('matmul')(np.ones(3))[0]))"
    env = dict(os.environ, JAXCR_NATIVE="0")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert proc.returncode == 0 and proc.stdout.strip() == "True", proc.stderr


def _constants(name):
    import re
    from pathlib import Path

    source = (Path(native.__file__).parent / "plane_waves_kernels.cc").read_text()
    body = re.search(rf"constexpr double {name}\[\d+\] = \{{(.*?)\}};", source, re.S).group(1)
    return np.array([float(x) for x in body.replace("\n", " ").split(",") if x.strip()])


def test_kernel_cosine_coefficients_are_the_chebyshev_fits_with_their_stated_errors():
    # The kernel's cos(πs), s ∈ [−1/2, 1/2], as polynomials in u = s²: refit here by Chebyshev
    # interpolation in u (20 000 nodes) and compared; their max errors against np.cos on a fine
    # grid are the ones the kernel's comments state (8 terms ≤ 3e-15, 6 terms ≤ 2.3e-10).
    from numpy.polynomial import Polynomial, chebyshev

    nodes = 0.125 - 0.125 * np.cos(np.pi * (np.arange(20000) + 0.5) / 20000)
    s = np.linspace(0.0, 0.5, 200001)
    for name, terms, bound in (("kCosFull", 8, 3e-15), ("kCosFast", 6, 2.3e-10)):
        fit = chebyshev.chebfit(8 * nodes - 1, np.cos(np.pi * np.sqrt(nodes)), terms - 1)
        refit = Polynomial(chebyshev.cheb2poly(fit))(Polynomial([-1.0, 8.0])).coef
        coeffs = _constants(name)
        # compared as functions: the monomial coefficients of a degree-7 fit in u amplify the fit's
        # rounding (Chebyshev coefficients of ~1e-13 known to ~1e-16) by 8⁷·2⁶ ≈ 1e8, so numpy
        # versions disagree in them at 1e-8 while the polynomials agree to 1e-15 (numpy 2.4.6)
        u = s * s
        poly = np.polynomial.polynomial.polyval
        assert np.max(np.abs(poly(u, coeffs) - poly(u, refit))) < (2e-15 if terms == 8 else 1e-14)
        assert np.max(np.abs(np.polynomial.polynomial.polyval(s * s, coeffs) - np.cos(np.pi * s))) < bound
    # The Jacobian's Taylor coefficients: (−1)^j π^{2j}/(2j)! and (−1)^j π^{2j}/(2j+1)!.
    from math import factorial, pi

    np.testing.assert_allclose(
        _constants("kCosTaylor"), [(-1) ** j * pi ** (2 * j) / factorial(2 * j) for j in range(10)], rtol=1e-15
    )
    np.testing.assert_allclose(
        _constants("kSinTaylor"), [(-1) ** j * pi ** (2 * j) / factorial(2 * j + 1) for j in range(11)], rtol=1e-15
    )


@pytest.mark.slow
def test_native_command_reports_the_library_and_variant():
    proc = subprocess.run([sys.executable, "-m", "jaxcr.cli", "native"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "native CPU kernel:" in proc.stdout and native.instruction_set() in proc.stdout


def test_boris_fused_option_is_checked():
    with pytest.raises(ValueError, match="fused must be None, True or False"):
        jaxcr.Boris(dt=0.01, fused="yes")
