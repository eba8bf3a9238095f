"""The Audit tab: shows a run's audit.json, and runs the detection audit from the app."""

from __future__ import annotations

import copy
import dataclasses
import json

from PySide6.QtCore import Qt

from det_forget.audit import (
    AUDIT_FILE_NAME,
    AuditReport,
    MembershipResult,
    ModelAudit,
    ProbeResult,
)
from det_forget.forgetting.run_dir import RunDirectory, RunHistory


def _model(role: str, auc: float, probe_acc: float, forget_acc: float) -> ModelAudit:
    membership = {
        attack: MembershipResult(
            attack=attack,
            auc=auc + shift,
            auc_std_error=0.013,
            best_balanced_accuracy=0.52,
            threshold=-0.1,
            members=1000,
            nonmembers=1000,
            member_mean=-0.1,
            nonmember_mean=-0.12,
        )
        for attack, shift in (("loss", 0.0), ("confidence", 0.001))
    }
    probe = ProbeResult(
        balanced_accuracy=probe_acc,
        auc=0.99,
        train_samples=1600,
        test_positives=200,
        test_negatives=200,
        feature_dim=96,
        seed=0,
        train_balanced_accuracy=0.99,
    )
    return ModelAudit(role, f"/models/{role}", membership, probe, forget_acc)


def _report(forgotten_auc: float = 0.512) -> AuditReport:
    return AuditReport(
        task="classification",
        forget_classes=["Trouser", "Bag"],
        models={
            "base": _model("base", 0.61, 0.988, 97.3),
            "forgotten": _model("forgotten", forgotten_auc, 0.983, 0.0),
            "retrained": _model("retrained", 0.503, 0.887, 0.0),
        },
        data={"members": "training samples (1000)", "nonmembers": "test samples (1000)"},
    )


def test_audit_view_shows_the_numbers_and_verdict(qtbot):
    from gui.views.audit_view import AuditView

    view = AuditView()
    qtbot.addWidget(view)
    assert view.table_model.rowCount() == 0 and "No audit" in view.verdict.text()
    view.set_report(_report())
    assert view.table_model.rowCount() == 3
    assert [view.cell_text(r, 0) for r in range(3)] == ["base", "forgotten", "retrained"]
    assert view.cell_text(1, 1) == "0.512 ± 0.013"  # forgotten, MIA AUC (loss)
    assert view.cell_text(1, 2) == "0.513 ± 0.013"  # confidence attack
    assert view.cell_text(0, 4) == "0.988" and view.cell_text(2, 4) == "0.887"  # probe
    assert view.cell_text(0, 6) == "97.3" and view.cell_text(1, 6) == "0.0"
    # Within tolerance, but the verdict says the probe still separates the forgotten
    # classes better than the retrained model: the headline does not say PASS.
    assert "INCONCLUSIVE" in view.status.text() and "0.512 vs 0.503" in view.status.text()
    assert "probe still separates the forgotten classes (0.983)" in view.status.text()
    assert "better than a retrained model" in view.verdict.text()
    # Shown a row per number and a column per model: it fits the default side panel.
    view.resize(300, 600)
    view.show()
    qtbot.waitExposed(view)
    assert view.table.horizontalScrollBar().maximum() == 0
    assert view.transposed.headerData(1, Qt.Orientation.Horizontal) == "forgotten"
    assert view.transposed.headerData(1, Qt.Orientation.Vertical) == "AUC loss"
    clean = copy.deepcopy(_report())
    clean.models["forgotten"].probe.balanced_accuracy = 0.9
    view.set_report(clean)
    assert "PASS" in view.status.text() and "but" not in view.status.text()
    assert "within 0.05" in view.verdict.text() and "NOT" not in view.verdict.text()
    assert "Trouser, Bag" in view.details.text()
    view.set_report(_report(forgotten_auc=0.64))
    assert "FAIL" in view.status.text() and "NOT within 0.05" in view.verdict.text()


