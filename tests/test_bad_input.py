"""A catalogue of bad inputs, as a careless or hurried user gives them.

Every case must raise an exception of a sensible type whose message names the parameter (and
says what is allowed); run-level options must fail before any backtracking or compilation (the
solver entry points are replaced by a function that fails the test if it is reached).
"""

import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcr
from jaxcr import Boris, EnsembleConfig, SpectrumModel, io, run_ensemble
from jaxcr.inference.experimental import CRN, estimate_gradient
from jaxcr.observations import ObservedSpectrum, SpectrumFileError, load_spectrum
from jaxcr.synthetic import synthetic_spectrum
from jaxcr.turbulence_model import PlaneWaveGJ99

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(
    turbulence=dict(sigma2=1.0, coherence_length=10.0, lambda_min=1.0, lambda_max=100.0, n_modes=8),
    nside=2,
    n_realisations=2,
    times=(1.0, 2.0),
    solver=Boris(dt=0.05),
)
PAPER_TURBULENCE = jaxcr.TurbulenceParameters(
    sigma2=1.0, coherence_length=10.0, lambda_min=0.1, lambda_max=1000.0, n_modes=16
)
N = jnp.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


@pytest.fixture
def no_backtracking(monkeypatch):
    """Fail the test if a run reaches the solver: errors must come before any work."""

    def reached(*args, **kwargs):
        raise AssertionError("the run started backtracking before rejecting its input")

    monkeypatch.setattr(jaxcr.simulate, "advance", reached)
    monkeypatch.setattr(jaxcr.simulate, "sample_fields", reached, raising=False)


# --- ensemble configuration: rejected by run_ensemble before any work ------------------------
CONFIG_CASES = [
    (dict(fick_term="no"), TypeError, "fick_term"),
    (dict(seed=1.5), TypeError, "seed"),
    (dict(seed=-1), ValueError, "seed"),
    (dict(charge_sign=2), ValueError, r"charge_sign must be \+1 or -1; got 2"),
    (dict(iterations=-1), ValueError, "iterations"),
    (dict(lmax=0), ValueError, "lmax"),
    (dict(nside=12), ValueError, "nside"),
    (dict(nside=2.0), ValueError, "nside"),
    (dict(n_realisations=0), ValueError, "n_realisations"),
    (dict(n_realisations=1), ValueError, "n_realisations must be >= 2"),
    (dict(n_realisations=2.5), ValueError, "n_realisations"),
    (dict(times=(1.0, 0.5)), ValueError, "times"),
    (dict(times=()), ValueError, "times"),
    (dict(turbulence=dict(sigma2=[1.0, 2.0], n_modes=8)), ValueError, "sigma2 must be a single number"),
    (dict(turbulence=dict(lambda_min=-0.1, n_modes=8)), ValueError, "lambda_min"),
    (dict(turbulence=dict(n_modes=2.5)), ValueError, "n_modes"),
    (dict(turbulence="paper"), TypeError, "turbulence"),
    (dict(gradients={}), ValueError, "gradients"),
    (dict(gradients={"g": (np.nan, 0.0, 0.0)}), ValueError, "gradient 'g'"),
    (dict(solver=Boris(dt=50.0)), ValueError, r"Boris dt = 50/Ω does not resolve .*λ_min"),
    (dict(solver=Boris(dt=-0.1)), ValueError, "dt"),
    (dict(solver="boris"), TypeError, "solver"),
    (dict(field_precision="float16"), ValueError, "field_precision"),
    (dict(field_layout="gemm"), ValueError, "field_layout"),
    (dict(liouville_dipole=(np.nan, 0.0, 0.0)), ValueError, "liouville_dipole"),
    (dict(b0_direction=(1.0, 1.0, 0.0)), ValueError, "b0_direction"),
    (dict(particle_chunk=0), ValueError, "particle_chunk"),
]


@pytest.mark.parametrize("change, error, match", CONFIG_CASES, ids=[str(c[0])[:40] for c in CONFIG_CASES])
def test_bad_ensemble_configuration_is_refused_before_any_work(no_backtracking, change, error, match):
    with pytest.raises(error, match=match):
        run_ensemble(EnsembleConfig(**{**TINY, **change}), progress=False)


