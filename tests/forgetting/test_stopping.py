"""The stopping rule's decisions (det_forget/forgetting/stopping.py), measurement-free."""

import pytest

from det_forget.config import add_forget_config
from det_forget.forgetting import get_method
from det_forget.forgetting.stopping import ForgetStopper, StopRule

RULE = StopRule(period=10, patience=2, score_target=2.0, bound=5.0, bound_tol=0.5)


def _run_checks(stopper, checks, retain=1.0):
    """Feed 10 steps of retain loss ``retain`` before each (scores, losses) check."""
    decisions = []
    step = -1
    for scores, losses in checks:
        for _ in range(10):
            step += 1
            stopper.observe(step, retain if not callable(retain) else retain(step))
        assert stopper.due(step)
        decisions.append(stopper.check(step, scores, losses))
    return decisions


def test_stops_after_patience_passing_checks_in_a_row():
    s = ForgetStopper(RULE, ["a", "b"], max_iter=100)
    forgotten = ({"a": 0.5, "b": 1.0}, {"a": 6.0, "b": 5.2})
    recognised = ({"a": 40.0, "b": 1.0}, {"a": 6.0, "b": 5.2})
    assert _run_checks(s, [forgotten, recognised, forgotten, forgotten]) == [
        False,
        False,
        False,
        True,
    ]
    assert s.stopped_at == 40
    assert "2 checks in a row" in s.reason
    summary = s.summary()
    assert summary["stopped_at"] == 40 and summary["steps"] == 40
    assert [c["passed"] for c in summary["checks"]] == [True, False, True, True]
    assert summary["checks"][1]["reasons"] == ["a held-out score 40.0 > 2"]
    assert not s.due(49)  # no check once stopped


def test_a_recognised_class_never_stops_the_task():
    s = ForgetStopper(RULE, ["a", "b"], max_iter=100)
    # b is under its score target but its forget loss is far from the bound: the model
    # still gives b's objects a high probability.
    checks = [({"a": 0.0, "b": 0.0}, {"a": 7.0, "b": 1.2})] * 9
    assert not any(_run_checks(s, checks))
    assert s.stopped_at is None
    assert all("b held-out forget loss 1.20 < 4.5" in c.reasons for c in s.checks)
    assert s.summary(100)["reason"] == "reached MAX_ITER"
    assert not s.due(99)  # never after the last step: MAX_ITER ends the task


def test_missing_held_out_measurement_blocks_stopping():
    s = ForgetStopper(RULE, ["a"], max_iter=100)
    assert not any(_run_checks(s, [({"a": None}, {"a": None})] * 3))
    assert "no held-out" in s.checks[0].reasons[0]


def test_retain_loss_worse_than_at_start_blocks_stopping():
    s = ForgetStopper(RULE, ["a"], max_iter=200)
    forgotten = ({"a": 0.0}, {"a": 9.0})
    # Retain loss 1.0 over the first period, then 1.5 (+50% > 25% margin), then back.
    decisions = _run_checks(
        s, [forgotten] * 5, retain=lambda step: 1.0 if step < 10 or step >= 30 else 1.5
    )
    assert decisions == [False, False, False, False, True]
    assert s.checks[1].reasons == ["retain loss 1.500 > 1.000 x 1.25"]
    assert s.checks[0].passed and s.checks[2].reasons  # streak broken by the retain loss
    assert s.stopped_at == 50


def test_disabled_rule_never_checks_and_state_round_trips():
    off = ForgetStopper(StopRule(period=0), ["a"], max_iter=50)
    assert not any(off.due(i) for i in range(50))
    assert off.summary()["reason"] == "disabled"
    s = ForgetStopper(RULE, ["a"], max_iter=100)
    _run_checks(s, [({"a": 0.0}, {"a": 9.0})])
    restored = ForgetStopper(RULE, ["a"], max_iter=100)
    restored.load_state_dict(s.state_dict())
    for step in range(10, 20):
        restored.observe(step, 1.0)
    # The first passing check came through the state: the second in a row stops.
    assert restored.check(19, {"a": 0.0}, {"a": 9.0})
    assert restored.stopped_at == 20


def test_rule_from_config_follows_the_method():
    from detectron2.config import get_cfg

    cfg = add_forget_config(get_cfg())
    gs = StopRule.from_config(cfg, get_method("gs_lora"), "AP")
    assert gs.enabled and gs.period == 20 and gs.patience == 2
    assert gs.bound == cfg.FORGET.LOSS.BOUND and gs.retain_margin == 0.25
    no_retain = StopRule.from_config(cfg, get_method("no_retain"), "AP")
    assert no_retain.bound is None and no_retain.retain_margin is None
    assert not StopRule.from_config(cfg, get_method("retrain"), "AP").enabled
    with pytest.raises(ValueError, match="PATIENCE"):
        StopRule(patience=0)


def test_best_score_selector_keeps_and_restores_the_best_weights():
    import torch

    from det_forget.forgetting.stopping import BestScoreSelector, val_selection_score

    assert val_selection_score({0: 10.0, 1: 80.0, 2: 90.0}, [0], [1, 2]) == 0.5 * (85 + 90)
    w = torch.nn.Parameter(torch.zeros(2))
    sel = BestScoreSelector(period=2, patience=2, initial_score=50.0, max_iter=20)
    assert [s for s in range(20) if sel.due(s)] == list(range(1, 20, 2))
    stopped = []
    # Below the start first (no patience spent), then a best at step 6, two worse checks.
    for step, score in [(1, 40.0), (3, 45.0), (5, 70.0), (7, 60.0), (9, 65.0)]:
        with torch.no_grad():
            w.fill_(float(step))
        stopped.append(sel.check(step, score, {"w": w}))
    assert stopped == [False, False, False, False, True]
    assert (sel.best_step, sel.best_score, sel.stopped_at) == (6, 70.0, 10)
    sel.restore({"w": w})
    assert torch.equal(w.detach(), torch.full((2,), 5.0))
    summary = sel.summary(10)
    assert summary["best_step"] == 6 and "kept the weights of step 6" in summary["reason"]
    # Worse-than-start checks never stop a task (nothing beat the starting model yet).
    slow = BestScoreSelector(period=1, patience=1, initial_score=90.0, max_iter=10)
    assert not any(slow.check(s, 80.0 - s, {"w": w}) for s in range(5))
