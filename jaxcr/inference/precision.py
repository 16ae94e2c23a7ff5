"""The precision one observed sky can give: the Fisher information of the one-sky likelihood.

The forecast uses the fit's own likelihood (:func:`jaxcr.inference.sky_fit.sky_likelihood`) on the
spectrum the model predicts at the fiducial point: a Gaussian likelihood with a mean and a
covariance that both depend on the parameters, so its Fisher matrix is
F_ij = ∂_iμᵀ Σ⁻¹ ∂_jμ + ½ tr(Σ⁻¹ ∂_iΣ Σ⁻¹ ∂_jΣ) (:func:`fisher_information`; for a Student-t likelihood its weighted form).
Its inverse forecasts the 1σ of every named parameter's coordinate (e-folds for log parameters)
before any data are fitted. :func:`expected_joint_precision` does the same for spectra at several
energies fitted together (:func:`jaxcr.inference.joint_fit.joint_sky_likelihood`) and says what the
joint fit gains over each energy alone. :func:`residuals_at_truth` asks the converse of a set of
mock skies made at a known truth: do they scatter about the model there as the likelihood says?
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from .. import _checks, units
from ..field import as_option
from ..observations import ObservedSpectrum
from ..parametrisation import RHO, SIGMA2
from . import tails
from .artifact import EmulatorArtifact
from .joint_fit import LAMBDA_C, joint_sky_likelihood
from .likelihood import AbstractLikelihood, LikelihoodForm
from .sky_fit import sky_likelihood

__all__ = [
    "expected_joint_precision",
    "expected_precision",
    "fiducial_spectrum",
    "fisher_information",
    "residuals_at_truth",
    "describe_residuals",
]


def fisher_information(likelihood: AbstractLikelihood, phi) -> np.ndarray:
    """The Fisher matrix at φ, summed over the likelihood's independent blocks: for a Gaussian
    block with φ-dependent mean and covariance F_ij = ∂_iμᵀ Σ⁻¹ ∂_jμ + ½ tr(Σ⁻¹ ∂_iΣ Σ⁻¹ ∂_jΣ), for
    a t block its weighted form (:func:`jaxcr.inference.tails.fisher_block`); derivatives by
    automatic differentiation. Its inverse forecasts the 1σ of the coordinates before any data are
    fitted."""
    phi = jnp.asarray(phi, dtype=float)
    blocks = likelihood.blocks(phi)
    # ∂μ_b (n, p) and ∂Σ_b (n, n, p) of every block, in one pass
    derivatives = jax.jacfwd(lambda p: [b[1:3] for b in likelihood.blocks(p)])(phi)
    f = sum(
        tails.fisher_block(dmu, dsig, jnp.linalg.inv(sigma), sigma.shape[0], dof)
        for (_, _, sigma, dof), (dmu, dsig) in zip(blocks, derivatives)
    )
    out = np.asarray(f)
    return 0.5 * (out + out.T)


def fiducial_spectrum(
    artifact: EmulatorArtifact,
    values: dict,
    amplitude: float,
    *,
    ell_max: int,
    noise_level: float = 0.0,
    relative_error: float = 0.0,
    form: LikelihoodForm | str = LikelihoodForm.LOGNORMAL,
) -> ObservedSpectrum:
    """The spectrum the artifact predicts at the named ``values`` with amplitude a, ℓ from the
    artifact's first to ``ell_max``: Ĉ_ℓ = a C_ℓ + N (C_ℓ the median exp⟨ln C_ℓ⟩ for the
    log-normal form, the mean ⟨C_ℓ⟩ for the Gaussian one), with errors σ_ℓ² = (2/(2ℓ+1)) N² +
    (``relative_error``·a C_ℓ)² (shot noise and a relative systematic)."""
    _checks.check_positive("amplitude", amplitude)
    _checks.check_nonnegative("noise_level", noise_level)
    _checks.check_nonnegative("relative_error", relative_error)
    rows = np.flatnonzero(artifact.ells <= _checks.check_positive_int("ell_max", ell_max))
    if len(rows) < 3:
        raise ValueError(f"ell_max = {ell_max} leaves fewer than 3 of the artifact's ℓ = {artifact.ells.tolist()}")
    theta = jnp.asarray(artifact.parameters.coordinates(values))
    lognormal = as_option(LikelihoodForm, "form", form) == LikelihoodForm.LOGNORMAL
    emulator = artifact.log_emulator if lognormal else artifact.emulator
    c = amplitude * np.asarray(emulator.mean(theta))[rows]
    ell = artifact.ells[rows]
    sigma = np.sqrt(2.0 / (2 * ell + 1) * noise_level**2 + (relative_error * c) ** 2)
    return ObservedSpectrum(
        ell=ell,
        cl=c + noise_level,
        sigma=np.maximum(sigma, 1e-300),
        observatory="forecast",
        energy_tev=1.0,
        noise_level=noise_level,
        analysis=artifact.analysis,
        synthetic=True,
        source="jaxcr.inference.precision.fiducial_spectrum",
    )


def expected_precision(
    artifact: EmulatorArtifact,
    values: dict,
    amplitude: float,
    *,
    ell_max: int,
    noise_level: float = 0.0,
    relative_error: float = 0.0,
    amplitude_known: bool = True,
    form: LikelihoodForm | str = LikelihoodForm.LOGNORMAL,
) -> dict:
    """Expected 1σ of every parameter's coordinate (e-folds for log parameters) from one sky at the
    named ``values`` with amplitude a (:func:`fiducial_spectrum`), by the Fisher information of the
    fit's likelihood of ``form``; with ``amplitude_known`` False, ln a is a parameter too (named
    ``amplitude``). Also: the best-measured combination of the artifact's parameters, its 1σ, and
    (for two parameters) their correlation."""
    spectrum = fiducial_spectrum(
        artifact, values, amplitude, ell_max=ell_max, noise_level=noise_level, relative_error=relative_error, form=form
    )
    names, cov = _one_sky_covariance(spectrum, artifact, values, amplitude, amplitude_known, form)
    sd = np.sqrt(np.diag(cov))
    p = len(artifact.parameters)
    vals, vecs = np.linalg.eigh(cov[:p, :p])  # the best-measured combination of the artifact's parameters
    best = vecs[:, 0] / np.max(np.abs(vecs[:, 0]))
    labels = artifact.parameters.labels
    out: dict = {name: float(s) for name, s in zip(names, sd)}
    out |= dict(
        best_combination=" ".join(f"{c:+.2f}·ln {n}" for c, n in zip(best, labels)),
        best_combination_sigma=float(np.sqrt(vals[0]) * np.linalg.norm(best)),
        ell_max=int(ell_max),
        n_ell=len(spectrum.ell),
    )
    if p == 2:
        out["correlation"] = float(cov[0, 1] / (sd[0] * sd[1]))
    return out


def _one_sky_covariance(spectrum, artifact, values, amplitude, amplitude_known, form) -> tuple[tuple, np.ndarray]:
    """The names and the inverse Fisher matrix of the one-sky likelihood of ``spectrum`` at ``values``
    (ln a a parameter too unless ``amplitude_known``)."""
    like = sky_likelihood(spectrum, artifact, amplitude=amplitude if amplitude_known else None, form=form)
    phi = artifact.parameters.coordinates(values)
    if not amplitude_known:
        phi = np.append(phi, np.log(amplitude))
    return like.names, np.linalg.inv(fisher_information(like, phi))


def expected_joint_precision(
    artifacts: list[EmulatorArtifact],
    energies_tev: list[float],
    sigma2: float,
    lambda_c_pc: float,
    *,
    gradient_per_pc: float,
    ell_max: int,
    b0_microgauss: float = 3.0,
    charge: float = 1.0,
    noise_levels: list[float] | None = None,
    relative_error: float = 0.0,
    gradient_known: bool = True,
    form: LikelihoodForm | str = LikelihoodForm.LOGNORMAL,
) -> dict:
    """Expected 1σ (e-folds) of ln σ² and ln λ_c from one sky at each energy E_k (TeV), the skies
    sharing σ² and λ_c (pc) while ρ_k = r_L(E_k, B0)/λ_c and a_k = (|∇n/n| r_L(E_k))²: the
    Fisher information of the joint likelihood on the fiducial spectra (:func:`fiducial_spectrum`
    with ``noise_levels[k]``), against each energy alone (its one-sky forecast; there
    σ(ln λ_c) = σ(ln ρ_k) as r_L is known). ``gradient_known`` False fits every a_k. Returns
    ``joint`` and ``alone`` (one dict per energy) of 1σ by name, and ``gain``: the best single
    energy's 1σ over the joint one, per parameter."""
    artifacts, energies = list(artifacts), [float(e) for e in energies_tev]
    if len(artifacts) != len(energies) or len(energies) < 2:
        raise ValueError(f"give >= 2 energies and one artifact each; got {len(energies)} and {len(artifacts)}")
    noise = [0.0] * len(energies) if noise_levels is None else [float(n) for n in noise_levels]
    if len(noise) != len(energies):
        raise ValueError(f"noise_levels needs one value per energy ({len(energies)}); got {len(noise)}")
    for e in energies:
        _checks.check_positive("energies_tev", e)
    _checks.check_positive("lambda_c_pc", lambda_c_pc)
    _checks.check_positive("gradient_per_pc", gradient_per_pc)
    r_l = [float(units.larmor_radius_pc(e, b0_microgauss, charge)) for e in energies]
    amplitudes = [(gradient_per_pc * r) ** 2 for r in r_l]
    spectra, alone = [], []
    for art, e, r, a, n in zip(artifacts, energies, r_l, amplitudes, noise):
        values = {SIGMA2: sigma2, RHO: r / lambda_c_pc}
        spec = fiducial_spectrum(
            art, values, a, ell_max=ell_max, noise_level=n, relative_error=relative_error, form=form
        )
        spectra.append(dataclasses.replace(spec, energy_tev=e))
        names, cov = _one_sky_covariance(spec, art, values, a, gradient_known, form)
        sd = dict(zip(names, np.sqrt(np.diag(cov))))
        alone.append({SIGMA2: float(sd[SIGMA2]), LAMBDA_C: float(sd[RHO])})
    joint, _, _, _ = joint_sky_likelihood(
        spectra, artifacts, gradient_per_pc=gradient_per_pc if gradient_known else None,
        b0_microgauss=b0_microgauss, charge=charge, form=form,
    )  # fmt: skip
    phi = [np.log(sigma2), np.log(lambda_c_pc)] + ([] if gradient_known else list(np.log(amplitudes)))
    sd = np.sqrt(np.diag(np.linalg.inv(fisher_information(joint, phi))))
    together = {name: float(v) for name, v in zip(joint.names, sd)}
    gain = {name: min(one[name] for one in alone) / together[name] for name in (SIGMA2, LAMBDA_C)}
    return dict(joint=together, alone=alone, gain=gain, larmor_radius_pc=r_l)


