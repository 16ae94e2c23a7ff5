"""A spectrum file from HEALPix maps of counts and background (``jaxcr spectrum-from-maps``).

    jaxcr spectrum-from-maps COUNTS.fits [COUNTS2.fits ...] [--background BG.fits [BG2.fits ...]] \\
        --energy-tev E --out spectrum.csv [--band DEC_MIN DEC_MAX] [--estimator pseudo|fsky|k-corrected] \\
        [--background-method time-scrambling|known] [--background-samples ALPHA] [--remove-ell-max L] \\
        [--lmax L] [--resamples N] [--ordering ring|nested]

Maps are HEALPix FITS files as healpy writes them, in equatorial coordinates (``COORDSYS`` C or
absent; a galactic or ecliptic map is refused), in RING or NESTED order (``ORDERING``: RING,
NESTED or NEST; ``--ordering`` where the header has none). Counts and background are two columns
of one file (``--counts-field``, ``--background-field``, default 0 and 1) or one column each of
two files. Several files (days, runs) are summed, counts with counts and background with
background. Pixels at healpy's UNSEEN in either map are outside the field of view (both set to 0,
and counted in the message). The spectrum file it writes (format: jaxcr.observations) states its
estimator, background method, noise level, errors, the band of isotropic skies and the energy,
and is what ``jaxcr fit`` reads.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..options import BackgroundMethod, Estimator
from .command import CommandParser

#: library parameter → this command's flag, for its one-line errors
FLAGS = {"dec_min_deg": "--band", "dec_max_deg": "--band", "background": "--background-method"}


def _parser(prog: str) -> argparse.ArgumentParser:
    s = CommandParser(prog=prog, description=__doc__)
    s.add_argument("counts", type=Path, nargs="+", help="FITS files with the counts map (summed), and the background as a second column unless --background")  # fmt: skip
    s.add_argument("--background", type=Path, nargs="+", help="FITS files with the background map (summed; default: a column of each COUNTS file)")  # fmt: skip
    s.add_argument("--counts-field", type=int, default=0, help="column of the counts map (default 0)")
    s.add_argument("--background-field", type=int, default=None, help="column of the background map (default 1 in the counts file, 0 in its own file)")  # fmt: skip
    s.add_argument("--ordering", choices=("ring", "nested"), help="pixel ordering of the maps, where their headers have no ORDERING (or to override it)")  # fmt: skip
    s.add_argument("--energy-tev", type=float, required=True, help="median energy of the events in TeV, written into the file (a fit's λ_c in pc depends on it; IceCube's is about 20)")  # fmt: skip
    s.add_argument("--band", type=float, nargs=2, default=(-90.0, 90.0), metavar=("DEC_MIN", "DEC_MAX"), help="declination band of the field of view in degrees (default the full sky)")  # fmt: skip
    s.add_argument("--estimator", choices=[e.value for e in Estimator], default="pseudo", help="pseudo: anafast of the masked map (default); fsky: divided by f_sky; k-corrected: by the band's K")  # fmt: skip
    s.add_argument("--background-method", choices=[b.value for b in BackgroundMethod], default="time-scrambling", help="how the background map was estimated (default time-scrambling: the m = 0 modes are lost)")  # fmt: skip
    s.add_argument("--background-samples", type=float, help="α: the background is the mean of α scrambled copies of the data, and its own noise adds 1/α to the noise level (IceCube: 20); default none counted")  # fmt: skip
    s.add_argument("--remove-ell-max", type=int, help="fit and subtract the multipoles ℓ ≤ L on the observed pixels first")  # fmt: skip
    s.add_argument("--lmax", type=int, help="largest multipole (default 2·nside − 1)")
    s.add_argument("--ell-min", type=int, default=1, help="smallest multipole written (default 1)")
    s.add_argument("--resamples", type=int, default=32, help="Poisson resamplings for the errors and isotropic band")
    s.add_argument("--seed", type=int, default=0, help="seed of the resamplings")
    s.add_argument("--observatory", default="observed", help="name written into the spectrum file")
    s.add_argument("--out", type=Path, required=True, help="the spectrum file to write (.csv)")
    return s


def _summed_maps(paths, fields, ordering) -> tuple[list, Any]:
    """Per column of ``fields``, the sum over the files (each file read once, UNSEEN pixels as 0), and
    where any column of any file is UNSEEN."""
    import healpy as hp
    import numpy as np

    from ..observatory import read_healpix_maps

    totals: list = []
    unseen = None
    for path in paths:
        maps = np.stack(read_healpix_maps(path, tuple(fields), ordering=ordering))
        if totals and maps.shape[1] != totals[0].size:
            raise ValueError(
                f"{path} has {maps.shape[1]} pixels, the files before it {totals[0].size}: sum maps of one nside"
            )
        bad = np.isclose(maps, hp.UNSEEN)
        maps = np.where(bad, 0.0, maps)
        unseen = bad.any(0) if unseen is None else unseen | bad.any(0)
        totals = list(maps) if not totals else [t + m for t, m in zip(totals, maps)]
    return totals, unseen


def main(argv=None, prog: str = "jaxcr spectrum-from-maps") -> int:
    args = _parser(prog).parse_args(argv)
    from .. import io
    from ..analysis import Analysis
    from ..observations import save_spectrum
    from ..observatory import spectrum_from_maps

    io.check_writable("--out", args.out)
    analysis = Analysis(
        "observed",
        dec_min_deg=args.band[0],
        dec_max_deg=args.band[1],
        background=args.background_method,
        remove_ell_max=args.remove_ell_max,
        estimator=args.estimator,
    )
    if args.background is None:  # both columns of each counts file, read once
        field = 1 if args.background_field is None else args.background_field
        (counts, background), unseen = _summed_maps(args.counts, (args.counts_field, field), args.ordering)
    else:
        field = 0 if args.background_field is None else args.background_field
        (counts,), unseen = _summed_maps(args.counts, (args.counts_field,), args.ordering)
        (background,), bg_unseen = _summed_maps(args.background, (field,), args.ordering)
        if counts.size != background.size:
            raise ValueError(f"the counts maps have {counts.size} pixels, the background maps {background.size}")
        unseen = unseen | bg_unseen
    counts[unseen], background[unseen] = 0.0, 0.0
    files = " ".join(map(str, args.counts)) + (" --background " + " ".join(map(str, args.background)) if args.background else "")  # fmt: skip
    spec = spectrum_from_maps(
        counts,
        background,
        analysis,
        lmax=args.lmax,
        ell_min=args.ell_min,
        n_resamples=args.resamples,
        seed=args.seed,
        observatory=args.observatory,
        energy_tev=args.energy_tev,
        background_samples=args.background_samples,
        source=f"jaxcr spectrum-from-maps {files}",
    )
    save_spectrum(spec, args.out)
    summed = f" summed over {len(args.counts)} files," if len(args.counts) > 1 else ""
    outside = f", {int(unseen.sum())} UNSEEN pixels left out" if unseen.any() else ""
    print(
        f"wrote {args.out}: ℓ = {spec.ell[0]}..{spec.ell[-1]}, estimator {spec.analysis.estimator.value}, "
        f"noise level {spec.noise_level:.4g}, {int(counts.sum())} events{summed} at {args.energy_tev:g} TeV{outside}\n"
        f"next: jaxcr fit {args.out} [--artifact emulator.npz]   (the shipped artifact of its analysis, if any)"
    )
    return 0
