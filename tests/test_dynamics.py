"""Backtracking: conventions, analytic helix, Boris order, reversibility, solver agreement."""

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxcr import Boris, PlaneWaveTurbulence, TurbulenceParameters, UniformField, backtrack, default_step, track

UNIFORM = PlaneWaveTurbulence.sample(0, TurbulenceParameters(sigma2=0.0, n_modes=1))  # b = ẑ exactly
# A field whose smallest wavelength (1 r_L) allows dt = 0.05 (λ_min/20).
COARSE = TurbulenceParameters(sigma2=1.0, coherence_length=10.0, lambda_min=1.0, lambda_max=100.0, n_modes=32)
X = jnp.array([[1.0, 0.0, 0.0]])
RUNTIME_ERRORS = (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError)


def test_uniform_field_helix_has_radius_one_and_period_two_pi():
    # Forward proton, p̂(0) = x̂, b = ẑ: r(t) = (sin t, cos t - 1, 0). Boris phase error is
    # T h²/12 ≈ 5e-7 for h = 1e-3, T = 2π; tolerance 1e-5.
    t = np.linspace(0.5, 2 * np.pi, 12)
    out = track(UNIFORM, jnp.zeros((1, 3)), X, t, solver=Boris(dt=1e-3))
    expected = np.stack([np.sin(t), np.cos(t) - 1, 0 * t], -1)
    np.testing.assert_allclose(out.positions[:, 0], expected, atol=1e-5)
    radius = np.linalg.norm(np.asarray(out.positions[:, 0]) - np.array([0.0, -1.0, 0.0]), axis=-1)
    np.testing.assert_allclose(radius, 1.0, atol=1e-6)
    np.testing.assert_allclose(out.positions[-1, 0], 0.0, atol=1e-5)  # back after one period 2π


def test_backtracking_convention_against_analytic_orbit():
    # Observed from n̂ = x̂ ⇒ p̂(0) = -x̂. Forward orbit: p̂(t) = (-cos t, sin t, 0),
    # r(t) = (-sin t, 1 - cos t, 0). Backtracking reports t = -T: r = (sin T, 1 - cos T, 0),
    # p̂ = (-cos T, -sin T, 0). Early on the particle sits in the direction it was seen from.
    T = np.array([0.1, 1.0, 3.0])
    out = backtrack(UNIFORM, X, T, solver=Boris(dt=1e-3))
    np.testing.assert_allclose(out.positions[:, 0], np.stack([np.sin(T), 1 - np.cos(T), 0 * T], -1), atol=1e-5)
    np.testing.assert_allclose(out.momenta[:, 0], np.stack([-np.cos(T), -np.sin(T), 0 * T], -1), atol=1e-5)
    assert float(out.positions[0, 0, 0]) > 0
    # charge sign -1 mirrors the gyration: y-component flips.
    neg = backtrack(UNIFORM, X, T, solver=Boris(dt=1e-3), charge_sign=-1)
    np.testing.assert_allclose(neg.positions[:, 0, 1], -(1 - np.cos(T)), atol=1e-5)


def _boris_error(field, dt, T, ref):
    out = track(field, jnp.zeros((1, 3)), X, [T], solver=Boris(dt=dt))
    return float(jnp.linalg.norm(out.positions[-1, 0] - ref))


def test_boris_converges_with_order_two():
    # Uniform field (analytic reference) and turbulence (Dopri8 at rtol 1e-12 as reference).
    # Observed orders from halving h twice must lie in [1.8, 2.2].
    T = 10.0
    ref_uniform = jnp.array([np.sin(T), np.cos(T) - 1, 0.0])
    field = PlaneWaveTurbulence.sample(3, COARSE)
    ref_turb = track(
        field,
        jnp.zeros((1, 3)),
        X,
        [T],
        solver=diffrax.Dopri8(),
        stepsize_controller=diffrax.PIDController(rtol=1e-12, atol=1e-12),
    ).positions[-1, 0]
    for f, ref in ((UNIFORM, ref_uniform), (field, ref_turb)):
        errs = [_boris_error(f, dt, T, ref) for dt in (0.04, 0.02, 0.01)]
        orders = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
        assert np.all((orders > 1.8) & (orders < 2.2)), (errs, orders)


