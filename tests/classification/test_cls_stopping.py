"""The shared stopping rule in the classification loop: a task stops once its class is
forgotten on the validation split, and never while the model still recognises it."""

from det_forget.classification import load_classifier, load_splits
from det_forget.classification.trainer import ClassificationForgetter
from det_forget.forgetting import tasks_from_config


def _run(cfg, weights):
    data = load_splits(cfg)
    model, _ = load_classifier(weights)
    forgetter = ClassificationForgetter(cfg, model, data)
    return forgetter.run(tasks_from_config(cfg, data.test.classes))["tasks"][0]


def _cfg(make_tiny_cfg, identity_dirs, weights, **forget):
    cfg = make_tiny_cfg(*identity_dirs, weights=str(weights))
    cfg.FORGET.MAX_ITER = 60
    cfg.FORGET.EARLY_STOP.PERIOD = 5
    cfg.FORGET.EARLY_STOP.PATIENCE = 2
    cfg.FORGET.EARLY_STOP.RETAIN_MARGIN = 10.0  # the retain condition: tests/forgetting
    # This tiny model's held-out forget CE levels off near 7.3 under the bound 10 (the
    # training batches pass it): accept 3 nats below.
    cfg.FORGET.EARLY_STOP.BOUND_TOL = 3.0
    for k, v in forget.items():
        setattr(cfg.FORGET.LOSS, k, v)
    return cfg


def test_forgotten_class_stops_the_task(identity_dirs, tiny_classifier, make_tiny_cfg):
    record = _run(_cfg(make_tiny_cfg, identity_dirs, tiny_classifier[0]), tiny_classifier[0])
    stop = record["train"]["stopping"]
    assert stop["stopped_at"] == record["train"]["steps"] < 60
    assert stop["checks"][-1]["passed"] and stop["checks"][-2]["passed"]
    assert stop["checks"][-1]["scores"]["id_1"] <= 2.0
    assert record["summary"]["after"]["forget"] <= 2.0


def test_recognised_class_is_never_stopped_early(identity_dirs, tiny_classifier, make_tiny_cfg):
    # A negligible forget weight: the class stays recognised for all 60 steps.
    cfg = _cfg(make_tiny_cfg, identity_dirs, tiny_classifier[0], FORGET_WEIGHT=1e-9)
    record = _run(cfg, tiny_classifier[0])
    stop = record["train"]["stopping"]
    assert record["train"]["steps"] == 60 and stop["stopped_at"] is None
    assert len(stop["checks"]) == 11  # after steps 5..55; step 60 is the ceiling
    for check in stop["checks"]:
        assert not check["passed"]
        assert any(r.startswith("id_1 held-out accuracy") for r in check["reasons"])
    assert record["summary"]["after"]["forget"] > 50


def test_best_val_score_selection_keeps_the_best_weights(
    identity_dirs, tiny_classifier, make_tiny_cfg
):
    # Poppi et al.'s early stopping (FORGET.EARLY_STOP.SELECT "val_score"): the model the
    # task ends with is the one of the best validation check, whatever came after it.
    from det_forget.forgetting.stopping import val_selection_score

    cfg = _cfg(make_tiny_cfg, identity_dirs, tiny_classifier[0])
    cfg.FORGET.EARLY_STOP.SELECT = "val_score"
    cfg.FORGET.EARLY_STOP.PATIENCE = 3
    data = load_splits(cfg)
    model, _ = load_classifier(tiny_classifier[0])
    forgetter = ClassificationForgetter(cfg, model, data)
    (task,) = tasks_from_config(cfg, data.test.classes)
    forgetter.prepare()
    stats = forgetter.train_task(task)
    stop = stats["stopping"]
    assert stop["select"] == "val_score"
    scores = [c["score"] for c in stop["checks"]]
    assert stop["best_score"] == max(scores) > stop["initial_score"]
    assert stop["best_step"] == stop["checks"][scores.index(max(scores))]["step"]
    now = val_selection_score(forgetter.evaluate("val_eval"), task.forget, task.retain)
    assert abs(now - stop["best_score"]) < 1e-3
    if stop["stopped_at"] is not None:  # stopped: PATIENCE checks after the best, none better
        after_best = [s for c, s in zip(stop["checks"], scores) if c["step"] > stop["best_step"]]
        assert len(after_best) == 3 and max(after_best) <= stop["best_score"]