def test_bad_run_options_are_refused_before_any_work(no_backtracking, tmp_path):
    cfg = EnsembleConfig(**TINY)
    with pytest.raises(ValueError, match="stop_after"):
        run_ensemble(cfg, stop_after=0, progress=False)
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ValueError, match="output=.*is a file, not a folder"):
        run_ensemble(cfg, output=a_file / "run.nc", progress=False)
    with pytest.raises(ValueError, match="output=.*is a folder"):
        run_ensemble(cfg, output=tmp_path, progress=False)
    with pytest.raises(ValueError, match="checkpoint=.*is a folder"):
        run_ensemble(cfg, checkpoint=tmp_path, progress=False)


@pytest.mark.parametrize("content", [b"", b"PK\x03\x04 truncated", b"not a checkpoint\n", None])
def test_damaged_checkpoints_name_the_file_and_say_how_to_start_afresh(no_backtracking, tmp_path, content):
    path = tmp_path / "run.ckpt.npz"
    if content is None:  # a valid .npz without jaxcr's metadata
        np.savez(path, x=np.zeros(3))
        path = path.with_suffix(".npz")
    else:
        path.write_bytes(content)
    with pytest.raises(io.CheckpointError, match=f"checkpoint {path}.*Delete it to start the run afresh"):
        run_ensemble(EnsembleConfig(**TINY), checkpoint=path, progress=False)


def test_checkpoint_of_another_version_is_reported(no_backtracking, tmp_path):
    path = tmp_path / "old.ckpt.npz"
    io.save_checkpoint(path, dict(positions=np.zeros((2, 48, 3))), dict(jaxcr_version="0.0.1", config_digest="x"))
    with pytest.raises(io.CheckpointError, match="written by jaxcr 0.0.1"):
        run_ensemble(EnsembleConfig(**TINY), checkpoint=path, progress=False)


def test_stale_temporary_files_are_removed_and_files_honour_the_umask(tmp_path):
    path = tmp_path / "run.ckpt.npz"
    stale = tmp_path / ".run.ckpt.npz.abc123.tmp"  # left by a write killed before its rename
    stale.write_bytes(b"partial")
    io.save_checkpoint(path, dict(x=np.ones(2)), dict(a=1))
    assert not stale.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["run.ckpt.npz"]
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask
    np.testing.assert_array_equal(io.load_checkpoint(path)[0]["x"], np.ones(2))


# --- backtracking ----------------------------------------------------------------------------
def test_bad_backtracking_input():
    field = jaxcr.PlaneWaveTurbulence.sample(0, PAPER_TURBULENCE)
    with pytest.raises(ValueError, match=r"λ_min = 0\.1.*dt ≤ λ_min/2"):
        jaxcr.backtrack(field, N, [1.0, 2.0], solver=Boris(dt=50.0))
    with pytest.raises(ValueError, match="gyro-period"):  # strong field, modest step
        jaxcr.backtrack(jaxcr.UniformField((0.0, 0.0, 100.0)), N, [1.0], solver=Boris(dt=0.05))
    # the explicit override runs (and the Boris rotation keeps |p̂| = 1 even so)
    out = jaxcr.backtrack(field, N, [1.0], solver=Boris(dt=0.5, allow_unresolved=True))
    np.testing.assert_allclose(jnp.linalg.norm(out.momenta, axis=-1), 1.0, atol=1e-12)
    with pytest.raises(ValueError, match=r"charge_sign must be \+1 or -1; got 2"):
        jaxcr.backtrack(field, N, [1.0], charge_sign=2)
    with pytest.raises(TypeError, match="realisation index must be an integer; got 2.5"):
        jaxcr.PlaneWaveTurbulence.sample(0, PAPER_TURBULENCE, realisation=2.5)
    with pytest.raises(TypeError, match="seed must be an integer"):
        jaxcr.PlaneWaveTurbulence.sample(1.5, PAPER_TURBULENCE)
    with pytest.raises(TypeError, match="adjoint"):
        jaxcr.backtrack(field, N, [1.0], adjoint="forward")
    with pytest.raises(TypeError, match="field must be an AbstractField"):
        jaxcr.backtrack(np.zeros(3), N, [1.0])
    with pytest.raises(ValueError, match="wavevectors"):
        jaxcr.PlaneWaveTurbulence.from_modes([[np.nan, 0.0, 1.0]], [[1.0, 0.0, 0.0]], [0.0])
    with pytest.raises(ValueError, match="sigma2 must be a single number"):
        jaxcr.TurbulenceParameters(sigma2=np.ones(3))


