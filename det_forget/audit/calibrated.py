"""Calibrated membership inference: each sample's score against reference models' scores.

The threshold attacks of :mod:`.membership` compare one global threshold with every
sample's loss. That mixes two things: how hard a sample is (an ambiguous Shirt is
uncertain whether or not the model trained on it) and whether the model trained on it.
A calibrated attack (LiRA, Carlini et al. 2022; U-LiRA for unlearning, Hayes et al. 2024)
removes the first by asking, per sample, how the audited model's score compares with the
scores of *reference models* whose training data is known:

* statistic: the logit-scaled confidence of the true class,
  ``phi = log p_y - log(1 - p_y)``, close to Gaussian over training runs;
* ``offline``: references that did not train on the sample (OUT) give its expected
  score; the attack score is ``(phi - mean_out) / sigma``: how far above what a model
  that never saw this sample gets;
* ``online``: references that did (IN) and did not (OUT) train on it give two Gaussians;
  the attack score is the log-likelihood ratio ``log N(phi; mean_in, sigma) -
  log N(phi; mean_out, sigma)``.

With a handful of references a per-sample variance is noise, so one variance, pooled over
every sample and reference (LiRA's "fixed variance"), serves every sample.

``offline`` is the default, and the one to audit forgetting with: a forgotten model's
scores on the forgotten classes fall far below both the IN and the OUT references', where
the online likelihood ratio no longer measures membership (it ranks samples by how much
references gain from training on them, times the distance), while the offline score still
asks "how far above a model that never saw this sample?". On the synthetic testbed of the
tests, a model retrained without the classes scores 0.55 offline but 0.38 online. The result is a
:class:`~.membership.MembershipResult`, scored with the same rank AUC and standard error
as the threshold attacks.
"""

from __future__ import annotations

from typing import Any

import torch

from .membership import MembershipResult, threshold_attack

__all__ = [
    "CALIBRATED_ATTACK",
    "CALIBRATION_MODES",
    "scaled_logit_confidence",
    "calibration_mode",
    "lira_scores",
    "calibrated_attack",
]

#: Key of the calibrated attack in a :class:`~.report.ModelAudit`'s ``membership``.
CALIBRATED_ATTACK = "calibrated"
#: ``auto`` picks ``online`` when every sample has two IN and two OUT references.
CALIBRATION_MODES = ("auto", "online", "offline")
_MIN_SIGMA = 1e-6


def scaled_logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``log p_y - log(1 - p_y)`` of a softmax, per sample, computed without cancellation.

    Equals ``z_y - logsumexp_{j != y} z_j`` for logits ``z``.

    Args:
        logits: ``(N, K)`` logits, ``K >= 2``.
        labels: ``(N,)`` true classes.

    Returns:
        ``(N,)`` float64 on the CPU (large for a confident right answer, very negative for
        a confident wrong one).
    """
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0] or logits.shape[1] < 2:
        raise ValueError(
            f"logits must be (N, K >= 2) matching labels (N,), got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    z = logits.detach().double().cpu()
    y = labels.detach().long().cpu()
    target = z.gather(1, y[:, None])[:, 0]
    others = z.scatter(1, y[:, None], float("-inf"))
    return target - torch.logsumexp(others, dim=1)


def _as_matrix(values: Any, what: str, dtype: torch.dtype) -> torch.Tensor:
    t = torch.as_tensor(values).to(dtype).cpu()
    if t.ndim == 1:
        t = t[None]
    if t.ndim != 2:
        raise ValueError(f"{what} must be (references, samples), got shape {tuple(t.shape)}")
    return t


def calibration_mode(keep: torch.Tensor, mode: str = "auto") -> str:
    """The mode :func:`lira_scores` uses for membership masks ``keep`` ``(K, N)``.

    Raises:
        ValueError: an unknown mode, or references that cannot calibrate every sample in
            it (offline needs an OUT reference per sample; online two IN and two OUT).
    """
    if mode not in CALIBRATION_MODES:
        raise ValueError(f"calibration mode must be one of {CALIBRATION_MODES}, got {mode!r}")
    keep = _as_matrix(keep, "keep", torch.bool)
    n_in, n_out = keep.sum(0), (~keep).sum(0)
    online_ok = bool((n_in >= 2).all() and (n_out >= 2).all())
    if mode == "auto":
        mode = "online" if online_ok else "offline"
    if mode == "online" and not online_ok:
        raise ValueError(
            "online calibration needs every sample trained on by >= 2 references and left "
            f"out by >= 2; the fewest are {int(n_in.min())} IN and {int(n_out.min())} OUT"
        )
    if mode == "offline" and not bool((n_out >= 1).all()):
        raise ValueError(
            f"{int((n_out == 0).sum())} samples were trained on by every reference; offline "
            "calibration needs at least one reference that left each sample out"
        )
    return mode


def _pooled_sigma(stats: torch.Tensor, masks: list[torch.Tensor]) -> float:
    """Standard deviation of each sample's reference scores around its own mean, pooled."""
    squares, dof = 0.0, 0
    for mask in masks:
        count = mask.sum(0)
        mean = (stats * mask).sum(0) / count.clamp_min(1)
        squares += float((((stats - mean) * mask) ** 2).sum())
        dof += int((count - 1).clamp_min(0).sum())
    if dof == 0:  # one reference per side: no spread to measure; ranks need none
        return 1.0
    return max((squares / dof) ** 0.5, _MIN_SIGMA)