def test_boris_keeps_unit_momentum_over_long_times():
    # 10⁵ Boris steps (ΩT = 10⁴, h = 0.1) in turbulence: the rotation is norm-preserving, so
    # |p̂| drifts only by rounding (random walk ~ 1e-16 sqrt(1e5)). Tolerance 1e-12.
    field = PlaneWaveTurbulence.sample(4, COARSE)
    n = jnp.array([[0.0, 0.0, 1.0], [0.6, 0.0, 0.8], [0.0, -1.0, 0.0]])
    out = backtrack(field, n, [2500.0, 10000.0], solver=Boris(dt=0.1))
    assert float(jnp.abs(jnp.linalg.norm(out.momenta, axis=-1) - 1).max()) < 1e-12


@pytest.mark.parametrize(
    "options, tol",
    [
        (dict(solver=Boris(dt=0.01)), 1e-8),
        (dict(solver=diffrax.Dopri8(), stepsize_controller=diffrax.PIDController(rtol=1e-11, atol=1e-12)), 1e-6),
    ],
)
def test_backtrack_then_track_forward_returns_to_observer(options, tol):
    # Boris is time-symmetric: reversal is exact up to rounding amplified by chaos
    # (e^{0.25·10} ≈ 12): tolerance 1e-8. Dopri8 at rtol 1e-11: tolerance 1e-6.
    field = PlaneWaveTurbulence.sample(5, COARSE)
    n = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8], [-0.48, 0.6, 0.64]])
    back = backtrack(field, n, [10.0], **options)
    fwd = track(
        field,
        back.positions[-1],
        back.momenta[-1] / jnp.linalg.norm(back.momenta[-1], axis=-1, keepdims=True),
        [10.0],
        **options,
    )
    np.testing.assert_allclose(fwd.positions[-1], 0.0, atol=tol)
    np.testing.assert_allclose(fwd.momenta[-1], -n, atol=tol)


def test_boris_and_adaptive_agree_on_short_turbulent_orbits():
    # ΩT = 10 (before chaos decorrelates orbits): Boris at h = 0.002 has error ~1e-5 r_L;
    # Tsit5 at rtol 1e-10 ~1e-8. Tolerance 1e-4 r_L on displacements of ~10 r_L.
    field = PlaneWaveTurbulence.sample(6, COARSE)
    n = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.6, 0.8], [0.0, 0.0, -1.0]])
    a = backtrack(field, n, [5.0, 10.0], solver=Boris(dt=0.002))
    b = backtrack(
        field, n, [5.0, 10.0], solver=diffrax.Tsit5(), stepsize_controller=diffrax.PIDController(rtol=1e-10, atol=1e-12)
    )
    np.testing.assert_allclose(a.positions, b.positions, atol=1e-4)


def test_boris_and_adaptive_agree_on_ensemble_parallel_diffusion():
    # ΩT = 100: orbits have decorrelated, so compare the statistic ⟨Δz²⟩ over 4 realisations ×
    # 64 particles. The paired difference (same fields, same directions) has its own standard
    # error; tolerance 4 of them.
    fields = PlaneWaveTurbulence.sample_ensemble(7, COARSE, 4)
    n = jax.random.normal(jax.random.key(0), (64, 3))
    n = n / jnp.linalg.norm(n, axis=-1, keepdims=True)
    a = backtrack(fields, n, [100.0], solver=Boris(dt=0.05)).positions[:, -1, :, 2] ** 2
    b = (
        backtrack(
            fields, n, [100.0], solver=diffrax.Tsit5(), stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-8)
        ).positions[:, -1, :, 2]
        ** 2
    )
    d = np.asarray(a - b).ravel()
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert abs(d.mean()) < 4 * se, (float(a.mean()), float(b.mean()), se)
    assert float(a.mean()) > 100.0  # particles really diffused along B0 (non-trivial statistic)


