"""The package's shape: no private cross-module imports, no import cycles, modules of ~400 lines
at most, one key scheme (the same field through every path)."""

import ast
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxcr
from jaxcr.random import realisation_keys

PACKAGE = Path(jaxcr.__file__).parent
MAX_MODULE_LINES = 400


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path, path.name == "__init__.py"


MODULES = {name: (path, is_pkg) for name, path, is_pkg in _modules()}


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    base = base if is_pkg else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str):
    """(imported module, [names]) for every import of a jaxcr module inside ``module``."""
    path, is_pkg = MODULES[module]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            target = _resolve(module, is_pkg, node)
            if target.startswith("jaxcr"):
                yield target, [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("jaxcr"):
                    yield a.name, []


def test_no_module_imports_another_modules_private_name():
    # `from .x import _name` (a private function, class or constant of another module) is
    # refused; private *modules* (jaxcr._checks, jaxcr._version, ...) are the package's shared
    # internals and may be imported. Attribute access `module._name` is refused too.
    bad = []
    for module in MODULES:
        path, _ = MODULES[module]
        for target, names in _imports(module):
            for n in names:
                if n.startswith("_") and not n.startswith("__") and f"{target}.{n}" not in MODULES:
                    bad.append(f"{module}: from {target} import {n}")
        tree = ast.parse(path.read_text())
        imported_modules = {
            a.asname or a.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for a in node.names
            if f"{_resolve(module, MODULES[module][1], node)}.{a.name}" in MODULES
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
                and isinstance(node.value, ast.Name)
                and node.value.id in imported_modules
                and not node.value.id.startswith("_")
            ):
                bad.append(f"{module}: {node.value.id}.{node.attr}")
    assert not bad, bad


def test_import_graph_has_no_cycle():
    graph = {}
    for module in MODULES:
        edges = set()
        for target, names in _imports(module):
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in MODULES]
            edges.update(subs)
            if target in MODULES and len(subs) < len(names) or (target in MODULES and not names):
                edges.add(target)
        edges.discard(module)
        # a package's own __init__ importing its submodules is how packages work, not a cycle
        graph[module] = {e for e in edges if not module.startswith(e + ".")}
    state, cycle = {}, []

    def visit(node, stack):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycle, cycle
    assert "jaxcr.simulate" in graph and "jaxcr.forward" in graph["jaxcr.simulate"]  # the graph is not empty


