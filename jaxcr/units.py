"""Physical <-> internal units.

Internal units (the paper's conventions, README "Conventions"): c = 1, lengths in units of the Larmor radius
r_L = p / (|q| B0), times in units of the inverse gyro-frequency 1/Ω with Ω = |q| B0 c / p
(so r_L = c / Ω), magnetic fields in units of B0. A backtracking time ΩT = 1000 therefore
means 1000 gyro-times, and a position r = 10 means ten Larmor radii.

Cosmic rays at TeV energies are ultra-relativistic, so p c = E to better than 1e-6 for
protons above 1 TeV; the helpers below take the total energy E in TeV and the charge
number Z, i.e. the rigidity R = p c / (Z e) = E / Z in TV. With B in μG:

    r_L = R / (c B) ≈ 1.0810e-3 pc · (E / TeV) / (Z · B / μG)

All functions are plain arithmetic, so they accept floats, NumPy arrays and JAX arrays
(including tracers: a fit can differentiate through r_L(E, B0)).
"""

from __future__ import annotations

from astropy import constants as _const
from astropy import units as _u

from . import _checks

# SI constants from astropy (CODATA 2018), kept as plain floats.
ELEMENTARY_CHARGE_C: float = float(_const.e.si.value)
SPEED_OF_LIGHT_M_S: float = float(_const.c.si.value)
PARSEC_M: float = float(_u.pc.to(_u.m))
YEAR_S: float = float(_u.yr.to(_u.s))  # Julian year
TEV_J: float = float(_u.TeV.to(_u.J))
MICROGAUSS_T: float = 1e-10  # 1 μG = 1e-10 T

#: Larmor radius in pc of a particle with rigidity 1 TV in a 1 μG field (≈ 1.0810e-3 pc).
LARMOR_RADIUS_PC_PER_TV_PER_MUG: float = (TEV_J / ELEMENTARY_CHARGE_C) / (SPEED_OF_LIGHT_M_S * MICROGAUSS_T) / PARSEC_M


def rigidity_tv(energy_tev, charge: float = 1.0):
    """Rigidity R = pc/(Ze) in TV of an ultra-relativistic nucleus with total energy E (TeV)."""
    return energy_tev / charge


def larmor_radius_pc(energy_tev, b_field_microgauss, charge: float = 1.0):
    """Larmor radius r_L in pc for energy E (TeV), field B (μG) and charge number Z.

    r_L = R/(cB) with R = E/Z (ultra-relativistic). 1 TeV proton in 1 μG: 1.0810e-3 pc.
    Concrete inputs must be positive and finite (a ``ValueError`` names the one that is not).
    """
    _checks.check_positive("energy_tev", energy_tev)
    _checks.check_positive("b_field_microgauss", b_field_microgauss)
    _checks.check_positive("charge", charge)
    return LARMOR_RADIUS_PC_PER_TV_PER_MUG * rigidity_tv(energy_tev, charge) / b_field_microgauss


def gyrofrequency_per_s(energy_tev, b_field_microgauss, charge: float = 1.0):
    """Gyro-frequency Ω = c / r_L in 1/s (the internal unit of inverse time)."""
    return SPEED_OF_LIGHT_M_S / (larmor_radius_pc(energy_tev, b_field_microgauss, charge) * PARSEC_M)


def length_to_internal(length_pc, larmor_radius_pc_):
    """A length in pc expressed in Larmor radii (internal length unit)."""
    return length_pc / larmor_radius_pc_


def length_to_pc(length_internal, larmor_radius_pc_):
    """A length in Larmor radii expressed in pc."""
    return length_internal * larmor_radius_pc_


def time_to_years(time_internal, larmor_radius_pc_):
    """A time in units of 1/Ω (ΩT) expressed in years: T = ΩT · r_L / c."""
    return time_internal * larmor_radius_pc_ * PARSEC_M / SPEED_OF_LIGHT_M_S / YEAR_S


def time_to_internal(time_years, larmor_radius_pc_):
    """A time in years expressed in units of 1/Ω (ΩT)."""
    return time_years * YEAR_S * SPEED_OF_LIGHT_M_S / (larmor_radius_pc_ * PARSEC_M)
