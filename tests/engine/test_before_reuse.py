"""The "before" evaluation comes from the model card when (and only when) the card holds
one of the same weights, val set and test settings (det_forget/evaluation/before.py)."""

import json
import logging
import shutil

from detection_fixtures import TINY_TRAIN, TINY_VAL, save_base_checkpoint, tiny_cfg

from det_forget.engine import ForgetTrainer, finalize_forget_config
from det_forget.engine.forget_data import thing_classes_of
from det_forget.evaluation.before import (
    add_card_evaluation,
    card_path_of,
    evaluation_key,
    find_card_before,
)

REUSED = "from the model card"
EVALUATED = "Evaluating the model before forgetting"


def _run(cfg, caplog):
    finalize_forget_config(cfg)
    cfg.freeze()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="det_forget"):
        trainer = ForgetTrainer(cfg)
        trainer.resume_or_load(resume=False)
        history = trainer.train()
    messages = " ".join(r.getMessage() for r in caplog.records)
    return history[0], messages


def test_card_before_is_reused_only_for_the_same_weights_and_val_set(tmp_path, tiny_shapes, caplog):
    weights = save_base_checkpoint(tiny_cfg(tmp_path), tmp_path / "base.pth")
    cfg = tiny_cfg(tmp_path / "a", **{"MODEL.WEIGHTS": weights, "FORGET.MAX_ITER": 1})
    classes = thing_classes_of(cfg)
    # A card entry with numbers no evaluation of this random model gives: seeing them in
    # the history proves they were read, not measured.
    marked = {c: {"AP": 12.5, "AP50": 25.0} for c in classes}
    key = evaluation_key(cfg, TINY_VAL)
    card = card_path_of(weights)
    add_card_evaluation(card, key, marked, command="test")
    assert find_card_before(card, key, classes) == marked

    record, log = _run(cfg, caplog)
    assert REUSED in log and EVALUATED not in log
    assert record["before"] == {c: 12.5 for c in classes}
    assert record["details"]["AP50_before"] == {c: 25.0 for c in classes}

    # Another val set: evaluated, the card's numbers are not used.
    other_val = tiny_cfg(
        tmp_path / "b",
        **{"MODEL.WEIGHTS": weights, "FORGET.MAX_ITER": 1, "DATASETS.TEST": (TINY_TRAIN,)},
    )
    record, log = _run(other_val, caplog)
    assert EVALUATED in log and REUSED not in log
    assert record["before"] != {c: 12.5 for c in classes}

    # Other weights (same architecture, another seed) next to a copy of the card.
    other = save_base_checkpoint(tiny_cfg(tmp_path), tmp_path / "other.pth", seed=1)
    shutil.copy(card, card_path_of(other))
    record, log = _run(
        tiny_cfg(tmp_path / "c", **{"MODEL.WEIGHTS": other, "FORGET.MAX_ITER": 1}), caplog
    )
    assert EVALUATED in log and REUSED not in log

    # Other test-time settings (detections per image) and the switch: evaluated.
    for extra in ({"TEST.DETECTIONS_PER_IMAGE": 7}, {"FORGET.BEFORE_FROM_CARD": False}):
        cfg = tiny_cfg(tmp_path / "d", **{"MODEL.WEIGHTS": weights, "FORGET.MAX_ITER": 1}, **extra)
        cfg.FORGET.OVERWRITE = True
        record, log = _run(cfg, caplog)
        assert EVALUATED in log and REUSED not in log


def test_card_lookup_needs_every_hash_and_class(tmp_path, tiny_shapes):
    weights = save_base_checkpoint(tiny_cfg(tmp_path), tmp_path / "base.pth")
    cfg = tiny_cfg(tmp_path, **{"MODEL.WEIGHTS": weights})
    classes = thing_classes_of(cfg)
    key = evaluation_key(cfg, TINY_VAL)
    card = tmp_path / "card.json"
    assert find_card_before(card, key, classes) is None  # no card
    card.write_text(json.dumps({"file": "base.pth"}))
    per_class = {c: {"AP": 1.0, "AP50": 2.0} for c in classes}
    add_card_evaluation(card, key, per_class, command="x")
    add_card_evaluation(card, key, per_class, command="y")  # replaces, does not duplicate
    data = json.loads(card.read_text())
    assert data["file"] == "base.pth" and len(data["evaluations"]) == 1
    assert data["evaluations"][0]["command"] == "y"
    assert find_card_before(card, key, classes) == per_class
    assert find_card_before(card, key, classes[:-1]) is None  # other classes
    for field in ("weights_sha256", "val_set_sha256", "settings_sha256"):
        other = key.__class__(**{**key.__dict__, field: "0" * 64})
        assert find_card_before(card, other, classes) is None
    assert evaluation_key(cfg, TINY_TRAIN).val_set_sha256 != key.val_set_sha256
    card.write_text("{truncated")
    assert find_card_before(card, key, classes) is None
