"""Responsive from the first second: the window paints before the heavy imports, and the
event loop answers while a model loads; slow work shows what it is doing and can be cancelled."""

from __future__ import annotations

import threading
import time

from PySide6.QtCore import QTimer


def _heartbeat(qtbot, interval_ms: int = 10):
    """A timer that counts its ticks: they only happen while the event loop answers."""
    ticks = []
    timer = QTimer()
    timer.setInterval(interval_ms)
    timer.timeout.connect(lambda: ticks.append(time.perf_counter()))
    timer.start()
    return timer, ticks


def test_startup_window_paints_and_answers_while_a_slow_import_runs(qtbot):
    from gui.startup import StartupWindow

    release = threading.Event()
    imported = []

    def slow_import():
        # A slow "import": it returns only when the test has seen the window answer.
        assert release.wait(30)
        import gui.main_window as module

        imported.append(module)
        return module

    startup = StartupWindow(importer=slow_import)
    qtbot.addWidget(startup)
    startup.show()
    startup.start()
    try:
        qtbot.waitExposed(startup)
        timer, ticks = _heartbeat(qtbot)
        qtbot.waitUntil(lambda: len(ticks) >= 5, timeout=5000)  # the loop answers meanwhile
        assert startup.isVisible() and startup.importing and not imported
        assert "importing torch" in startup.message.text()
        elapsed_before = startup.elapsed.text()
        qtbot.waitUntil(lambda: startup.elapsed.text() != elapsed_before, timeout=5000)
    finally:
        with qtbot.waitSignal(startup.ready, timeout=60000) as ready:
            release.set()
    timer.stop()
    assert ready.args[0] is imported[0] and hasattr(ready.args[0], "MainWindow")
    qtbot.waitUntil(lambda: not startup.importing, timeout=5000)


def test_startup_window_shows_an_import_failure(qtbot):
    from gui.startup import StartupWindow

    def broken():
        raise ImportError("no module named 'torch'")

    startup = StartupWindow(importer=broken)
    qtbot.addWidget(startup)
    startup.show()
    with qtbot.waitSignal(startup.failed, timeout=10000):
        startup.start()
    assert "could not start" in startup.message.text() and "torch" in startup.message.text()


def test_event_loop_answers_while_the_model_loads_and_loading_can_be_cancelled(qtbot, window):
    w = window
    assert w.isVisible()
    # A slow task holds the runner: the demo load queues behind it and says so.
    release = threading.Event()
    w.runner.submit(lambda: release.wait(30), label="slow tiny task", cancellable=False)
    w.load_demo()
    timer, ticks = _heartbeat(qtbot)
    qtbot.waitUntil(lambda: len(ticks) >= 5, timeout=5000)
    assert w.activity_label.isVisible() and w.activity_bar.isVisible()
    assert w.activity_label.text().startswith("slow tiny task") and "+1 queued" in (
        w.activity_label.text()
    )
    assert w.activity_cancel.isEnabled()  # the queued load may be cancelled
    w.next_action.trigger()  # the window still takes commands
    # Cancel: the queued load never starts; the window stays without a model.
    cancelled = []
    w.loader.cancelled.connect(cancelled.append)
    w.activity_cancel.click()
    assert cancelled == [w.demo_config] and not w.activity_cancel.isEnabled()
    release.set()
    qtbot.waitUntil(lambda: w.runner.pending == 0, timeout=10000)
    assert w.session is None and not w.activity_label.isVisible()

    # A real load runs in the background: the heartbeat ticks between the request and
    # model_loaded (a load on the GUI thread would emit model_loaded before any tick).
    ticks.clear()
    with qtbot.waitSignal(w.model_loaded, timeout=60000):
        w.load_demo()
        assert w.session is None  # load_demo returned before the model was there
        assert "Loading" in w.activity_label.text()
    timer.stop()
    assert len(ticks) >= 1 and w.session is not None
    assert w.errors == []
