"""The registry's contract for detection: every (method, detector family) pair it allows
trains two steps and logs exactly the method's declared loss terms; every pair it forbids
is refused before anything is built, with the reason and the valid methods."""

import pytest
from detection_fixtures import save_base_checkpoint, tiny_cfg

from det_forget.engine import ForgetTrainer, finalize_forget_config
from det_forget.forgetting import METHODS, MethodNotSupportedError, get_method, methods_for
from det_forget.lora import lora_layers

FAMILY_CONFIG = {"rcnn": "coco_forget.yaml", "detr": "detr/shapes_detr_tiny_forget.yaml"}
#: Terms a detector family adds to the forgetting loss besides the objective's own (DETR
#: keeps its box terms on the queries matched to forget objects, as GS-LoRA's code does).
FAMILY_FORGET_EXTRAS = {"rcnn": set(), "detr": {"loss_forget_bbox", "loss_forget_giou"}}


def _logged_terms(trainer) -> set[str]:
    return {
        k for k in trainer.storage.histories() if k.startswith("loss_") or k.startswith("retain_")
    }


@pytest.fixture(scope="module")
def base_weights(tmp_path_factory, tiny_shapes):
    root = tmp_path_factory.mktemp("contract_bases")
    return {
        family: save_base_checkpoint(tiny_cfg(root, config), root / f"{family}.pth")
        for family, config in FAMILY_CONFIG.items()
    }


@pytest.mark.parametrize(
    "family, method",
    [(f, m.name) for f in FAMILY_CONFIG for m in methods_for(f)],
)
def test_allowed_pair_trains_two_steps_with_its_declared_terms(
    tmp_path, tiny_shapes, base_weights, family, method
):
    spec = get_method(method)
    cfg = tiny_cfg(
        tmp_path / "run",
        FAMILY_CONFIG[family],
        **{
            "MODEL.WEIGHTS": base_weights[family],
            "FORGET.METHOD": method,
            "FORGET.MAX_ITER": 2,
            "FORGET.EVAL_BEFORE": False,
            "FORGET.SAVE_MERGED": False,
            "FORGET.BASELINE.EWC_SAMPLES": 4,
        },
    )
    finalize_forget_config(cfg)
    cfg.freeze()
    trainer = ForgetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    (record,) = trainer.train()
    assert trainer.max_iter == 2 and trainer.iter == 2  # two steps ran (0 and 1)

    logged = _logged_terms(trainer)
    declared = set(spec.terms)
    extras = FAMILY_FORGET_EXTRAS[family] if spec.uses_forget_data else set()
    # The detector's own retain losses are logged one by one (retain_loss_cls, ...) in
    # place of their weighted sum loss_retain; everything else is logged under its name.
    expected = (declared - {"loss_retain"}) | extras
    assert {k for k in logged if not k.startswith("retain_")} == expected
    assert any(k.startswith("retain_") for k in logged) == spec.uses_retain_data

    model = trainer.model
    adapters = dict(lora_layers(model))
    if spec.adapters == "none":
        assert not adapters
        assert all(p.requires_grad for p in model.detector.parameters())
    else:
        suffix = {"ffn": ("fc1", "fc2", "linear1", "linear2"), "qkv": ("attn.qkv",)}
        assert adapters and all(n.endswith(suffix[spec.adapters]) for n in adapters)
        assert record["adapter"] == "adapters/task_00"


@pytest.mark.parametrize(
    "family, method",
    [(f, m.name) for f in FAMILY_CONFIG for m in METHODS.values() if not m.supports(f)],
)
def test_forbidden_pair_is_refused_with_the_reason(tmp_path, tiny_shapes, family, method):
    cfg = tiny_cfg(tmp_path / "run", FAMILY_CONFIG[family], **{"FORGET.METHOD": method})
    with pytest.raises(MethodNotSupportedError) as info:
        finalize_forget_config(cfg)
    message = str(info.value)
    assert f"{method!r} is not available for {family}" in message
    assert get_method(method).refused[family] in message
    assert str([m.name for m in methods_for(family)]) in message
    assert not (tmp_path / "run").exists()


def test_the_registry_refuses_what_cannot_run():
    # Retraining a detector from scratch is not a forgetting step; DETR has no fused qkv.
    assert not get_method("retrain").supports("rcnn")
    assert not get_method("retrain").supports("detr")
    assert not get_method("no_retain").supports("detr")
    assert get_method("no_retain").supports("rcnn")
