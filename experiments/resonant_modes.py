"""Does ρ = r_L/λ_c = 0.01 need gyro-resonant modes, and when does its spectrum converge?

    python experiments/resonant_modes.py [--rho 0.01] [--sigma2 0.3 6] [--nside 16] [--realisations 32]
        [--separation-times 1 2 4 8] [--out results/resonant_modes]

The paper's plane-wave model (Giacalone & Jokipii modes, Kolmogorov spectrum, B0 and the CR
gradient along the local interstellar field, the fast field level, each point its own default
Boris step) at one ρ and two σ², backtracked to 1, 2, 4 and 8 times each point's separation time
t_sep(σ², ρ), with two mode ranges at the same density of modes per decade:

* λ_min/λ_c = 0.1 (jaxcr's default; 32 modes over 0.1-10 λ_c): at ρ = 0.01 no mode is
  gyro-resonant, 2π r_L = 0.063 λ_c < λ_min;
* λ_min/λ_c = 0.01 (48 modes over 0.01-10 λ_c): the resonant scale 2π r_L lies inside the range.

Per σ², mode range and stored time it prints ⟨ln C_ℓ⟩ against the last time (the rise still to
come), the per-point convergence test's p-value against the last time
(:func:`jaxcr.inference.convergence.change_p_value`), and at the last time the ratio of ⟨C_ℓ⟩
with and without the resonant modes with its standard error (independent realisations:
SE² = SE₁²/⟨C⟩₁² + SE₂²/⟨C⟩₂² in ln), for the IceCube-like and HAWC-like analyses at the ℓ the
pixel noise resolves (noise ≤ ⟨C_ℓ⟩ in both). Writes resonant_modes.json (every number, with the
settings, seed and versions) and resonant_modes.png. The two campaigns live in --out and resume.
"""

import sys
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

import jaxcr
from jaxcr import io
from jaxcr.inference import Campaign, CampaignSpec, run_campaign
from jaxcr.inference.artifact_build import campaign_spectra
from jaxcr.inference.campaign import software_versions
from jaxcr.inference.convergence import MAX_NOISE_FRACTION, change_p_value
from jaxcr.observations import OBSERVATORIES
from jaxcr.plot import save_figure
from jaxcr.recipes.command import CommandParser, run_command
from jaxcr.sky import LOCAL_INTERSTELLAR_FIELD_RA_DEC, equatorial_direction

MODE_RANGES = {"0.1": (0.1, 32), "0.01": (0.01, 48)}  # λ_min/λ_c: (λ_min/λ_c, modes), 16 modes per decade
SEED = 2026


def campaign_spec(lambda_min: float, n_modes: int, args) -> CampaignSpec:
    """The campaign of one mode range: two σ² at one ρ, stored at multiples of t_sep."""
    b0 = tuple(float(x) for x in equatorial_direction(*LOCAL_INTERSTELLAR_FIELD_RA_DEC))
    model = jaxcr.SpectrumModel(
        nside=args.nside,
        n_realisations=args.realisations,
        turbulence=jaxcr.PlaneWaveGJ99(n_modes=n_modes, lambda_min_over_lc=lambda_min),
        b0_direction=b0,
        gradient_direction=b0,
        seed=SEED,
        field_precision="fast",
    )
    # a one-ρ design; the parametrisation's box needs low < high, so ρ's box is 10⁻⁵ wide (6 digits)
    parameters = jaxcr.plane_wave_parametrisation(
        (min(args.sigma2), max(args.sigma2)), (args.rho, float(f"{args.rho * 1.00001:.6g}"))
    )
    analyses = (OBSERVATORIES["icecube"].analysis, OBSERVATORIES["hawc"].analysis)
    design = np.log([[s2, args.rho] for s2 in args.sigma2])
    return CampaignSpec(model=model, times=tuple(args.separation_times), analyses=analyses, parameters=parameters,
                        design=design, step_per_point=True, separation_times=True)  # fmt: skip


def corrected_spectra(campaign: Campaign, analysis: str) -> tuple[np.ndarray, np.ndarray]:
    """Noise-corrected spectra (K, R, T, lmax+1) and the pixel noise's share of ⟨C_ℓ⟩ (K, T, lmax+1)."""
    spec = campaign.spec
    spectra, noise = (np.stack(x) for x in campaign_spectra(campaign, analysis)[:2])  # one N_B at every point
    t_ell, _ = next(a for a in spec.analyses if a.name == analysis).noise_response(spec.model.nside)
    c = spectra - noise[..., None] * t_ell
    with np.errstate(divide="ignore", invalid="ignore"):
        share = noise.mean(1)[..., None] * t_ell / c.mean(1)
    return c, share


def compare(campaigns: dict, analysis: str, sigma2: list) -> list[dict]:
    """Per σ²: the rise still to come, the convergence p-values, and the ratio of the mode ranges."""
    data = {name: corrected_spectra(c, analysis) for name, c in campaigns.items()}
    rows = []
    for k, s2 in enumerate(sigma2):
        shares = np.stack([share[k, -1, 1:] for _, share in data.values()])  # ℓ ≥ 1
        resolved = np.all((shares > 0) & (shares <= MAX_NOISE_FRACTION), axis=0)
        ells = 1 + np.arange(np.cumprod(resolved).sum())  # ℓ = 1 up to the first unresolved one
        row = dict(analysis=analysis, sigma2=s2, ells=ells.tolist(), ranges={})
        if len(ells) == 0:
            rows.append(row)  # the pixel noise swamps even ℓ = 1
            continue
        for name, (c, _) in data.items():
            x = c[k][..., ells]  # (R, T, L)
            mean = x.mean(0)
            row["ranges"][name] = dict(
                times=list(campaigns[name].spec.point_times(k)),
                log_mean_minus_last=(np.log(mean) - np.log(mean[-1])).tolist(),
                p_change_vs_last=[change_p_value(x[:, j] - x[:, -1]) for j in range(x.shape[1] - 1)],
                mean_last=mean[-1].tolist(),
                se_last=(x[:, -1].std(0, ddof=1) / np.sqrt(len(x))).tolist(),
            )
        a, b = (row["ranges"][n] for n in ("0.01", "0.1"))
        ratio = np.log(a["mean_last"]) - np.log(b["mean_last"])
        se = np.hypot(np.array(a["se_last"]) / a["mean_last"], np.array(b["se_last"]) / b["mean_last"])
        row["ln_ratio_resonant_over_default"], row["ln_ratio_se"] = ratio.tolist(), se.tolist()
        rows.append(row)
    return rows


