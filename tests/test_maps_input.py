"""Maps as observatories hand them out: FITS headers (ordering, coordinates, columns), UNSEEN
pixels, several files summed, dead pixels, empty maps, a band in radians, and the background's own
noise: each either read right or refused before any work with a message saying what to do."""

import healpy as hp
import numpy as np
import pytest
from astropy.io import fits

from jaxcr.analysis import Analysis
from jaxcr.cli import main
from jaxcr.conventions import BackgroundMethod, shot_noise_level
from jaxcr.observations import OBSERVATORIES, load_spectrum
from jaxcr.observatory import mock_observation, read_healpix_maps, spectrum_from_maps

HAWC = OBSERVATORIES["hawc"]
NSIDE = 8
NPIX = hp.nside2npix(NSIDE)


def _observation(seed=2, events=1e8):
    dipole = 1e-3 * np.stack(hp.pix2vec(NSIDE, np.arange(NPIX)), -1)[:, 0]
    return mock_observation(dipole, HAWC, events=events, seed=seed)


def _write(path, maps, **header):
    """Maps written by healpy, then header keywords set (or deleted where the value is None)."""
    hp.write_map(str(path), maps, dtype=np.float64, overwrite=True)
    with fits.open(path, mode="update") as f:
        for key, value in header.items():
            if value is None:
                del f[1].header[key]
            else:
                f[1].header[key] = value
    return path


def _command(tmp_path, *args):
    out = tmp_path / "spectrum.csv"
    code = main(["spectrum-from-maps", *map(str, args), "--band", "-30", "64", "--energy-tev", "2", "--resamples", "4", "--out", str(out)])  # fmt: skip
    return code, out


def test_nested_maps_under_every_spelling_read_as_the_ring_maps(tmp_path):
    # healpy writes ORDERING='NESTED'; 'NEST' and lower case are common too: each is reordered to
    # RING exactly (a permutation, so equal to the last bit).
    obs = _observation()
    ring = np.stack([obs.counts, obs.background])
    nested = hp.reorder(ring, r2n=True)
    for spelling in ("NESTED", "NEST", "nest"):
        path = _write(tmp_path / f"{spelling}.fits", list(nested), ORDERING=spelling)
        counts, background = read_healpix_maps(path, (0, 1))
        np.testing.assert_array_equal(counts, obs.counts)
        np.testing.assert_array_equal(background, obs.background)
    path = _write(tmp_path / "none.fits", list(nested), ORDERING=None)
    with pytest.raises(ValueError, match="no ORDERING.*ordering='ring' or 'nested'"):
        read_healpix_maps(path, (0, 1))
    np.testing.assert_array_equal(read_healpix_maps(path, (0,), ordering="nested")[0], obs.counts)


def test_nested_data_labelled_ring_is_refused_by_its_background(tmp_path):
    # A time-scrambled background is constant on declination rings; NESTED pixels read as RING
    # mix declinations on every ring, which the command refuses and names the ordering.
    obs = _observation()
    exposure = np.cos(np.radians(90 - np.degrees(hp.pix2ang(NSIDE, np.arange(NPIX))[0]) - 19.0)).clip(0.05)
    expected = np.where(HAWC.mask(NSIDE) > 0, 1e6 * exposure, 0.0)
    counts = np.random.default_rng(0).poisson(expected).astype(float)
    mislabelled = _write(tmp_path / "m.fits", list(hp.reorder(np.stack([counts, expected]), r2n=True)), ORDERING="RING")
    code, _ = _command(tmp_path, mislabelled)
    assert code == 2
    correct = _write(tmp_path / "c.fits", [obs.counts, obs.background])
    assert _command(tmp_path, correct)[0] == 0


def test_galactic_maps_and_missing_columns_are_refused_before_any_work(tmp_path):
    obs = _observation()
    galactic = _write(tmp_path / "g.fits", [obs.counts, obs.background], COORDSYS="G")
    with pytest.raises(ValueError, match="COORDSYS='G'.*equatorial"):
        read_healpix_maps(galactic, (0, 1))
    one = _write(tmp_path / "one.fits", obs.counts)
    with pytest.raises(ValueError, match="1 map column.*no column 1"):
        read_healpix_maps(one, (0, 1))