def lira_scores(
    target: Any,
    reference: Any,
    keep: Any,
    mode: str = "offline",
) -> tuple[torch.Tensor, str]:
    """Per-sample calibrated membership scores (higher: more member-like).

    Args:
        target: ``(N,)`` statistic of the audited model (:func:`scaled_logit_confidence`).
        reference: ``(K, N)`` the same statistic of ``K`` reference models.
        keep: ``(K, N)`` True where reference ``k`` was trained on sample ``n``.
        mode: ``"offline"``, ``"online"`` or ``"auto"`` (see :func:`calibration_mode`).

    Returns:
        ``(scores (N,) float64, the mode used)``.

    Raises:
        ValueError: mismatched shapes, NaN statistics, or references that cannot calibrate
            every sample in ``mode``.
    """
    phi = torch.as_tensor(target).double().flatten().cpu()
    stats = _as_matrix(reference, "reference", torch.float64)
    keep = _as_matrix(keep, "keep", torch.bool)
    if stats.shape != keep.shape or stats.shape[1] != phi.numel():
        raise ValueError(
            f"reference {tuple(stats.shape)} and keep {tuple(keep.shape)} must both be "
            f"(references, {phi.numel()} samples)"
        )
    if torch.isnan(phi).any() or torch.isnan(stats).any():
        raise ValueError("calibration statistics contain NaN")
    mode = calibration_mode(keep, mode)
    out = (~keep).double()
    mean_out = (stats * out).sum(0) / out.sum(0)
    if mode == "offline":
        return (phi - mean_out) / _pooled_sigma(stats, [out]), mode
    inn = keep.double()
    mean_in = (stats * inn).sum(0) / inn.sum(0)
    sigma = _pooled_sigma(stats, [inn, out])
    # log N(phi; mean_in, s) - log N(phi; mean_out, s): the shared variance cancels the rest.
    scores = ((phi - mean_out) ** 2 - (phi - mean_in) ** 2) / (2 * sigma**2)
    return scores, mode


def calibrated_attack(
    member_target: Any,
    member_reference: Any,
    member_keep: Any,
    nonmember_target: Any,
    nonmember_reference: Any,
    nonmember_keep: Any,
    mode: str = "offline",
) -> MembershipResult:
    """The calibrated attack on members and non-members of the audited model.

    Both sides are calibrated together (one pooled variance, one mode), so their scores
    are comparable.

    Args:
        member_target: ``(N_m,)`` statistic of the audited model on its training samples.
        member_reference: ``(K, N_m)`` the references' statistic on them.
        member_keep: ``(K, N_m)`` which reference trained on which member.
        nonmember_target: ``(N_n,)`` statistic on held-out samples.
        nonmember_reference: ``(K, N_n)``.
        nonmember_keep: ``(K, N_n)``.
        mode: see :func:`calibration_mode`.

    Returns:
        A :class:`~.membership.MembershipResult` whose ``attack`` names the mode and the
        number of references, e.g. ``"LiRA online, 4 references"``.
    """
    n_members = torch.as_tensor(member_target).numel()
    scores, used = lira_scores(
        torch.cat(
            [torch.as_tensor(member_target).double(), torch.as_tensor(nonmember_target).double()]
        ),
        torch.cat(
            [
                _as_matrix(member_reference, "member_reference", torch.float64),
                _as_matrix(nonmember_reference, "nonmember_reference", torch.float64),
            ],
            dim=1,
        ),
        torch.cat(
            [
                _as_matrix(member_keep, "member_keep", torch.bool),
                _as_matrix(nonmember_keep, "nonmember_keep", torch.bool),
            ],
            dim=1,
        ),
        mode,
    )
    references = _as_matrix(member_keep, "member_keep", torch.bool).shape[0]
    name = f"LiRA {used}, {references} reference{'s' if references != 1 else ''}"
    return threshold_attack(name, scores[:n_members], scores[n_members:])