# --- maps, spectra, units --------------------------------------------------------------------
def test_bad_maps_and_spectra():
    rng = np.random.default_rng(0)
    ints = rng.integers(-5, 5, size=48)
    # integer maps are converted, not refused: the same C_ℓ as the float map (healpy's convention)
    np.testing.assert_allclose(
        jaxcr.angular_power_spectrum(ints), jaxcr.angular_power_spectrum(ints.astype(float)), rtol=1e-14
    )
    with pytest.raises(TypeError, match="maps must be real; got a complex"):
        jaxcr.angular_power_spectrum(np.ones(48) * (1 + 1j))
    with pytest.raises(TypeError, match="maps must be an array of real numbers"):
        jaxcr.angular_power_spectrum(np.ones(48, dtype=bool))
    with pytest.raises(ValueError, match="maps reach .*1e\\+200.*rescale"):
        jaxcr.angular_power_spectrum(np.full(48, 1e200))
    with pytest.raises(ValueError, match="maps must be finite"):
        jaxcr.angular_power_spectrum(np.full(48, np.nan))
    few = np.zeros(192)
    few[:6] = 1.0  # 6 observed pixels cannot hold the 16 coefficients of ℓ ≤ 3
    with pytest.raises(ValueError, match="16 multipole coefficients of ℓ ≤ 3 on 6 observed pixels"):
        jaxcr.angular_power_spectrum(rng.normal(size=192), mask=few, remove_ell_max=3)
    with pytest.raises(ValueError, match="no pixel centre"):
        jaxcr.declination_band_mask(1, 10.0, 11.0)
    pos = rng.normal(size=(2, 48, 3))
    bad = pos.copy()
    bad[0, 3, 1] = np.nan
    with pytest.raises(ValueError, match="positions must be finite"):
        jaxcr.relative_intensity(bad, pos, [0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="diffusion_tensor must be finite"):
        jaxcr.relative_intensity(pos, pos, [0.0, 0.0, 1.0], np.full((3, 3), np.nan))
    for t in (0.0, -1.0):
        with pytest.raises(ValueError, match="time"):
            jaxcr.diffusion.diffusion_tensor(pos, t)
        with pytest.raises(ValueError, match="time"):
            jaxcr.diffusion.relative_diffusion_tensor(pos, t)
    with pytest.raises(ValueError, match="energy_tev must be > 0"):
        jaxcr.units.larmor_radius_pc(-1.0, 3.0)
    with pytest.raises(ValueError, match="b_field_microgauss"):
        jaxcr.units.larmor_radius_pc(1.0, 0.0)


# --- spectrum files --------------------------------------------------------------------------
GOOD = """# observatory: IceCube
# energy_tev: 20
# noise_level: 2.5e-11
# dec_min_deg: -90
# dec_max_deg: -23.6
ell,cl,sigma
1,1.0e-7,1e-8
2,3.0e-8,2e-9
3,1.0e-8,2e-9
"""
FILE_CASES = [
    ("# noise_level: 2.5e-11", "# noise_level: nan", "noise_level"),
    ("# noise_level: 2.5e-11", "# noise_level: -1e-9", "noise_level"),
    ("# energy_tev: 20", "# energy_tev: -20", "energy_tev"),
    ("2,3.0e-8,2e-9", "2,1e300,2e-9", "cl reaches"),
    ("2,3.0e-8,2e-9", "2,3e-8,1e300", "sigma reaches"),
    ("# dec_max_deg: -23.6", "# dec_max_deg: 95", "dec_max_deg"),
    ("# dec_max_deg: -23.6", "# dec_max_deg: -23.6\n# nside: 3", "nside"),
    ("# dec_max_deg: -23.6", "# dec_max_deg: -23.6\n# synthetic: maybe", "synthetic"),
    ("# dec_max_deg: -23.6", "# dec_max_deg: -23.6\n# remove_ell_max: -2", "remove_ell_max"),
]


@pytest.mark.parametrize("old, new, match", FILE_CASES, ids=[c[2] for c in FILE_CASES])
def test_bad_spectrum_file_metadata_and_values_name_the_file(tmp_path, old, new, match):
    path = tmp_path / "spec.csv"
    path.write_text(GOOD.replace(old, new))
    with pytest.raises(SpectrumFileError, match=f"{path}.*{match}"):
        load_spectrum(path)


def test_unreadable_spectrum_files_name_the_file(tmp_path):
    binary = tmp_path / "spectrum.fits"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(SpectrumFileError, match=f"{binary}: not a UTF-8 text file"):
        load_spectrum(binary)
    with pytest.raises(SpectrumFileError, match="cannot be read"):
        load_spectrum(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="same length"):
        ObservedSpectrum(np.arange(1, 4), np.ones(2), np.ones(3), "x", 1.0, 0.0)
    with pytest.raises(ValueError, match="sigma"):
        ObservedSpectrum(np.arange(1, 4), np.ones(3), np.zeros(3), "x", 1.0, 0.0)
    with pytest.raises(TypeError, match="analysis must be an Analysis"):
        ObservedSpectrum(np.arange(1, 4), np.ones(3), np.ones(3), "x", 1.0, 0.0, analysis="icecube")


# --- models and synthetic spectra ---------------------------------------------------------------
MODEL = SpectrumModel(nside=2, n_realisations=4, time=2.0, turbulence=PlaneWaveGJ99(n_modes=8))
VALUES = dict(sigma2=1.0, rho=0.1)
MODEL_CASES = [
    (lambda: PlaneWaveGJ99(lambda_min_over_lc=-0.1), ValueError, "lambda_min_over_lc"),
    (lambda: SpectrumModel(nside=2, n_realisations=1), ValueError, "n_realisations"),
    (lambda: SpectrumModel(nside=3), ValueError, "nside"),
    (lambda: SpectrumModel(turbulence="gj99"), TypeError, "turbulence"),
    (lambda: SpectrumModel(analysis="icecube"), TypeError, "analysis"),
    (lambda: SpectrumModel(field_precision="float16"), ValueError, "field_precision"),
    (lambda: SpectrumModel(b0_direction=(1.0, 1.0, 0.0)), ValueError, "b0_direction"),
    (lambda: SpectrumModel(nside=2, n_realisations=4, dt=5.0).resolved(VALUES), ValueError, "Boris dt = 5"),
    (lambda: MODEL.turbulence.check_names(["sigma2"]), ValueError, r"missing \['rho'\]"),
    (lambda: MODEL.turbulence.check_names(["sigma2", "rho", "kappa"]), ValueError, r"unknown \['kappa'\]"),
    (lambda: jaxcr.Parameter("rho", -1.0, 1.0), ValueError, "log-transformed"),
    (lambda: jaxcr.Parameter("r-l", 0.1, 1.0), ValueError, "identifier"),
    (lambda: jaxcr.Parametrisation((jaxcr.Parameter("a", 1, 2), jaxcr.Parameter("a", 1, 2))), ValueError, "unique"),
    (lambda: jaxcr.plane_wave_parametrisation().coordinates(dict(sigma2=1.0)), ValueError, "missing"),
    (lambda: jaxcr.plane_wave_parametrisation().coordinates(dict(sigma2=-1.0, rho=0.1)), ValueError, "sigma2"),
]


@pytest.mark.parametrize("make, error, match", MODEL_CASES, ids=[c[2][:30] for c in MODEL_CASES])
def test_bad_model_and_parameter_input_is_refused(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_bad_gradient_and_synthetic_input():
    theta = jnp.log(jnp.array([1.0, 0.1]))
    with pytest.raises(TypeError, match="estimator"):
        estimate_gradient(theta, MODEL, "crn")
    with pytest.raises(ValueError, match="step"):
        CRN(step=0.0)
    kw = dict(observatory="s", energy_tev=1.0)
    with pytest.raises(ValueError, match="amplitude"):
        synthetic_spectrum(VALUES, MODEL, amplitude=-1.0, noise_level=0.0, **kw)
    with pytest.raises(ValueError, match="ells"):
        synthetic_spectrum(VALUES, MODEL, amplitude=1.0, noise_level=0.0, ells=[1, 9], **kw)
    with pytest.raises(ValueError, match="noise_level"):
        synthetic_spectrum(VALUES, MODEL, amplitude=1.0, noise_level=np.nan, **kw)
    with pytest.raises(ValueError, match="missing"):
        synthetic_spectrum(dict(sigma2=1.0), MODEL, amplitude=1.0, noise_level=0.0, **kw)
    with pytest.raises(TypeError, match="values"):
        synthetic_spectrum(theta, MODEL, amplitude=1.0, noise_level=0.0, **kw)
    with pytest.raises(TypeError, match="analysis"):
        jaxcr.observatory.spectrum_from_maps(np.ones(48), np.ones(48), "icecube", energy_tev=20.0)


# --- float64 policy --------------------------------------------------------------------------
def test_float32_is_refused_with_a_clear_error():
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(RuntimeError, match="needs float64"):
            jaxcr.backtrack(jaxcr.UniformField(), N, [1.0])
        with pytest.raises(RuntimeError, match="needs float64"):
            jaxcr.angular_power_spectrum(np.ones(48))
        with pytest.raises(RuntimeError, match="needs float64"):
            run_ensemble(EnsembleConfig(**TINY), progress=False)
        params = jaxcr.TurbulenceParameters.paper(n_modes=8)
        # the entry points that make arrays refuse too, instead of returning float32
        for name, call in [
            ("pixel_directions", lambda: jaxcr.pixel_directions(4)),
            ("map_to_alm", lambda: jaxcr.map_to_alm(np.ones(192))),
            ("relative_intensity", lambda: jaxcr.relative_intensity(np.ones((4, 3)), None, [1.0, 0.0, 0.0])),
            ("liouville_map", lambda: jaxcr.liouville_map(np.ones((4, 3)))),
            ("declination_band_mask", lambda: jaxcr.declination_band_mask(4, -30.0, 60.0)),
            ("remove_ring_means", lambda: jaxcr.analysis.remove_ring_means(np.ones(192))),
            ("mode_wavenumbers", lambda: jaxcr.mode_wavenumbers(params)),
            ("PlaneWaveTurbulence.sample", lambda: jaxcr.PlaneWaveTurbulence.sample(0, params)),
            ("UniformField", lambda: jaxcr.UniformField()(np.ones(3))),
        ]:
            with pytest.raises(RuntimeError, match=f"{name} needs float64"):
                call()
    finally:
        jax.config.update("jax_enable_x64", True)


# --- solver settings that would integrate wrongly -------------------------------------------
def test_bad_step_size_controllers_and_unresolved_steps_are_refused():
    import diffrax

    for controller, name in [
        (diffrax.PIDController(rtol=-1.0, atol=1e-10), "rtol"),
        (diffrax.PIDController(rtol=0.0, atol=1e-10), "rtol"),
        (diffrax.PIDController(rtol=1e-8, atol=float("nan")), "atol"),
    ]:
        with pytest.raises(ValueError, match=f"PIDController {name}"):
            jaxcr.backtrack(jaxcr.UniformField(), N, [1.0], solver=diffrax.Tsit5(), stepsize_controller=controller)
    # inside jax.jit the field is traced, its wavelengths unknown; a step of many gyro-periods of B0
    # alone is still refused (it used to run: orbits with |p̂| far from 1)
    jitted = jax.jit(lambda field: jaxcr.backtrack(field, N, [100.0], solver=Boris(dt=50.0)).positions)
    with pytest.raises(ValueError, match="dt = 50/Ω does not resolve the gyro-period"):
        jitted(jaxcr.UniformField())
    # an explicit step that does not resolve the field, through the model spectra (was 268 % off)
    model = SpectrumModel(nside=4, n_realisations=2, turbulence=PlaneWaveGJ99(n_modes=8), dt=2.0, time=10.0)
    with pytest.raises(ValueError, match="dt = 2/Ω does not resolve the field's smallest wavelength"):
        jaxcr.spectrum_model.realisation_spectra({"sigma2": 1.0, "rho": 0.1}, model)


@pytest.mark.parametrize("value, available", [("false", False), ("OFF", False), ("0", False), ("maybe", None)])
def test_the_native_switch_is_read_in_every_spelling(value, available):
    code = "import jaxcr; print(jaxcr.native.available())"
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=300,
        env=dict(os.environ, JAXCR_NATIVE=value),
    )
    if available is None:
        assert out.returncode != 0 and "JAXCR_NATIVE='maybe' is neither on" in out.stderr
    else:
        assert out.stdout.strip() == str(available), out.stderr[-2000:]


@pytest.mark.parametrize("raised", [False, True])
def test_a_damaged_campaign_point_is_found_before_the_run(tmp_path, monkeypatch, raised):
    # also where the point was given more realisations (its file then holds fewer than the spec's)
    from jaxcr.analysis import Analysis
    from jaxcr.inference.campaign import Campaign, CampaignSpec
    from jaxcr.inference.scheduling import run_campaign

    model = SpectrumModel(nside=4, n_realisations=2, turbulence=PlaneWaveGJ99(n_modes=8))
    spec = CampaignSpec.on_grid(
        model, (5.0, 10.0), (Analysis("full"),), jaxcr.plane_wave_parametrisation((0.5, 2.0), (0.05, 0.2)), 2
    )
    campaign = Campaign.create(tmp_path / "c", spec)
    campaign.point_path(1).parent.mkdir(parents=True, exist_ok=True)
    campaign.point_path(1).write_bytes(b"PK\x03\x04 truncated")
    if raised:
        campaign.add_realisations([1], 3)
    ran = []
    monkeypatch.setattr(campaign, "run_task", lambda k: ran.append(k))
    with pytest.raises(ValueError, match=r"1 point file\(s\).*point 1.*damaged.*only these points are recomputed"):
        run_campaign(campaign, progress=False)
    assert ran == []


def test_importing_jaxcr_switches_jax_to_float64():
    code = "import jaxcr, jax.numpy as jnp; print(jnp.zeros(1).dtype, jaxcr.PlaneWaveTurbulence.from_modes([[0, 0, 1]], [[1, 0, 0]], [0]).phases.dtype)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.split() == ["float64", "float64"], out.stderr[-2000:]


# --- experiment scripts: options checked before any run --------------------------------------
SCRIPT_CASES = [
    ("convergence.py", ["--nside", "2"], "--nside must be a power of two >= 4"),
    ("convergence.py", ["--dts", "-0.1"], "--dts must be > 0"),
    ("fig2.py", ["--nside", "3"], "nside"),
    ("fig2.py", ["--dt", "50"], "does not resolve"),
    ("fig2.py", ["--energy-tev", "-1"], "--energy-tev must be positive"),
    ("sky_maps.py", ["--b0-mug", "0"], "--b0-mug must be positive"),
    ("sky_maps.py", ["--remove-ell-max", "500"], "--remove-ell-max must be an integer"),
]


@pytest.mark.parametrize("script, args, match", SCRIPT_CASES, ids=[f"{c[0]} {' '.join(c[1])}" for c in SCRIPT_CASES])
def test_bad_script_options_fail_at_once(tmp_path, script, args, match):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "experiments" / script), *args, "--out", str(tmp_path / "o")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode != 0
    assert match in proc.stderr, proc.stderr[-2000:]
    assert not (tmp_path / "o" / "params.json").exists()  # nothing written for a run that did not start
