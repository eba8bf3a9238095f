import math

import pytest
import torch
import torch.nn.functional as F

from det_forget.forgetting import (
    bounded_forget_loss,
    negative_gradient_loss,
    per_class_mean,
    random_label_loss,
    random_labels,
    reciprocal_forget_loss,
    retain_loss,
)


def test_retain_loss_is_cross_entropy_by_hand():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0])
    expected = (math.log(1 + math.exp(-2)) + math.log(1 + math.exp(1))) / 2
    assert retain_loss(logits, labels).item() == pytest.approx(expected, rel=1e-6)


def test_per_class_mean():
    classes, means = per_class_mean(torch.tensor([1.0, 3.0, 10.0]), torch.tensor([4, 4, 2]))
    assert classes.tolist() == [2, 4]
    assert means.tolist() == [10.0, 2.0]


def test_bounded_batch_mean_by_hand():
    ce = torch.tensor([1.0, 2.0, 6.0])  # mean 3
    assert bounded_forget_loss(ce, bound=5.0, per_class=False).item() == pytest.approx(2.0)
    assert bounded_forget_loss(ce, bound=5.0, weight=2.0, per_class=False).item() == 0.0


def test_per_class_differs_from_batch_mean_when_one_class_dominates():
    # Class 0 is forgotten already (CE 20 on 3 samples); class 1 is not (CE 1).
    ce = torch.tensor([20.0, 20.0, 20.0, 1.0])
    labels = torch.tensor([0, 0, 0, 1])
    batch = bounded_forget_loss(ce, labels, bound=10.0, per_class=False)
    per_class = bounded_forget_loss(ce, labels, bound=10.0, per_class=True)
    assert batch.item() == 0.0  # mean CE 15.25 > 10: the batch term hides class 1
    assert per_class.item() == pytest.approx((0.0 + 9.0) / 2)


def test_per_object_bound_sees_the_object_a_class_mean_hides():
    # One class: two boxes far past the bound (CE 20), one the model still recognises
    # (CE 0.5, p = 0.61). The class mean 13.5 is past the bound 5, so the per-class term is
    # 0; the per-object term pushes the third box: mean(0, 0, 4.5) = 1.5.
    ce = torch.tensor([20.0, 20.0, 0.5], requires_grad=True)
    labels = torch.tensor([3, 3, 3])
    assert bounded_forget_loss(ce, labels, bound=5.0).item() == 0.0
    loss = bounded_forget_loss(ce, labels, bound=5.0, per_object=True)
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    assert ce.grad.tolist() == pytest.approx([0.0, 0.0, -1 / 3])


def test_per_object_averages_per_class_or_over_the_batch():
    # Class 0: 3 boxes at CE 1 (each 4 below the bound 5); class 1: 1 box at CE 3 (2 below).
    ce = torch.tensor([1.0, 1.0, 1.0, 3.0])
    labels = torch.tensor([0, 0, 0, 1])
    per_class = bounded_forget_loss(ce, labels, bound=5.0, per_object=True)
    batch = bounded_forget_loss(ce, labels, bound=5.0, per_class=False, per_object=True)
    assert per_class.item() == pytest.approx((4.0 + 2.0) / 2)
    assert batch.item() == pytest.approx((4.0 * 3 + 2.0) / 4)
    # weight acts inside the ReLU of every object
    assert bounded_forget_loss(ce, labels, bound=5.0, weight=2.0, per_object=True).item() == (
        pytest.approx((3.0 + 0.0) / 2)
    )
    with pytest.raises(ValueError, match="needs labels"):
        bounded_forget_loss(ce, bound=5.0, per_object=True)


def test_bounded_loss_has_zero_gradient_past_the_bound():
    ce = torch.tensor([7.0, 8.0], requires_grad=True)
    bounded_forget_loss(ce, torch.tensor([0, 1]), bound=5.0).backward()
    assert torch.equal(ce.grad, torch.zeros(2))
    ce2 = torch.tensor([1.0, 8.0], requires_grad=True)
    bounded_forget_loss(ce2, torch.tensor([0, 1]), bound=5.0).backward()
    assert ce2.grad.tolist() == [-0.5, 0.0]  # only the class below the bound is pushed


def test_per_class_needs_labels_and_empty_is_zero():
    with pytest.raises(ValueError, match="needs labels"):
        bounded_forget_loss(torch.ones(2), bound=1.0)
    empty = torch.zeros(0, requires_grad=True)
    assert bounded_forget_loss(empty, torch.zeros(0, dtype=torch.long), bound=3.0).item() == 0