def _plot(rows, path: Path) -> None:
    fig, axes = plt.subplots(1, len(rows), figsize=(4.2 * len(rows), 3.6), squeeze=False)
    for ax, row in zip(axes[0], rows):
        if not row["ells"]:
            continue
        for name, style in (("0.1", "o-"), ("0.01", "s--")):
            r = row["ranges"][name]
            ax.plot(np.array(r["times"]) / r["times"][0], np.mean(r["log_mean_minus_last"], axis=1), style,
                    label=f"λ_min = {name} λ_c")  # fmt: skip
        ax.set_xscale("log", base=2)
        ax.set_xlabel("T / t_sep(σ², ρ)")
        ax.set_ylabel("ln⟨C_ℓ⟩ − ln⟨C_ℓ⟩(T_last), mean over ℓ")
        ax.set_title(f"{row['analysis']}, σ² = {row['sigma2']:g}", fontsize=9)
        ax.axhline(0, color="0.7", lw=0.8)
        ax.legend(fontsize=8)
    save_figure(fig, path, dpi=120)


def main(argv=None) -> int:
    ap = CommandParser(prog="python experiments/resonant_modes.py", description=__doc__)
    ap.add_argument("--rho", type=float, default=0.01, help="r_L/λ_c of both points (default 0.01)")
    ap.add_argument("--sigma2", type=float, nargs="+", default=[0.3, 6.0], help="turbulence levels σ² (default 0.3 6)")
    ap.add_argument("--nside", type=int, default=16, help="HEALPix nside (default 16)")
    ap.add_argument("--realisations", type=int, default=32, help="N_B per point (default 32)")
    ap.add_argument("--separation-times", type=float, nargs="+", default=[1.0, 2.0, 4.0, 8.0],
                    help="stored times in units of t_sep(σ², ρ) (default 1 2 4 8)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=Path("results/resonant_modes"), help="output folder")
    args = ap.parse_args(argv)
    if not 0 < args.rho < 1:
        ap.error(f"--rho must be in (0, 1); got {args.rho}")
    if len(args.sigma2) < 1 or min(args.sigma2) <= 0:
        ap.error(f"--sigma2 must be > 0; got {args.sigma2}")
    io.check_writable("--out", args.out / "resonant_modes.json")
    campaigns = {}
    for name, (lambda_min, n_modes) in MODE_RANGES.items():
        spec = campaign_spec(lambda_min, n_modes, args)
        campaigns[name] = Campaign.create(args.out / f"lambda_min_{name}", spec, exist_ok=True)
        run_campaign(campaigns[name])
        print(campaigns[name].status())
    rows = compare(campaigns, "icecube", args.sigma2) + compare(campaigns, "hawc", args.sigma2)
    for row in rows:
        if not row["ells"]:
            print(f"\n{row['analysis']}, σ² = {row['sigma2']:g}: the pixel noise exceeds ⟨C_1⟩; raise --nside")
            continue
        print(f"\n{row['analysis']}, σ² = {row['sigma2']:g}, ρ = {args.rho:g}, ℓ = 1..{row['ells'][-1]}")
        for name, r in row["ranges"].items():
            rise = ", ".join(f"{v:+.2f}" for v in np.mean(r["log_mean_minus_last"], axis=1))
            at = ", ".join(f"{t / r['times'][0]:g}" for t in r["times"])
            p = ", ".join(f"{v:.2g}" for v in r["p_change_vs_last"])
            print(f"  λ_min = {name} λ_c: ln⟨C⟩ − last (mean over ℓ) at {at} t_sep: {rise}; p vs last: {p}")
        ratio, se = np.array(row["ln_ratio_resonant_over_default"]), np.array(row["ln_ratio_se"])
        print("  ln(⟨C⟩ with / without resonant modes) at the last time, per ℓ: "
              + ", ".join(f"{v:+.2f}±{s:.2f}" for v, s in zip(ratio, se))
              + f"; mean {ratio.mean():+.2f}, χ²(ratio = 1) = {np.sum((ratio / se) ** 2):.1f} for {len(ratio)} ℓ")  # fmt: skip
    settings = vars(args) | {"out": str(args.out), "seed": SEED, "mode_ranges": MODE_RANGES}
    specs = {name: c.spec.as_dict() for name, c in campaigns.items()}
    io.write_json(args.out / "resonant_modes.json",
                  dict(settings=settings, campaigns=specs, rows=rows, versions=software_versions()))  # fmt: skip
    _plot(rows[: len(args.sigma2)], args.out / "resonant_modes.png")
    print(f"wrote {args.out / 'resonant_modes.json'} and {args.out / 'resonant_modes.png'}")
    return 0


if __name__ == "__main__":
    sys.exit(run_command("python experiments/resonant_modes.py", main))
