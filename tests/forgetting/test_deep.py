"""Deep forgetting's terms: which way their gradients move features, their config and refusals."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch_threads import one_torch_thread

from det_forget.classification.cli import setup_cfg
from det_forget.config import check_ignored_keys
from det_forget.engine.inference import build_config
from det_forget.errors import ConfigValueError
from det_forget.forgetting import ForgettingObjective, SparsityWarmup, build_groups, get_method
from det_forget.forgetting.deep import (
    DeepForgetting,
    OnlineProbe,
    nearest_prototype,
    probe_confusion_loss,
    prototype_pull_loss,
)
from det_forget.lora import LoraConfig, inject_lora

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
GS_LORA = str(CONFIGS / "classification" / "gs_lora.yaml")
GS_LORA_DEEP = str(CONFIGS / "classification" / "gs_lora_deep.yaml")


@pytest.fixture(autouse=True)
def _one_thread():
    with one_torch_thread():
        yield


def _two_clusters(n: int = 64, dim: int = 8, gap: float = 3.0, seed: int = 0):
    """Forget features around ``+gap e_0``, retained ones around ``-gap e_0``."""
    g = torch.Generator().manual_seed(seed)
    forget = torch.randn(n, dim, generator=g)
    retain = torch.randn(n, dim, generator=g)
    forget[:, 0] += gap
    retain[:, 0] -= gap
    return forget, retain


def test_prototype_pull_moves_each_feature_to_its_nearest_retained_prototype():
    prototypes = torch.tensor([[4.0, 0.0], [0.0, 4.0], [-4.0, 0.0]])
    features = torch.tensor([[3.0, 1.0], [1.0, 3.5], [-1.0, -0.5]], requires_grad=True)
    assert nearest_prototype(features, prototypes).tolist() == [0, 1, 2]
    loss = prototype_pull_loss(features, prototypes)
    expected = ((features.detach() - prototypes) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item())
    loss.backward()
    # Gradient descent moves every feature straight toward its own prototype.
    step = -features.grad
    toward = prototypes - features.detach()
    cosine = torch.nn.functional.cosine_similarity(step, toward, dim=1)
    assert torch.allclose(cosine, torch.ones(3), atol=1e-6)
    moved = features.detach() - 1.0 * features.grad
    assert ((moved - prototypes).norm(dim=1) < (features.detach() - prototypes).norm(dim=1)).all()
    assert prototype_pull_loss(prototypes.clone(), prototypes).item() == 0.0


def test_prototype_pull_refuses_no_prototype():
    with pytest.raises(ValueError, match="at least one retained-class prototype"):
        prototype_pull_loss(torch.zeros(2, 3), torch.zeros(0, 3))


def test_online_probe_learns_to_separate_then_confusion_moves_forget_features_toward_retained():
    forget, retain = _two_clusters()
    probe = OnlineProbe(forget.shape[1], lr=0.05, steps=50)
    loss = probe.update(forget, retain)
    assert loss < 0.2 < math.log(2)  # separable clusters: the probe fits them
    reference = torch.cat([forget, retain])
    assert (probe.logits(forget, reference) > 0).float().mean() > 0.95
    assert (probe.logits(retain, reference) < 0).float().mean() > 0.95

    feats = forget.clone().requires_grad_(True)
    probe_grad = probe.weight.grad.clone()
    confusion = probe_confusion_loss(probe.logits(feats, reference))
    assert confusion.item() > 0.3
    confusion.backward()
    assert torch.equal(probe.weight.grad, probe_grad)  # the adversary's step leaves the probe
    # The step lowers the probe's logits on forget features: mostly along e_0, toward
    # the retained cluster.
    step = -feats.grad
    assert step[:, 0].mean() < 0
    assert step[:, 0].abs().mean() > 3 * step[:, 1:].abs().mean()
    # At a confused probe (logit 0) the term is exactly 0.
    assert probe_confusion_loss(torch.zeros(5)).item() == pytest.approx(0.0, abs=1e-7)


def test_adversarial_probe_term_lowers_separability_over_steps():
    # Features as free parameters: the adversarial term alone drives a fresh probe's
    # balanced loss toward ln 2 (inseparable), while it starts near 0.
    forget, retain = _two_clusters(gap=2.0)
    feats = forget.clone().requires_grad_(True)
    deep = DeepForgetting(mode="adversarial_probe", weight=1.0, probe_lr=0.05, probe_steps=5)
    opt = torch.optim.SGD([feats], lr=2.0)
    for _ in range(200):
        opt.zero_grad()
        deep(forget_features=feats, retain_features=retain).backward()
        opt.step()
    fresh_before = OnlineProbe(forget.shape[1], lr=0.05, steps=200).update(forget, retain)
    fresh_after = OnlineProbe(forget.shape[1], lr=0.05, steps=200).update(feats.detach(), retain)
    assert fresh_before < 0.15
    assert fresh_after > 0.45  # ln 2 = 0.69 is chance


def test_deep_forgetting_refuses_bad_mode_and_weight():
    with pytest.raises(ConfigValueError, match=r"FORGET\.DEEP\.MODE 'probe'.*prototype_pull"):
        DeepForgetting(mode="probe")
    with pytest.raises(ConfigValueError, match=r"FORGET\.DEEP\.WEIGHT -1\.0"):
        DeepForgetting(weight=-1.0)


def _lora_model():
    from vit_fixtures import tiny_timm_vit

    model = tiny_timm_vit()
    inject_lora(model, LoraConfig(rank=2))
    return model


def _gs_lora(deep=None, method="gs_lora"):
    model = _lora_model()
    return ForgettingObjective(
        method=method,
        sparsity=SparsityWarmup(1e-4),
        groups=build_groups(model),
        deep=deep,
    ), model


def test_off_by_default_adds_nothing():
    cfg = setup_cfg(GS_LORA)
    assert cfg.FORGET.DEEP.ENABLED is False
    model = _lora_model()
    objective = ForgettingObjective.from_config(cfg, model)
    assert objective.deep is None
    terms = objective(
        step=0,
        model=model,
        forget_loss=torch.tensor([1.0, 2.0]),
        forget_labels=torch.tensor([0, 0]),
        retain_loss=torch.tensor(0.5),
        forget_features=torch.randn(2, 4),
        retain_features=torch.randn(2, 4),
        retain_labels=torch.tensor([1, 2]),
        retain_prototypes=torch.randn(2, 4),
    )
    assert set(terms) == set(get_method("gs_lora").terms)


def test_objective_adds_loss_deep_when_enabled():
    cfg = setup_cfg(GS_LORA_DEEP)
    assert cfg.FORGET.DEEP.ENABLED
    model = _lora_model()
    objective = ForgettingObjective.from_config(cfg, model)
    assert objective.deep is not None and objective.deep.mode == cfg.FORGET.DEEP.MODE
    objective.deep = DeepForgetting(mode="prototype_pull", weight=2.0)
    forget_features = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    prototypes = torch.tensor([[0.0, 0.0], [0.0, 4.0]])
    terms = objective(
        step=0,
        model=model,
        forget_loss=torch.tensor([1.0, 2.0]),
        forget_labels=torch.tensor([0, 0]),
        retain_loss=torch.tensor(0.5),
        forget_features=forget_features,
        retain_prototypes=prototypes,
    )
    assert set(terms) == set(get_method("gs_lora").terms) | {"loss_deep"}
    assert terms["loss_deep"].item() == pytest.approx(2.0 * (1.0 + 1.0) / 4)


def test_objective_refuses_deep_without_retain_data():
    with pytest.raises(ConfigValueError, match=r"FORGET\.DEEP\.ENABLED.*'no_retain'"):
        ForgettingObjective(method="no_retain", deep=DeepForgetting())
    with pytest.raises(ConfigValueError, match=r"FORGET\.DEEP\.ENABLED.*'retrain'"):
        ForgettingObjective(method="retrain", deep=DeepForgetting())


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("FORGET.DEEP.MODE", "pull", "one of"),
        ("FORGET.DEEP.WEIGHT", "-0.5", "finite number >= 0"),
        ("FORGET.DEEP.WEIGHT", "1e400", "finite number >= 0"),
        ("FORGET.DEEP.PROBE_LR", "0.0", "positive finite"),
        ("FORGET.DEEP.PROBE_STEPS", "0", "at least 1"),
    ],
)
def test_bad_values_are_refused_naming_the_key(key, value, allowed):
    with pytest.raises(ConfigValueError, match=rf"{key.replace('.', '[.]')} .*{allowed}"):
        setup_cfg(GS_LORA, ["FORGET.DEEP.ENABLED", "True", key, value])


def test_detection_refuses_deep_forgetting():
    cfg = build_config(CONFIGS / "coco_forget.yaml", ["FORGET.DEEP.ENABLED", "True"])
    with pytest.raises(
        ValueError, match=r"FORGET\.DEEP\.ENABLED = True .*read only by classification, face"
    ):
        check_ignored_keys(cfg)
    # Untouched, the detection config passes.
    check_ignored_keys(build_config(CONFIGS / "coco_forget.yaml"))
