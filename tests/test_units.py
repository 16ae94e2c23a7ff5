"""Unit conversions against values computed by hand from SI constants (not via astropy)."""

import numpy as np
import pytest

from jaxcr import units

# Hand computation: r_L = E/(Z e c B); 1 TeV = 1.602176634e-7 J, e = 1.602176634e-19 C,
# c = 299792458 m/s, 1 μG = 1e-10 T, 1 pc = 3.0856775814913673e16 m.
R_L_1TEV_1MUG_PC = 1e12 / (299792458.0 * 1e-10) / 3.0856775814913673e16  # = 1.08100e-3 pc


def test_larmor_radius_of_1tev_proton_in_1muG_matches_hand_value():
    assert units.larmor_radius_pc(1.0, 1.0) == pytest.approx(R_L_1TEV_1MUG_PC, rel=1e-12)


def test_larmor_radius_scales_as_energy_over_charge_and_field():
    # r_L ∝ E/(Z B): 10 TeV helium (Z=2) in 3 μG.
    assert units.larmor_radius_pc(10.0, 3.0, charge=2) == pytest.approx(R_L_1TEV_1MUG_PC * 10 / 6, rel=1e-12)
    e = np.array([1.0, 20.0])
    np.testing.assert_allclose(units.larmor_radius_pc(e, 3.0), R_L_1TEV_1MUG_PC * e / 3, rtol=1e-12)


def test_gyrofrequency_is_c_over_larmor_radius():
    # 1 TeV, 1 μG: Ω = c/r_L = 299792458 / (1.081e-3 pc in m) ≈ 8.99e-6 1/s
    expected = 299792458.0 / (R_L_1TEV_1MUG_PC * 3.0856775814913673e16)
    assert units.gyrofrequency_per_s(1.0, 1.0) == pytest.approx(expected, rel=1e-12)


def test_time_and_length_conversions_round_trip_and_match_hand_values():
    r_l = units.larmor_radius_pc(20.0, 3.0)
    # one gyro-time of a 1 TeV proton in 1 μG: r_L/c = 3.3356e13 m / c = 1.1127e5 s = 3.526e-3 yr
    assert units.time_to_years(1.0, R_L_1TEV_1MUG_PC) == pytest.approx(
        1e12 / (299792458.0**2 * 1e-10) / 31557600.0, rel=1e-12
    )
    assert units.time_to_internal(units.time_to_years(1234.5, r_l), r_l) == pytest.approx(1234.5, rel=1e-13)
    assert units.length_to_pc(units.length_to_internal(3.7, r_l), r_l) == pytest.approx(3.7, rel=1e-13)
    assert units.length_to_internal(r_l, r_l) == pytest.approx(1.0)
