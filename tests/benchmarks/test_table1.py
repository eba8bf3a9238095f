"""benchmarks/table1.py at --smoke size: the class-by-class protocol's JSON and table."""

from __future__ import annotations

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

from benchmarks import table1  # noqa: E402


def test_table1_smoke(tmp_path):
    out = tmp_path / "t1.json"
    doc = table1.main(["--smoke", "--output", str(out), "--test-per-class", "5"])
    assert json.loads(out.read_text())["table"] == doc["table"]
    assert doc["setting"]["classes"] == ["T-shirt/top", "Trouser"]
    assert doc["setting"]["grid_selection_classes"] == ["T-shirt/top"]
    assert "never the test split" in doc["setting"]["selection"]
    assert doc["missing_rows"] == []
    rows = {r["row"]: r for r in doc["rows"]}
    assert set(rows) == {"no_retain", "gs_lora"}
    assert not rows["no_retain"]["uses_retain_data"] and rows["gs_lora"]["uses_retain_data"]
    for r in rows.values():
        # the weight was chosen on the validation scores of the selection class
        assert set(r["select_val_scores"]) == {repr(v) for v in r["grid"]}
        best = max(r["select_val_scores"].values())
        assert r["select_val_scores"][repr(r["chosen"])] == best
        assert [c["class"] for c in r["classes"]] == ["T-shirt/top", "Trouser"]
        for c in r["classes"]:
            assert 0 <= c["acc_f"] <= 100 and 0 <= c["acc_r"] <= 100
            # no missing classes: GS-LoRA's Table 5 convention gives the same Acc_r
            assert c["acc_r_with_missing"] == c["acc_r"]
        accs = [c["acc_f"] for c in r["classes"]]
        assert r["acc_f"]["mean"] == sum(accs) / 2 and r["acc_f"]["max"] == max(accs)
    orig = doc["original"]["classes"]
    assert [c["class"] for c in orig] == ["T-shirt/top", "Trouser"]
    assert "Original model" in doc["table"] and "Poppi" in doc["table"]

    # --merge: rows run in separate processes make one table, in table order.
    with pytest.raises(ValueError, match="smoke"):
        table1.merge_runs([out])
    full = {**doc, "setting": {**doc["setting"], "smoke": False}}
    parts = []
    for i, key in enumerate(("gs_lora", "no_retain")):  # out of table order on purpose
        part = tmp_path / f"part{i}.json"
        part.write_text(json.dumps({**full, "rows": [rows[key]]}))
        parts.append(part)
    merged = table1.main(["--merge", *map(str, parts), "--output", str(tmp_path / "m.json")])
    assert [r["row"] for r in merged["rows"]] == ["no_retain", "gs_lora"]
    assert merged["rows"][0]["run"]["file"] == "part1.json"
    assert merged["setting"]["merged_from"] == ["part0.json", "part1.json"]
    assert "gs_lora_pp" in merged["missing_rows"] and merged["table"].count("\n") == 4
    # The same row run on other classes in another process is joined, its stats redone.
    half = {**rows["gs_lora"], "classes": rows["gs_lora"]["classes"][:1]}
    rest = {**rows["gs_lora"], "classes": rows["gs_lora"]["classes"][1:]}
    for name, row in (("h1.json", half), ("h2.json", rest)):
        (tmp_path / name).write_text(json.dumps({**full, "rows": [row]}))
    joined = table1.merge_runs([tmp_path / "h1.json", tmp_path / "h2.json"])["rows"][0]
    assert [c["class"] for c in joined["classes"]] == ["T-shirt/top", "Trouser"]
    assert joined["acc_f"] == rows["gs_lora"]["acc_f"] and len(joined["run"]) == 2
    other = tmp_path / "other.json"
    other.write_text(json.dumps({**full, "setting": {**full["setting"], "test_per_class": 9}}))
    with pytest.raises(ValueError, match="test-per-class"):
        table1.merge_runs([parts[0], other])


def test_acc_r_conventions_differ_with_a_missing_class():
    per_class = {0: 10.0, 1: 80.0, 2: 60.0, 3: 0.0}
    accs = table1._accs(per_class, 0, missing=(3,))
    assert accs["acc_f"] == 10.0 and accs["acc_r"] == 70.0
    assert accs["acc_r_with_missing"] == (80.0 + 60.0 + 0.0) / 3