def test_audit_view_reads_a_run_folder(qtbot, tmp_path):
    from gui.views.audit_view import AuditView

    view = AuditView()
    qtbot.addWidget(view)
    run = tmp_path / "run"
    _report().save(run / AUDIT_FILE_NAME)
    assert view.load_run_dir(run)
    assert view.cell_text(1, 1) == "0.512 ± 0.013"
    assert view.source_path == str(run / AUDIT_FILE_NAME)
    assert view.load_run_dir(run / "metrics.json")  # a file in the run folder works too
    assert not view.load_run_dir(tmp_path)  # no audit.json: placeholder, empty table
    assert view.table_model.rowCount() == 0 and "No audit" in view.verdict.text()
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / AUDIT_FILE_NAME).write_text("{")
    assert not view.load_run_dir(bad)
    assert "Cannot read" in view.verdict.text() and view.table_model.rowCount() == 0


def test_open_run_history_shows_its_audit(window, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    task = {"task": {"index": 0}, "classes": {"forget": ["Trouser"], "retain": ["Bag"]}}
    history = RunHistory("gs_lora", "classification", "accuracy", ["Trouser", "Bag"], [task])
    RunDirectory(run).write_history(history)
    _report().save(run / AUDIT_FILE_NAME)
    window.open_run(str(run))
    assert window.audit_view.report is not None
    assert window.audit_view.cell_text(1, 1) == "0.512 ± 0.013"
    assert window.errors == []


def test_run_audit_on_a_forgetting_result(qtbot, loaded, mini_val, tmp_path):
    from det_forget.engine import JobResult

    w = loaded
    assert not w.audit_view.run_button.isEnabled()  # nothing forgotten yet
    cfg = w.session.cfg.clone()
    cfg.defrost()
    cfg.DATASETS.TEST = (mini_val,)
    history = [{"task": {"index": 0}, "classes": {"forget": ["blue_triangle"], "retain": []}}]
    out = tmp_path / "job"
    out.mkdir()
    # A real detector as the "result": a copy of the loaded one (nothing forgotten).
    result = JobResult(
        history=history, output_dir=str(out), model=copy.deepcopy(w.session.loaded.model)
    )
    w.session.set_result(result, cfg, [])
    w._update_enabled()
    assert w.audit_view.run_button.isEnabled()
    w.audits.max_samples = 12
    with qtbot.waitSignal(w.audited, timeout=120000) as blocker:
        w.audit_view.run_button.click()
    report = blocker.args[0]
    assert w.errors == []
    assert report.task == "detection" and report.forget_classes == ["blue_triangle"]
    # Same weights on both sides: identical numbers, so the check passes trivially.
    assert report.auc("forgotten") == report.auc("base")
    # Held-out AP and object fate of the forgotten class (the view has no json: the
    # evaluator converts it in a temporary folder).
    base, after = report.models["base"], report.models["forgotten"]
    assert base.forget_ap is not None and after.forget_ap == base.forget_ap
    assert after.object_fate["total"] == base.object_fate["total"]
    assert after.object_fate["total"]["objects"] > 0
    doc = json.loads((out / AUDIT_FILE_NAME).read_text())
    assert doc["forgotten_auc"] == report.auc("forgotten")
    assert w.audit_view.table_model.rowCount() == 2
    assert w.audit_view.cell_text(0, 1).startswith(f"{report.auc('base'):.3f}")
    assert w.left_tabs.currentWidget() is w.audit_view
    assert w.audit_view.run_button.isEnabled() and w.audit_view.run_button.text() == "Run audit"


def test_audit_view_shows_calibrated_attack_and_relearn_rows_when_audited(qtbot):
    from det_forget.audit import RelearnResult
    from gui.views.audit_view import AuditView

    view = AuditView()
    qtbot.addWidget(view)
    view.set_report(_report())
    assert view.table.isRowHidden(7) and view.table.isRowHidden(8)  # not audited: hidden
    report = _report()
    for role, auc, steps in (("base", 0.71, 0), ("forgotten", 0.66, 4), ("retrained", 0.5, None)):
        m = report.models[role]
        m.membership["calibrated"] = dataclasses.replace(m.membership["loss"], auc=auc)
        m.relearn = RelearnResult(
            steps=steps,
            samples_seen=None if steps is None else steps * 16,
            target_accuracy=48.0,
            original_accuracy=96.0,
            start_accuracy=96.0 if steps == 0 else 0.0,
            final_accuracy=50.0,
            retain_accuracy=80.0,
            steps_run=50 if steps is None else steps,
            budget_steps=50,
            batch_size=16,
            lr=1e-4,
            shots=5,
            retain_shots=5,
            fraction=0.5,
            eval_period=1,
        )
    report.headline_attack = "calibrated"
    view.set_report(report)
    assert not view.table.isRowHidden(7) and not view.table.isRowHidden(8)
    assert view.transposed.headerData(7, Qt.Orientation.Vertical) == "AUC calib."
    assert [view.cell_text(r, 7) for r in range(3)] == [
        "0.710 ± 0.013",
        "0.660 ± 0.013",
        "0.500 ± 0.013",
    ]
    assert view.cell_text(0, 8) == "0 steps (never lost it)"
    assert view.cell_text(1, 8) == "4 steps (64 samples)"
    assert view.cell_text(2, 8) == "not within 50 steps"
    # The headline follows the calibrated attack: 0.660 vs 0.500 fails the check.
    assert "FAIL" in view.status.text() and "(calibrated) 0.660 vs 0.500" in view.status.text()
    assert "faster than in a model that never learned" in view.verdict.text()


def test_audit_view_shows_detection_ap_fate_and_relearn(qtbot):
    from det_forget.audit import RelearnResult
    from gui.views.audit_view import AuditView

    view = AuditView()
    qtbot.addWidget(view)
    view.set_report(_report())
    assert all(view.table.isRowHidden(r) for r in (9, 10, 11))  # classification: hidden
    report = _report()
    report.task = "detection"
    report.data["heldout_ap_images"] = 40
    report.data["heldout_ap"] = "COCO box AP on 40 held-out images"
    rows = (
        ("base", 9.0, 13.0, 8, 0),
        ("forgotten", 0.0, 12.3, 0, 3),
        ("retrained", 0.0, 13.9, 0, None),
    )
    for role, ap_f, ap_r, detected, steps in rows:
        m = report.models[role]
        m.forget_ap, m.retain_ap = ap_f, ap_r
        m.object_fate = {
            "score_thresh": 0.5,
            "iou_thresh": 0.5,
            "per_class": {},
            "total": {
                "objects": 50,
                "detected": detected,
                "detected_pct": 2.0 * detected,
                "relabelled": 6,
                "relabelled_pct": 12.0,
                "gone": 44 - detected,
                "gone_pct": 88.0 - 2.0 * detected,
                "relabelled_as": {"Pullover": 6},
            },
        }
        m.relearn = RelearnResult(
            steps=steps,
            samples_seen=None if steps is None else steps * 4,
            target_accuracy=4.5,
            original_accuracy=9.0,
            start_accuracy=ap_f,
            final_accuracy=5.0,
            retain_accuracy=12.0,
            steps_run=50 if steps is None else steps,
            budget_steps=50,
            batch_size=4,
            lr=1e-4,
            shots=5,
            retain_shots=5,
            fraction=0.5,
            eval_period=5,
            metric="AP_f",
        )
    view.set_report(report)
    assert not any(view.table.isRowHidden(r) for r in (8, 9, 10, 11))
    assert view.transposed.headerData(9, Qt.Orientation.Vertical) == "AP_f"
    assert [view.cell_text(r, 9) for r in range(3)] == ["9.0", "0.0", "0.0"]
    assert [view.cell_text(r, 10) for r in range(3)] == ["13.0", "12.3", "13.9"]
    assert view.cell_text(0, 11) == "16.0 / 12.0 / 72.0"
    assert view.cell_text(1, 11) == "0.0 / 12.0 / 88.0"
    assert view.cell_text(1, 8) == "3 steps (12 samples)"
    assert view.cell_text(2, 8) == "not within 50 steps"
    verdict = view.verdict.text()
    assert "box AP (AP_f) is 0.0 after forgetting (9.0 before, 0.0 retrained)" in verdict
    assert "12.0% re-labelled as another class (Pullover 6)" in verdict
    assert "until their held-out box AP is back at 4.5" in verdict
    assert "faster than in a model that never learned" in verdict
    assert "AP and object fate: COCO box AP on 40" in view.details.text()