def test_no_module_is_longer_than_about_400_lines():
    long = {
        name: n for name, (path, _) in MODULES.items() if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, long


def test_same_seed_and_index_give_the_same_field_everywhere():
    # Realisation i of seed s is the same field, bit for bit, through PlaneWaveTurbulence.sample,
    # the ensemble run (EnsembleConfig.fields, which run_ensemble backtracks) and the fits' model
    # (SpectrumModel.fields at the θ of the same parameters).
    seed, n = 17, 3
    lc, lmin, lmax, modes = 10.0, 1.0, 100.0, 16
    params = jaxcr.TurbulenceParameters(
        sigma2=0.5, coherence_length=lc, lambda_min=lmin, lambda_max=lmax, n_modes=modes
    )
    cfg = jaxcr.EnsembleConfig(
        turbulence=dict(sigma2=0.5, coherence_length=lc, lambda_min=lmin, lambda_max=lmax, n_modes=modes),
        n_realisations=n,
        seed=seed,
        nside=2,
    )
    turbulence = jaxcr.PlaneWaveGJ99(n_modes=modes, lambda_min_over_lc=lmin / lc, lambda_max_over_lc=lmax / lc)
    model = jaxcr.SpectrumModel(n_realisations=n, turbulence=turbulence, seed=seed, dt=0.05)
    values = jaxcr.plane_wave_parametrisation().values(jnp.log(jnp.array([0.5, 1.0 / lc])))
    ensemble, fitted = cfg.fields(), model.fields(values)
    for i in range(n):
        single = jaxcr.PlaneWaveTurbulence.sample(seed, params, realisation=i)
        for name in ("wavevectors", "polarisations", "phases", "regular_field"):
            np.testing.assert_array_equal(getattr(ensemble.realisation(i), name), getattr(single, name), err_msg=name)
            # the fit's θ → parameters conversion (λ = (λ/λ_c)/ρ) rounds like a user's division:
            # compare to 1e-14 relative, the rounding of 1/ρ
            np.testing.assert_allclose(
                getattr(fitted.realisation(i), name), getattr(single, name), rtol=1e-14, atol=1e-15, err_msg=name
            )
        np.testing.assert_array_equal(fitted.realisation(i).phases, single.phases)  # the random draws themselves
    keys = realisation_keys(seed, n)
    np.testing.assert_array_equal(
        jax.random.key_data(keys[1]), jax.random.key_data(jax.random.fold_in(jax.random.key(seed), 1))
    )
    other = jaxcr.PlaneWaveTurbulence.sample(seed + 1, params)
    assert not np.allclose(other.phases, jaxcr.PlaneWaveTurbulence.sample(seed, params).phases)


@pytest.mark.slow
def test_jaxtyping_annotations_hold_on_the_main_path(tmp_path):
    # jaxtyping + beartype check every annotated jaxcr function and Module at run time (import
    # hook, tests/typecheck.py) along parameters → field → backtracking → maps → spectra →
    # diffusion → forward model → the fits' model, with valid inputs; any shape, dtype or type
    # that contradicts an annotation raises. Run in a fresh process so the hook sees every import.
    import subprocess
    import sys

    script = tmp_path / "typed.py"
    script.write_text(
        "import sys, jax\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "jax.config.update('jax_enable_x64', True)\n"
        "from jaxtyping import install_import_hook\n"
        "with install_import_hook('jaxcr', 'typecheck.checker'):\n"
        "    import jaxcr\n"
        "    from jaxcr import inference\n"
        "import jax.numpy as jnp\n"
        "p = jaxcr.TurbulenceParameters(sigma2=1.0, coherence_length=10.0, lambda_min=1.0, lambda_max=100.0, n_modes=8)\n"
        "f = jaxcr.PlaneWaveTurbulence.sample_ensemble(0, p, 2)\n"
        "n = jaxcr.pixel_directions(2)\n"
        "t = jaxcr.backtrack(f, n, [1.0, 2.0], solver=jaxcr.Boris(dt=0.05))\n"
        "k, _ = jaxcr.diffusion.diffusion_tensor(t.positions[:, -1], 2.0)\n"
        "m = jaxcr.relative_intensity(t.positions[:, -1], t.momenta[:, -1], jnp.array([0.0, 0.0, 1.0]), k)\n"
        "cl = jaxcr.angular_power_spectrum(m)\n"
        "cfg = jaxcr.EnsembleConfig(turbulence=dict(lambda_min=1.0, lambda_max=100.0, n_modes=8), nside=2,\n"
        "                           n_realisations=2, times=(1.0, 2.0), solver=jaxcr.Boris(dt=0.05))\n"
        "ds = jaxcr.run_ensemble(cfg, progress=False)\n"
        "model = jaxcr.SpectrumModel(nside=2, n_realisations=2, time=1.0, turbulence=jaxcr.PlaneWaveGJ99(n_modes=8))\n"
        "s = jaxcr.spectrum_model.realisation_spectra(dict(sigma2=1.0, rho=0.1), model)\n"
        "print('typed ok', cl.shape, s.shape, ds.cl.shape)\n"
    )
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "typed ok" in out.stdout


def test_the_model_layer_does_not_import_inference():
    # synthetic spectra, the forward model, the spectrum model and the observatory sit below
    # inference: none of them imports it (the import graph's layers).
    for module in ("jaxcr.synthetic", "jaxcr.spectrum_model", "jaxcr.forward", "jaxcr.observatory", "jaxcr.analysis"):
        assert not [t for t, _ in _imports(module) if t.startswith("jaxcr.inference")], module


ANALYSIS_SETTINGS = {"dec_min_deg", "dec_max_deg", "background", "background_method", "remove_ell_max", "estimator",
                     "mask", "weights", "dec_band"}  # fmt: skip


def test_no_analysis_setting_is_declared_outside_the_analysis():
    # How an observatory sees the sky has one owner, jaxcr.analysis.Analysis; every record that
    # needs it holds an Analysis, none declares a setting of its own.
    import dataclasses

    from jaxcr.analysis import Analysis
    from jaxcr.inference import CampaignSpec, EmulatorArtifact
    from jaxcr.observations import Observatory, ObservedSpectrum

    assert {f.name for f in dataclasses.fields(Analysis)} >= ANALYSIS_SETTINGS - {
        "background_method",
        "mask",
        "weights",
        "dec_band",
    }
    for record in (Observatory, ObservedSpectrum, jaxcr.SpectrumModel, CampaignSpec, EmulatorArtifact):
        names = {f.name for f in dataclasses.fields(record)}
        assert not names & ANALYSIS_SETTINGS, (record.__name__, names & ANALYSIS_SETTINGS)
    sky_fields = set(jaxcr.SkyModel.__dataclass_fields__)
    assert not sky_fields & ANALYSIS_SETTINGS and "analysis" in sky_fields
    for record in (Observatory, ObservedSpectrum, jaxcr.SpectrumModel, jaxcr.SkyModel):
        assert "analysis" in {f.name for f in dataclasses.fields(record)}, record.__name__