def residuals_at_truth(
    skies: Sequence[ObservedSpectrum],
    artifact: EmulatorArtifact,
    values: dict,
    *,
    amplitude: float,
    form: LikelihoodForm | str = LikelihoodForm.LOGNORMAL,
) -> dict:
    """Mock skies made at the truth ``values`` against the model there, before any fit.

    For each sky, the likelihood of ``form`` with the amplitude known gives its data y (ln(Ĉ_ℓ − N)
    for the log-normal form), mean μ and covariance C at the truth; z_ℓ = (y − μ)_ℓ / √C_ℓℓ and
    χ² = (y − μ)ᵀ C⁻¹ (y − μ). Where the likelihood's model of a sky is right, z has mean 0 and SD 1
    at every ℓ and ⟨χ²⟩ is the number of ℓ. Skies the form refuses (log-normal: Ĉ_ℓ ≤ N) are left
    out and counted.

    Returns:
        {"skies": the skies used, "refused": those the form refused, with "first_refusal" its
        reason, "mean_z"/"se_z"/"sd_z": per ℓ the mean, its standard error and the SD of z over the
        skies, "mean_chi2", "chi2": each sky's, and from 10 skies "tails": the multivariate t that
        best describes their χ² (:func:`jaxcr.inference.tails.dof_from_distances`; ν at its upper
        end: Gaussian), and "weakest": the skies along the direction one sky constrains least (below)}
        (no z or χ² when fewer than 2 skies are used).

    "weakest" takes each sky's Fisher matrix of the mean, F = Gᵀ G with G = L⁻¹ ∂μ/∂θ (C = L Lᵀ), and
    its eigenvector v of the smallest eigenvalue λ (sign: v's largest component positive): the
    ridge along which the estimate moves most. It holds "direction" (v, mean over the skies, in the
    parameters' coordinates), "fisher" (λ, mean), "mean"/"se": the skies' whitened residual w = L⁻¹(y − μ)
    along G v/|G v| (0 ± 1/√n for a right model), "emulator_sd": the emulator's own error along
    it (the part of C it adds; 1-sky SDs), and "shift"/"shift_se": the mean over skies of the
    linear estimate's offset F⁻¹ Gᵀ w (coordinates). A mean off 0 by more than its SE and the
    emulator's error says the skies and the model's mean differ where the fit is weakest, which a
    small λ turns into a large bias. Where one sky's ln C_ℓ has heavy tails, sets of a few dozen
    fields differ by more than the SE says: compare the design point's own realisations
    (experiments/realisations_as_skies.py, docs/fitting.md) before blaming the model.
    """
    if not values.keys() >= set(artifact.parameters.names):
        raise ValueError(f"values must name {artifact.parameters.names}; got {sorted(values)}")
    _checks.check_positive("amplitude", amplitude)
    phi = jnp.asarray(artifact.parameters.coordinates(values))
    exact = _without_emulator_error(artifact)
    z, chi2, refused, ridge = [], [], [], []
    for sky in skies:
        try:
            like = sky_likelihood(sky, artifact, amplitude=amplitude, form=form)
        except ValueError as err:  # Ĉ_ℓ ≤ N for the log-normal form, or a sky of another analysis
            refused.append(" ".join(str(err).split()))
            continue
        mean, cov = (np.asarray(m) for m in like.moments(phi))
        r = np.asarray(like.data()) - mean
        z.append(r / np.sqrt(np.diag(cov)))
        chi2.append(float(r @ np.linalg.solve(cov, r)))
        jac = np.asarray(jax.jacfwd(lambda p, like=like: like.moments(p)[0])(phi))
        emulated = cov - np.asarray(sky_likelihood(sky, exact, amplitude=amplitude, form=form).moments(phi)[1])
        ridge.append(_along_weakest(r, cov, jac, emulated))
    counts = dict(skies=len(z), refused=len(refused), first_refusal=refused[0] if refused else None)
    if len(z) < 2:
        return counts
    zs = np.array(z)
    direction, fisher, w, emulator_sd, shift = (np.array(x) for x in zip(*ridge))
    return counts | dict(
        mean_z=zs.mean(0).tolist(),
        se_z=(zs.std(0, ddof=1) / np.sqrt(len(z))).tolist(),
        sd_z=zs.std(0, ddof=1).tolist(),
        mean_chi2=float(np.mean(chi2)),
        chi2=chi2,
        tails=tails.dof_from_distances(chi2, zs.shape[1])[1] if len(chi2) >= 10 else None,
        weakest=dict(
            direction=direction.mean(0).tolist(),
            fisher=float(fisher.mean()),
            mean=float(w.mean()),
            se=float(w.std(ddof=1) / np.sqrt(len(w))),
            emulator_sd=float(emulator_sd.mean()),
            shift=shift.mean(0).tolist(),
            shift_se=(shift.std(0, ddof=1) / np.sqrt(len(w))).tolist(),
        ),
    )