def test_same_seed_gives_identical_backtracking_and_other_realisation_differs():
    n = jnp.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    runs = [
        backtrack(PlaneWaveTurbulence.sample(8, COARSE, realisation=i), n, [20.0], solver=Boris(dt=0.05))
        for i in (0, 0, 1)
    ]
    np.testing.assert_array_equal(runs[0].positions, runs[1].positions)
    assert not np.allclose(runs[0].positions, runs[2].positions)


def test_ensemble_backtracking_matches_single_realisations_and_chunking():
    fields = PlaneWaveTurbulence.sample_ensemble(9, COARSE, 2)
    n = jnp.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    ens = backtrack(fields, n, [1.0, 5.0], solver=Boris(dt=0.05))
    one = backtrack(fields.realisation(1), n, [1.0, 5.0], solver=Boris(dt=0.05), particle_chunk=2)
    assert ens.positions.shape == (2, 2, 3, 3)
    np.testing.assert_allclose(ens.positions[1], one.positions, rtol=1e-12, atol=1e-12)


def test_gradient_of_short_backtrack_wrt_sigma2_matches_finite_differences():
    # Short orbit (ΩT = 2): pathwise AD is meaningful. Central differences with step 1e-5
    # have error ~1e-9; tolerance 1e-6 relative.
    from jaxcr import TurbulenceNoise

    noise = TurbulenceNoise.sample(jax.random.key(10), 16)
    n = jnp.array([[0.0, 0.6, 0.8]])

    def final_x(s2):
        p = TurbulenceParameters(sigma2=s2, coherence_length=10.0, lambda_min=1.0, lambda_max=100.0, n_modes=16)
        f = PlaneWaveTurbulence.from_parameters(p, noise)
        return backtrack(f, n, [2.0], solver=Boris(dt=0.01)).positions[-1, 0, 0]

    g = jax.grad(final_x)(0.9)
    fd = (final_x(0.9 + 1e-5) - final_x(0.9 - 1e-5)) / 2e-5
    assert float(g) == pytest.approx(float(fd), rel=1e-6)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(save_times=[1.0, 1.0]), "save_times"),
        (dict(save_times=[2.0, 1.0]), "save_times"),
        (dict(save_times=[-1.0, 1.0]), "save_times"),
        (dict(save_times=[np.nan]), "save_times"),
        (dict(directions=jnp.array([[1.0, 1.0, 0.0]])), "directions"),
        (dict(directions=jnp.array([[1.0, 0.0]])), "directions"),
        (dict(solver=Boris(dt=-0.1)), "dt"),
        (dict(solver="rk99"), "solver"),
        (dict(adjoint="forward"), "adjoint"),
        (
            dict(solver=Boris(dt=0.1), stepsize_controller=diffrax.PIDController(rtol=1e-6, atol=1e-6)),
            "stepsize_controller",
        ),
        (dict(charge_sign=2), "charge_sign"),
        (dict(field="not a field"), "field"),
    ],
)
def test_bad_backtracking_input_raises_before_work(kwargs, match):
    args = dict(field=UNIFORM, directions=X, save_times=[1.0])
    args.update(kwargs)
    with pytest.raises((ValueError, TypeError), match=match):
        backtrack(**args)


