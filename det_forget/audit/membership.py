"""Membership inference on the forgotten classes: loss and confidence threshold attacks.

The attacker holds samples of a forgotten class and asks the model which of them it was
trained on. Each sample gets a score where higher means "looks like a training sample":

* ``loss``: minus the cross-entropy of the true label (a model fits its training data
  better, so their loss is lower); label-aware;
* ``confidence``: the largest softmax probability, whatever the class (label-free).

A threshold attack calls every sample scoring at or above a threshold a member. Its
quality over all thresholds is the ROC AUC: the probability that a random member scores
higher than a random non-member, ties counting one half. 0.5 means the scores carry no
membership information; the further from 0.5 (either way: an attacker can flip a
consistently inverted signal) the more they leak. The AUC is computed here from ranks
(the Mann-Whitney U statistic), with no dependency beyond torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..forgetting.losses import object_nll

__all__ = [
    "ATTACKS",
    "MembershipResult",
    "rank_auc",
    "auc_standard_error",
    "best_threshold",
    "membership_scores",
    "threshold_attack",
    "membership_inference",
]

#: The attacks :func:`membership_scores` computes, headline first.
ATTACKS = ("loss", "confidence")


def _scores(values: Any, what: str) -> torch.Tensor:
    t = torch.as_tensor(values, dtype=torch.float64).flatten().cpu()
    if t.numel() == 0:
        raise ValueError(f"{what} scores are empty; an AUC needs at least one of each")
    if torch.isnan(t).any():
        raise ValueError(f"{what} scores contain NaN; every score must be a number (inf is fine)")
    return t


def _midranks(values: torch.Tensor) -> torch.Tensor:
    """1-based ranks of ``values``; tied values share the mean of the ranks they span."""
    order = torch.argsort(values, stable=True)
    _, inverse, counts = torch.unique_consecutive(
        values[order], return_inverse=True, return_counts=True
    )
    ends = torch.cumsum(counts, 0).double()
    mean_rank = ends - (counts.double() - 1) / 2
    ranks = torch.empty_like(values)
    ranks[order] = mean_rank[inverse]
    return ranks


def rank_auc(positive: Any, negative: Any) -> float:
    """ROC AUC of scores where positives should score higher, from ranks (Mann-Whitney U).

    ``AUC = P(s_pos > s_neg) + 0.5 * P(s_pos == s_neg)``, exactly, for any number of ties.

    Args:
        positive: scores of the positive samples (members), any shape.
        negative: scores of the negative samples (non-members).

    Returns:
        The AUC in ``[0, 1]``.

    Raises:
        ValueError: an empty side or a NaN score.
    """
    pos, neg = _scores(positive, "positive"), _scores(negative, "negative")
    ranks = _midranks(torch.cat([pos, neg]))
    n_pos, n_neg = pos.numel(), neg.numel()
    u = float(ranks[:n_pos].sum()) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def auc_standard_error(auc: float, n_positive: int, n_negative: int) -> float:
    """Standard error of an AUC estimate (Hanley and McNeil, 1982).

    A rough guide to how much the AUC would move on another draw of the same number of
    samples: with 1000 members and 1000 non-members near 0.5 it is about 0.013.

    Args:
        auc: the estimate.
        n_positive: number of positive samples.
        n_negative: number of negative samples.

    Returns:
        The standard error (0 for a degenerate AUC of exactly 0 or 1).
    """
    if n_positive <= 0 or n_negative <= 0:
        raise ValueError(f"sample counts must be positive, got {n_positive} and {n_negative}")
    q1 = auc / (2 - auc)
    q2 = 2 * auc * auc / (1 + auc)
    var = (
        auc * (1 - auc) + (n_positive - 1) * (q1 - auc * auc) + (n_negative - 1) * (q2 - auc * auc)
    ) / (n_positive * n_negative)
    return math.sqrt(max(var, 0.0))


def best_threshold(positive: Any, negative: Any) -> tuple[float, float]:
    """The threshold whose attack ``score >= t -> member`` has the best balanced accuracy.

    The threshold is chosen on the very samples it is scored on, so the accuracy is an
    optimistic upper bound of what an attacker who must fix the threshold beforehand gets.

    Args:
        positive: member scores.
        negative: non-member scores.

    Returns:
        ``(balanced accuracy in [0.5, 1], threshold)``; a threshold above every score
        (all called non-members) gives exactly 0.5.
    """
    pos, neg = _scores(positive, "positive"), _scores(negative, "negative")
    values = torch.cat([pos, neg])
    is_pos = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
    order = torch.argsort(values, descending=True, stable=True)
    values, is_pos = values[order], is_pos[order]
    tpr = torch.cumsum(is_pos, 0) / pos.numel()
    fpr = torch.cumsum(1 - is_pos, 0) / neg.numel()
    # Only the last position of a run of equal scores is a threshold one can realise.
    last_of_run = torch.ones_like(values, dtype=torch.bool)
    last_of_run[:-1] = values[:-1] != values[1:]
    balanced = torch.where(last_of_run, (tpr + 1 - fpr) / 2, torch.zeros_like(tpr))
    i = int(torch.argmax(balanced))
    if float(balanced[i]) <= 0.5:
        return 0.5, math.inf
    return float(balanced[i]), float(values[i])


@dataclass
class MembershipResult:
    """One threshold attack against one model.

    Attributes:
        attack: ``"loss"`` or ``"confidence"``.
        auc: ROC AUC of members vs non-members (0.5: no membership signal).
        auc_std_error: Hanley-McNeil standard error of ``auc``.
        best_balanced_accuracy: balanced accuracy at the best threshold (optimistic).
        threshold: that threshold (in score units: minus loss, or confidence).
        members: number of member samples.
        nonmembers: number of non-member samples.
        member_mean: mean member score.
        nonmember_mean: mean non-member score.
    """

    attack: str
    auc: float
    auc_std_error: float
    best_balanced_accuracy: float
    threshold: float
    members: int
    nonmembers: int
    member_mean: float
    nonmember_mean: float

    @property
    def advantage(self) -> float:
        """``|AUC - 0.5|``: how far from chance, in either direction."""
        return abs(self.auc - 0.5)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (an infinite threshold becomes ``None``)."""
        out = asdict(self)
        if not math.isfinite(out["threshold"]):
            out["threshold"] = None
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> MembershipResult:
        """Inverse of :meth:`to_dict`."""
        values = dict(doc)
        if values.get("threshold") is None:
            values["threshold"] = math.inf
        return cls(**{k: values[k] for k in cls.__dataclass_fields__})


