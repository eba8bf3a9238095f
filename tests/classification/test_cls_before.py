"""Classification's "before" accuracy comes from the model card when (and only when) it
holds one of the same weights, test set and model config (det_forget/evaluation/before.py)."""

import shutil

from det_forget.classification import load_classifier, load_splits
from det_forget.classification.trainer import ClassificationForgetter
from det_forget.evaluation.before import (
    add_card_evaluation,
    card_path_of,
    classifier_evaluation_key,
)
from det_forget.forgetting import tasks_from_config


def _run(cfg, weights):
    data = load_splits(cfg)
    model, _ = load_classifier(weights)
    forgetter = ClassificationForgetter(cfg, model, data)
    return forgetter.run(tasks_from_config(cfg, data.test.classes))["tasks"][0]


def test_card_accuracy_is_reused_only_for_the_same_weights_and_test_set(
    identity_dirs, tiny_classifier, make_tiny_cfg, tmp_path
):
    weights = tmp_path / "tiny.safetensors"  # a copy: the session's checkpoint stays card-free
    shutil.copy(tiny_classifier[0], weights)
    shutil.copy(card_path_of(tiny_classifier[0]), card_path_of(weights))  # arch + card
    cfg = make_tiny_cfg(*identity_dirs, weights=str(weights))
    cfg.FORGET.MAX_ITER = 1
    data = load_splits(cfg)
    key = classifier_evaluation_key(
        cfg, weights, f"{cfg.CLS.DATASET}:test", data.test.images, data.test.labels
    )
    # Numbers no evaluation gives: seeing them proves they were read, not measured.
    marked = {c: {"accuracy": 42.5} for c in data.test.classes}
    add_card_evaluation(card_path_of(weights), key, marked, command="test")
    record = _run(cfg, weights)
    assert record["before"] == {c: 42.5 for c in data.test.classes}

    # Another test set (the training folder as test split): evaluated.
    other = make_tiny_cfg(identity_dirs[0], identity_dirs[0], weights=str(weights))
    other.FORGET.MAX_ITER = 1
    assert 42.5 not in _run(other, weights)["before"].values()
    # Other weights next to the same card, or the switch off: evaluated.
    changed = tmp_path / "changed.safetensors"
    model, _ = load_classifier(weights)
    from det_forget.classification.model import save_classifier

    first = next(model.parameters())
    first.data.add_(0.01)
    save_classifier(model, changed, {})
    shutil.copy(card_path_of(weights), card_path_of(changed))
    cfg_changed = make_tiny_cfg(*identity_dirs, weights=str(changed))
    cfg_changed.FORGET.MAX_ITER = 1
    assert 42.5 not in _run(cfg_changed, changed)["before"].values()
    cfg.FORGET.BEFORE_FROM_CARD = False
    assert 42.5 not in _run(cfg, weights)["before"].values()
