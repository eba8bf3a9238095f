"""The README's main job, configs/coco_forget.yaml, on the shipped embedded model.

Few iterations and a 40-image slice of the val set keep it to about a minute; the full
run's numbers are measured by `make demo` and reported in the README.
"""

import os

import pytest
from detection_fixtures import REPO
from detectron2.data import DatasetCatalog

from det_forget.data.forget_retain import register_view
from det_forget.engine import ForgetTrainer, finalize_forget_config
from det_forget.engine.inference import build_config
from det_forget.forgetting import RunDirectory
from det_forget.lora import read_adapter_config

WEIGHTS = os.path.join(REPO, "det_forget", "model_zoo", "shapes_vit_tiny_frcnn.pth")


def test_embedded_config_forgets_and_keeps_the_rest(tmp_path):

    register_view(
        "shapes_val_first40",
        lambda: DatasetCatalog.get("shapes_val")[:40],
        "shapes_val",
        overwrite=True,
    )
    cfg = build_config(
        os.path.join(REPO, "configs", "coco_forget.yaml"),
        [
            "MODEL.DEVICE",
            "cpu",
            "MODEL.WEIGHTS",
            WEIGHTS,
            "DATASETS.TEST",
            ("shapes_val_first40",),
            "FORGET.MAX_ITER",
            60,
            "SOLVER.IMS_PER_BATCH",
            4,
            "DATALOADER.NUM_WORKERS",
            0,
            "SEED",
            0,
            "OUTPUT_DIR",
            str(tmp_path),
        ],
    )
    finalize_forget_config(cfg)
    cfg.freeze()
    trainer = ForgetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    (record,) = trainer.train()
    s = record["summary"]
    assert s["before"]["forget"] > 50 and s["before"]["retain"] > 50  # the shipped model works
    assert s["after"]["forget"] < s["before"]["forget"] / 3, s
    assert s["after"]["retain"] > s["before"]["retain"] - 10, s
    assert s["h_mean"] > 40
    meta = read_adapter_config(tmp_path / "adapters" / "task_00")["lora_config"]["metadata"]
    assert meta["classes"]["forget"] == ["blue_triangle", "cyan_ring"]
    run = RunDirectory(tmp_path)
    assert run.read_history().tasks[0]["summary"] == s
    assert run.merged_model() == tmp_path / "model_merged.pth"


@pytest.mark.parametrize("name", ["coco_forget.yaml", "coco_forget_continual.yaml"])
def test_shipped_configs_resolve(name):
    from det_forget.engine import thing_classes_of
    from det_forget.forgetting import tasks_from_config

    cfg = build_config(os.path.join(REPO, "configs", name))
    tasks = tasks_from_config(cfg, thing_classes_of(cfg))
    assert all(len(t.forget) == 2 for t in tasks)
    assert os.path.isfile(os.path.join(REPO, cfg.MODEL.WEIGHTS))