def describe_residuals(result: dict) -> str:
    """One line for a :func:`residuals_at_truth` result of at least 2 skies: per ℓ the skies' mean z
    and its SE, ⟨χ²⟩, the t's ν that fits the χ² (from 10 skies), and the skies along the weakest
    direction with the emulator's error there and the estimate's linear offset in coordinates."""
    w = result["weakest"]
    return (
        f"at the truth ({result['skies']} skies): mean (y − μ)/σ per ℓ "
        + " ".join(f"{m:+.2f}±{e:.2f}" for m, e in zip(result["mean_z"], result["se_z"]))
        + f"; mean χ² {result['mean_chi2']:.1f} for {len(result['mean_z'])} ℓ"
        + ("" if result["tails"] is None else f"; the t that fits their χ²: ν = {result['tails']['dof']:.3g}")
        + f"; along the weakest direction v = {np.round(w['direction'], 2).tolist()} (Fisher {w['fisher']:.2f}): "
        + f"{w['mean']:+.2f}±{w['se']:.2f} (the emulator's error {w['emulator_sd']:.2f}); the estimate's linear "
        + "offset "
        + " ".join(f"{m:+.2f}±{e:.2f}" for m, e in zip(w["shift"], w["shift_se"]))
    )


def _without_emulator_error(artifact: EmulatorArtifact) -> EmulatorArtifact:
    """``artifact`` with its emulators' own error set to zero (the likelihood's C then holds only
    the sky's scatter and the measurement's)."""
    return dataclasses.replace(
        artifact,
        emulator=dataclasses.replace(artifact.emulator, rel_emu=0 * artifact.emulator.rel_emu),
        log_emulator=dataclasses.replace(artifact.log_emulator, rel_emu=0 * artifact.log_emulator.rel_emu),
    )


def _along_weakest(residual, cov, jac, emulated) -> tuple:
    """For :func:`residuals_at_truth`: v, λ, w along G v/|G v|, the emulator's SD along it, F⁻¹ Gᵀ w."""
    chol = np.linalg.cholesky(cov)
    g, w = np.linalg.solve(chol, jac), np.linalg.solve(chol, residual)
    fisher = g.T @ g
    lam, vecs = np.linalg.eigh(fisher)
    v = vecs[:, 0] * np.sign(vecs[np.argmax(np.abs(vecs[:, 0])), 0])
    d = g @ v / np.linalg.norm(g @ v)
    back = np.linalg.solve(chol.T, d)  # L⁻ᵀ d: dᵀ L⁻¹ E L⁻ᵀ d is E's variance along d, whitened
    return v, lam[0], float(d @ w), float(np.sqrt(max(back @ emulated @ back, 0.0))), np.linalg.solve(fisher, g.T @ w)
