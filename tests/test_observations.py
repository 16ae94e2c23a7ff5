"""Spectrum files: round trip, and malformed files rejected with line and column."""

import numpy as np
import pytest

from jaxcr.analysis import Analysis
from jaxcr.observations import OBSERVATORIES, ObservedSpectrum, SpectrumFileError, load_spectrum, save_spectrum

GOOD = """# jaxcr-spectrum: 1
# observatory: IceCube
# energy_tev: 20
# noise_level: 2.5e-11
# dec_min_deg: -90
# dec_max_deg: -23.6
# synthetic: true
ell,cl,sigma
1,1.0e-7,1e-8
2,3.0e-8,2e-9
5,1.0e-9,3e-10
"""


def _write(tmp_path, text):
    p = tmp_path / "spec.csv"
    p.write_text(text)
    return p


def test_round_trip(tmp_path):
    s = load_spectrum(_write(tmp_path, GOOD))
    assert s.observatory == "IceCube" and s.synthetic and s.energy_tev == 20.0
    np.testing.assert_array_equal(s.ell, [1, 2, 5])
    back = load_spectrum(save_spectrum(s, tmp_path / "again.csv"))
    np.testing.assert_array_equal(back.cl, s.cl)
    assert back.metadata() == s.metadata()
    assert s.sky_realisations == 1  # an observed sky is one realisation of the turbulence
    mean_of_64 = load_spectrum(
        _write(tmp_path, GOOD.replace("# synthetic: true", "# synthetic: true\n# sky_realisations: 64"))
    )
    assert mean_of_64.sky_realisations == 64
    assert load_spectrum(save_spectrum(mean_of_64, tmp_path / "m.csv")).sky_realisations == 64


@pytest.mark.parametrize(
    "old, new, match",
    [
        ("ell,cl,sigma", "ell,cl", r"missing column\(s\) sigma"),
        ("2,3.0e-8,2e-9", "2,nan,2e-9", r"line 10, column 'cl': non-finite"),
        ("2,3.0e-8,2e-9", "2,3.0e-8,-2e-9", r"line 10, column 'sigma': must be > 0"),
        ("5,1.0e-9", "1,1.0e-9", r"line 11, column 'ell': multipoles must be strictly increasing"),
        ("2,3.0e-8,2e-9", "2,abc,2e-9", r"line 10, column 'cl': not a number"),
        ("2,3.0e-8,2e-9", "2.5,3.0e-8,2e-9", r"line 10, column 'ell'"),
        ("# energy_tev: 20\n", "", "missing metadata energy_tev"),
        ("2,3.0e-8,2e-9", "2,3.0e-8", r"line 10: 2 values for 3 columns"),
        ("# synthetic: true", "# synthetic: true\n# sky_realisations: 0", "sky_realisations must be >= 1"),
        ("# synthetic: true", "# synthetic: true\n# sky_realisations: many", r"line 8: metadata 'sky_realisations'"),
    ],
)
def test_malformed_files_name_line_and_column(tmp_path, old, new, match):
    with pytest.raises(SpectrumFileError, match=match):
        load_spectrum(_write(tmp_path, GOOD.replace(old, new)))


def test_presets_carry_published_characteristics():
    # noise level ≈ f_sky 4π / N_CR (Sec. 1)
    for key in ("icecube", "hawc"):
        o = OBSERVATORIES[key]
        assert o.published_noise_level == pytest.approx(o.f_sky * 4 * np.pi / o.events, rel=0.1)


def test_observed_spectrum_metadata_excludes_arrays():
    s = ObservedSpectrum(np.array([1]), np.array([1.0]), np.array([0.1]), "x", 1.0, 0.0, Analysis("x", -10.0, 10.0))
    assert "ell" not in s.metadata() and s.metadata()["observatory"] == "x"
    assert s.metadata()["dec_min_deg"] == -10.0 and "analysis" not in s.metadata()  # as the file has them