def test_unseen_pixels_are_outside_the_field_of_view(tmp_path):
    # healpy's UNSEEN outside the field of view: the library refuses it and says what to do; the
    # command leaves those pixels out, which gives the spectrum of the maps with zeros there.
    obs = _observation()
    counts, background = obs.counts.copy(), obs.background.copy()
    outside = np.arange(NPIX) < 40  # the northernmost rings, outside HAWC's band anyway, and more
    counts[outside] = hp.UNSEEN
    background[outside] = hp.UNSEEN
    analysis = Analysis("observed", -30.0, 64.0, BackgroundMethod.TIME_SCRAMBLING)
    with pytest.raises(ValueError, match="UNSEEN.*set counts and background to 0"):
        spectrum_from_maps(counts, background, analysis, energy_tev=2.0)
    code, out = _command(tmp_path, _write(tmp_path / "u.fits", [counts, background]))
    assert code == 0
    zeroed = spectrum_from_maps(
        np.where(outside, 0.0, obs.counts), np.where(outside, 0.0, obs.background), analysis,
        n_resamples=4, energy_tev=2.0,
    )  # fmt: skip
    np.testing.assert_allclose(load_spectrum(out).cl, zeroed.cl, rtol=1e-12)


def test_several_files_are_summed(tmp_path, capsys):
    # Two days of counts and background: the command's spectrum equals the library's on the sums.
    days = [_observation(seed=s, events=5e7) for s in (3, 4)]
    files = [_write(tmp_path / f"day{i}.fits", [d.counts, d.background]) for i, d in enumerate(days)]
    code, out = _command(tmp_path, *files)
    assert code == 0 and "summed over 2 files" in capsys.readouterr().out
    analysis = Analysis("observed", -30.0, 64.0, BackgroundMethod.TIME_SCRAMBLING)
    summed = spectrum_from_maps(
        days[0].counts + days[1].counts, days[0].background + days[1].background, analysis,
        n_resamples=4, energy_tev=2.0,
    )  # fmt: skip
    got = load_spectrum(out)
    np.testing.assert_allclose(got.cl, summed.cl, rtol=1e-12)
    assert got.noise_level == pytest.approx(summed.noise_level, rel=1e-12)


def test_dead_pixels_empty_maps_and_a_band_in_radians_are_refused():
    obs = _observation()
    analysis = Analysis("observed", -30.0, 64.0, BackgroundMethod.TIME_SCRAMBLING)
    dead = obs.counts.copy()
    dead[np.flatnonzero(obs.weights)[5]] = 0.0  # about 1e8/500 expected events there
    with pytest.raises(ValueError, match="1 dead pixels"):
        spectrum_from_maps(dead, obs.background, analysis, energy_tev=2.0)
    with pytest.raises(ValueError, match="no events"):
        spectrum_from_maps(np.zeros(NPIX), obs.background, analysis, energy_tev=2.0)
    with pytest.raises(ValueError, match="radians"):
        Analysis("observed", -0.52, 1.12)
    with pytest.raises(TypeError, match="energy_tev"):
        spectrum_from_maps(obs.counts, obs.background, analysis)  # type: ignore[call-arg]


def test_the_background_samples_noise_adds_one_over_alpha_to_the_noise_level():
    # A background that is the mean of α Poisson copies (B = Poisson(α n)/α) adds variance n/α to
    # the counts' n: the spectrum of δI = N/B − 1 of isotropic skies averages to (1 + 1/α) times the
    # counts' level. 24 skies of 768 pixels, ℓ ≤ 23 (about 13 000 modes): the mean has a relative
    # error of about 1.3 %; 4 % is 3σ, and α = 2 moves the level by 50 %.
    n, alpha = np.full(NPIX, 1e4), 2.0
    rng = np.random.default_rng(5)
    full = Analysis("full")
    cls = []
    for _ in range(24):
        counts = rng.poisson(n).astype(float)
        background = rng.poisson(alpha * n) / alpha
        cls.append(full.data_spectra(counts / background - 1.0, np.ones(NPIX))[0][1:])
    measured = float(np.mean(cls))
    counts, background = rng.poisson(n).astype(float), rng.poisson(alpha * n) / alpha
    spec = spectrum_from_maps(counts, background, full, energy_tev=1.0, background_samples=alpha, n_resamples=8)
    level = shot_noise_level(n, np.ones(NPIX))
    assert spec.noise_level == pytest.approx(level * (1 + 1 / alpha), rel=1e-3)  # background ≈ n to 0.5 %
    assert measured == pytest.approx(spec.noise_level, rel=0.04)
    assert float(np.mean(spec.isotropic_mean)) == pytest.approx(measured, rel=0.06)  # 8 resamplings: 2.5 % error