def membership_scores(
    logits: torch.Tensor, labels: torch.Tensor, sigmoid: bool = False
) -> dict[str, torch.Tensor]:
    """Per-sample attack scores from logits (higher: more member-like).

    Works for classifier logits ``(N, C)``, box-classifier logits ``(N, C + 1)`` (the
    background column takes part in the softmax like any class) and, with ``sigmoid``,
    detectors whose classes are independent sigmoids (``-log sigmoid(logit_target)``).

    Args:
        logits: ``(N, K)`` logits.
        labels: ``(N,)`` true classes.
        sigmoid: independent sigmoid scores instead of a softmax.

    Returns:
        ``{"loss": -NLL of the label, "confidence": largest class probability}``, each
        ``(N,)`` float64 on the CPU.
    """
    if logits.ndim != 2 or logits.shape[0] != labels.shape[0]:
        raise ValueError(
            f"logits must be (N, K) matching labels (N,), got {tuple(logits.shape)} and "
            f"{tuple(labels.shape)}"
        )
    logits = logits.detach().double().cpu()
    labels = labels.detach().long().cpu()
    loss = object_nll(logits, labels, sigmoid)
    probs = logits.sigmoid() if sigmoid else logits.softmax(dim=1)
    return {"loss": -loss, "confidence": probs.max(dim=1).values}


def _finite_mean(values: torch.Tensor) -> float:
    finite = values[torch.isfinite(values)]
    return float(finite.mean()) if finite.numel() else 0.0


def threshold_attack(attack: str, members: Any, nonmembers: Any) -> MembershipResult:
    """Run one threshold attack on precomputed scores.

    Args:
        attack: the attack's name (recorded as is).
        members: scores of the training samples.
        nonmembers: scores of held-out samples of the same classes.

    Returns:
        The :class:`MembershipResult`.
    """
    pos, neg = _scores(members, "member"), _scores(nonmembers, "non-member")
    auc = rank_auc(pos, neg)
    balanced, threshold = best_threshold(pos, neg)
    return MembershipResult(
        attack=attack,
        auc=auc,
        auc_std_error=auc_standard_error(auc, pos.numel(), neg.numel()),
        best_balanced_accuracy=balanced,
        threshold=threshold,
        members=pos.numel(),
        nonmembers=neg.numel(),
        member_mean=_finite_mean(pos),
        nonmember_mean=_finite_mean(neg),
    )


def membership_inference(
    member_logits: torch.Tensor,
    member_labels: torch.Tensor,
    nonmember_logits: torch.Tensor,
    nonmember_labels: torch.Tensor,
    sigmoid: bool = False,
) -> dict[str, MembershipResult]:
    """Every attack of :data:`ATTACKS` on one model's outputs.

    Args:
        member_logits: ``(N_m, K)`` logits of training samples of the forgotten classes.
        member_labels: their true classes.
        nonmember_logits: ``(N_n, K)`` logits of held-out samples of the same classes.
        nonmember_labels: their true classes.
        sigmoid: the logits are independent sigmoid scores (see :func:`membership_scores`).

    Returns:
        ``{attack: MembershipResult}`` in :data:`ATTACKS` order.
    """
    members = membership_scores(member_logits, member_labels, sigmoid)
    nonmembers = membership_scores(nonmember_logits, nonmember_labels, sigmoid)
    return {a: threshold_attack(a, members[a], nonmembers[a]) for a in ATTACKS}
