"""det_forget's desktop app (PySide6): load a detector, pick classes, forget them, compare.

Start it with ``det-forget-gui`` or ``python -m gui``. The app holds no training logic: it
calls :class:`det_forget.engine.ForgetJob` in a worker thread and
:mod:`det_forget.engine.inference` for loading models and running them on images.
"""
