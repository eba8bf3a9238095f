"""The app's "Write reviewer's report" action: the HTML report of the run it shows."""

from __future__ import annotations

from test_stale_views import FORGET, _run_dir

from det_forget.data import SHAPES_CLASS_NAMES
from det_forget.report import SECTIONS


def test_report_action_writes_the_runs_report(qtbot, loaded, tmp_path):
    w = loaded
    assert not w.report_action.isEnabled()  # no run yet
    before = {n: 80.0 for n in SHAPES_CLASS_NAMES}
    run = _run_dir(tmp_path / "run", before, {**before, FORGET: 1.0})
    w.open_run(run)
    assert w.report_action.isEnabled() and w.run_dir == run
    with qtbot.waitSignal(w.report_written, timeout=60000) as written:
        w.write_review_report(pairs=0)
    html = open(written.args[0]).read()
    assert written.args[0].startswith(run)
    assert all(f"<section id='{sid}'>" in html for sid in SECTIONS)
    assert f"<tr class='pass'><td>{FORGET}</td>" in html
    with qtbot.waitSignal(w.model_loaded, timeout=60000):
        w.load_demo()
    assert w.run_dir is None and not w.report_action.isEnabled()