def test_non_finite_field_is_refused_eagerly_and_raises_inside_jit_with_its_cause():
    bad = PlaneWaveTurbulence(
        UNIFORM.wavevectors, UNIFORM.polarisations * jnp.nan, UNIFORM.phases, UNIFORM.regular_field
    )
    with pytest.raises(ValueError, match="polarisations"):
        backtrack(bad, X, [1.0])
    # Traced, the eager check cannot see the values: the NaN made inside the compiled solve must
    # raise with its cause rather than return NaN positions (equinox.error_if), under jit and grad.
    # (under plain jax.jit equinox's error arrives as a JaxRuntimeError carrying the same message)
    with pytest.raises(RUNTIME_ERRORS, match="non-finite position or momentum"):
        jax.jit(lambda f: backtrack(f, X, [1.0], solver=Boris(dt=0.01)).positions)(bad)

    def final_x(scale):
        f = PlaneWaveTurbulence(
            UNIFORM.wavevectors, UNIFORM.polarisations * scale, UNIFORM.phases, UNIFORM.regular_field * scale
        )
        return backtrack(f, X, [1.0], solver=Boris(dt=0.01)).positions[-1, 0, 0]

    assert np.isfinite(float(jax.grad(final_x)(1.0)))
    with pytest.raises(RUNTIME_ERRORS, match="non-finite position or momentum"):
        jax.grad(final_x)(jnp.nan)


def test_boris_steps_end_exactly_on_the_save_times():
    # Boris(dt=0.005) to T = 1 takes exactly 1/0.005 = 200 steps, and saves at T = 0.5 and 1 are
    # states at step ends, not interpolations: the first equals a run that stops at 0.5 bit for bit,
    # the second a run that stops at 1 to rounding (its step ends 0.5 + 0.5·j/100 and j/200 differ
    # by ulps; an interpolated save was 1e-6 r_L off): tolerance 1e-14 r_L.
    field = PlaneWaveTurbulence.sample(11, COARSE)
    out = track(field, jnp.zeros((1, 3)), X, [1.0], solver=Boris(dt=0.005))
    assert int(out.num_steps) == 200
    both = track(field, jnp.zeros((1, 3)), X, [0.5, 1.0], solver=Boris(dt=0.005))
    assert int(both.num_steps) == 200
    half = track(field, jnp.zeros((1, 3)), X, [0.5], solver=Boris(dt=0.005))
    np.testing.assert_array_equal(both.positions[0], half.positions[0])
    np.testing.assert_allclose(both.positions[1], out.positions[0], rtol=0, atol=1e-14)
    # a step that does not divide the interval is shortened to ⌈ΔT/dt⌉ equal steps
    assert int(track(field, jnp.zeros((1, 3)), X, [0.3, 1.0], solver=Boris(dt=0.07)).num_steps) == 5 + 10


def test_default_step_is_lambda_min_over_20_as_a_round_number():
    # λ_min = 0.1 r_L exactly (one mode at k = 2π/0.1): λ_min/20 = 0.005, not one ulp below it.
    field = PlaneWaveTurbulence.from_modes([[0.0, 0.0, 2 * np.pi / 0.1]], [[0.1, 0.0, 0.0]], [0.0])
    assert default_step(field) == 0.005
    assert default_step(UniformField()) == 0.1
    # the same rule from the parameters: the largest of N log-spaced wave numbers is
    # k_min (k_max/k_min)^((N−1)/N), here 2π/0.1 · 1e4^(−1/256)
    params = TurbulenceParameters(sigma2=1.0, coherence_length=10.0, lambda_min=0.1, lambda_max=1000.0, n_modes=256)
    assert default_step(params) == pytest.approx(0.1 * 1e4 ** (1 / 256) / 20, rel=1e-11)
    assert default_step(params) == default_step(PlaneWaveTurbulence.sample(0, params))


def test_uniform_field_class_gives_the_analytic_helix():
    t = np.array([1.0, np.pi])
    out = track(UniformField(), jnp.zeros((1, 3)), X, t, solver=Boris(dt=1e-3))
    np.testing.assert_allclose(out.positions[:, 0], np.stack([np.sin(t), np.cos(t) - 1, 0 * t], -1), atol=1e-5)
