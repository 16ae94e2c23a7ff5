"""Sky maps of δI (jaxcr.skymaps) against the analytic helix and healpy."""

import healpy as hp
import numpy as np
import pytest

import jaxcr
from jaxcr import skymaps


def test_sky_maps_in_the_regular_field_alone_are_the_analytic_helix(tmp_path):
    # σ² = 0: b = ẑ. Backtracking moves the antiparticle along +n̂ with du/dτ = −u × ẑ, so
    # z(T) = T n_z exactly (Boris keeps the parallel velocity exactly: tolerance 1e-12) and
    # x(T) = n_x sin T + n_y (cos T − 1) (Boris phase error ~dt²T/12 = 2e-5 rad: tolerance 1e-4).
    params = jaxcr.TurbulenceParameters.paper(n_modes=8, sigma2=0.0)
    nside, T = 4, 2.0
    ds = skymaps.sky_maps(params, nside, [T], solver=jaxcr.Boris(dt=0.01), remove_ell_max=-1)
    n = np.asarray(jaxcr.pixel_directions(nside))
    full = ds.sky_map_full.values[0, 0]  # (gradient, pixel)
    np.testing.assert_allclose(full[0], T * n[:, 2], rtol=0, atol=1e-12)
    np.testing.assert_allclose(full[1], n[:, 0] * np.sin(T) + n[:, 1] * (np.cos(T) - 1), rtol=0, atol=1e-4)
    assert ds.sky_map.attrs["units"] == "1" and "jaxcr_version" in ds.attrs
    # The plot: one Mollweide panel per time and gradient, written as a PNG.
    png = jaxcr.plot.plot_sky_maps(ds, tmp_path / "maps.png")
    assert png.stat().st_size > 10_000


def test_removing_low_multipoles_leaves_only_the_higher_ones():
    # A map of a_1m and a_3m: without ℓ ≤ 1 its healpy spectrum has C_1 ≈ 0 and C_3 unchanged
    # (map2alm with 3 iterations: relative residuals ~1e-6 at nside 16; tolerances 1e-5).
    nside, lmax = 16, 47
    alm = np.zeros(hp.Alm.getsize(lmax), dtype=complex)
    alm[hp.Alm.getidx(lmax, 1, 0)] = 1.0
    alm[hp.Alm.getidx(lmax, 1, 1)] = 0.5 - 0.2j
    alm[hp.Alm.getidx(lmax, 3, 2)] = 0.3 + 0.1j
    m = hp.alm2map(alm, nside, lmax=lmax)
    kept = skymaps.zero_low_multipoles(m, 1)
    cl_before, cl_after = hp.anafast(m, lmax=5, iter=3), hp.anafast(kept, lmax=5, iter=3)
    assert cl_after[1] < 1e-5 * cl_before[1]
    assert abs(cl_after[3] / cl_before[3] - 1) < 1e-5
    np.testing.assert_array_equal(skymaps.zero_low_multipoles(m, -1), m)


def test_sky_maps_refuse_bad_options():
    params = jaxcr.TurbulenceParameters.paper(n_modes=8)
    with pytest.raises(ValueError, match="remove_ell_max"):
        skymaps.sky_maps(params, 4, [1.0], remove_ell_max=12)
    with pytest.raises(ValueError, match="nside"):
        skymaps.sky_maps(params, 0, [1.0])
    with pytest.raises(ValueError, match="times"):
        skymaps.sky_maps(params, 4, [2.0, 1.0])