def test_reciprocal_by_hand_and_guarded_at_zero():
    assert reciprocal_forget_loss(torch.tensor([1.0, 3.0]), eps=0.0 + 1e-9).item() == (
        pytest.approx(0.5)
    )
    ce = torch.zeros(3, requires_grad=True)
    loss = reciprocal_forget_loss(ce, eps=1e-3)
    assert loss.item() == pytest.approx(1000.0)
    loss.backward()
    assert torch.isfinite(ce.grad).all() and (ce.grad < 0).all()  # still pushes CE up
    with pytest.raises(ValueError):
        reciprocal_forget_loss(ce, eps=0.0)


def test_negative_gradient():
    ce = torch.tensor([1.0, 3.0], requires_grad=True)
    loss = negative_gradient_loss(ce)
    assert loss.item() == -2.0
    loss.backward()
    assert ce.grad.tolist() == [-0.5, -0.5]


def test_random_labels_never_true_or_excluded():
    gen = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 5, (500,), generator=gen)
    out = random_labels(labels, 5, generator=gen, exclude=torch.tensor([4]))
    assert (out != labels).all() and (out != 4).all()
    assert set(out.tolist()) == {0, 1, 2, 3}  # uniform over what is allowed
    with pytest.raises(ValueError, match="no class left"):
        random_labels(torch.tensor([0]), 2, exclude=torch.tensor([1]))


def test_random_label_loss_is_ce_to_drawn_labels():
    logits = torch.randn(6, 4)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    target = random_labels(labels, 4, generator=g1)
    assert random_label_loss(logits, labels, generator=g2).item() == pytest.approx(
        F.cross_entropy(logits, target).item()
    )


def test_demo_config_bounds_every_forget_box():
    """configs/coco_forget.yaml bounds per object at BND 3 = -ln(0.05): a box the model
    still scores 0.5 is pushed even when the class's other boxes are far past the bound;
    the per-class mean bound of the same numbers leaves it alone."""
    from pathlib import Path

    from vit_fixtures import tiny_timm_vit

    from det_forget.engine.inference import build_config
    from det_forget.forgetting import ForgettingObjective
    from det_forget.lora import LoraConfig, inject_lora

    cfg = build_config(Path(__file__).parents[2] / "configs" / "coco_forget.yaml")
    assert cfg.FORGET.LOSS.PER_OBJECT and cfg.FORGET.LOSS.BOUND == pytest.approx(
        -math.log(0.05), abs=0.01
    )
    model = tiny_timm_vit()
    inject_lora(model, LoraConfig(rank=2))
    objective = ForgettingObjective.from_config(cfg, model)
    ce = torch.tensor([20.0, 20.0, -math.log(0.5)])
    kwargs = dict(
        step=0, model=model, forget_labels=torch.tensor([1, 1, 1]), retain_loss=torch.tensor(0.1)
    )
    beta = cfg.FORGET.LOSS.FORGET_WEIGHT
    terms = objective(forget_loss=ce, **kwargs)
    expected = beta * (cfg.FORGET.LOSS.BOUND - math.log(2)) / 3
    assert terms["loss_forget_bounded"].item() == pytest.approx(expected, rel=1e-5)
    objective.per_object = False
    assert objective(forget_loss=ce, **kwargs)["loss_forget_bounded"].item() == 0.0


def test_background_term_by_hand_and_refused_without_forget_data():
    """FORGET.LOSS.BACKGROUND_WEIGHT: w x the per-class mean of the given cross-entropies to
    background (batch mean with PER_CLASS False); absent at 0 and for a method without
    forget data; a negative weight is refused."""
    from det_forget.errors import ConfigValueError
    from det_forget.forgetting import ForgettingObjective

    bg = torch.tensor([1.0, 3.0, 8.0])
    labels = torch.tensor([4, 4, 7])
    kwargs = dict(
        step=0,
        forget_loss=torch.tensor([0.1, 0.2, 0.3]),
        forget_labels=labels,
        retain_loss=torch.tensor(0.5),
        background_loss=bg,
    )
    plain = ForgettingObjective(method="bounded_ft", bound=5.0, forget_weight=1.0)
    assert "loss_forget_background" not in plain(**kwargs)
    obj = ForgettingObjective(method="bounded_ft", bound=5.0, background_weight=0.5)
    terms = obj(**kwargs)
    assert terms["loss_forget_background"].item() == pytest.approx(0.5 * (2.0 + 8.0) / 2)
    obj.per_class = False
    assert obj(**kwargs)["loss_forget_background"].item() == pytest.approx(0.5 * 4.0)
    with pytest.raises(ValueError, match="loss_forget_background"):
        obj(**{**kwargs, "background_loss": None})
    # finetune has no forget objects: it ignores the weight, as it ignores BOUND.
    finetune = ForgettingObjective(method="finetune", background_weight=0.5)
    assert set(finetune(**kwargs)) == {"loss_retain"}
    with pytest.raises(ConfigValueError, match=">= 0"):
        ForgettingObjective(method="bounded_ft", background_weight=-1.0)
