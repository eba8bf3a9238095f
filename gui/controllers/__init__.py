"""What the main window delegates: one controller per concern, each testable on its own.

* :mod:`.model`: loading a config + checkpoint + adapters into a session;
* :mod:`.detections`: running the held models on the image shown, once each;
* :mod:`.job`: the forgetting job's config, thread, progress, cancel and result;
* :mod:`.audit`: AP per class before forgetting, and the audit of a result;
* :mod:`.export`: saving a result (adapters, merged checkpoint, reports, comparison).

Controllers own the background work and the logic and never touch a widget: they take a
:class:`~gui.session.ModelSession` and the settings, raise :class:`ActionRefused` when an
action cannot run now, and report through Qt signals on the GUI thread. The window
connects them to its views.
"""

from .audit import AuditController
from .detections import DetectionController
from .errors import ActionRefused
from .export import comparison_png, comparison_summary, save_results, widget_png
from .job import JobController, job_config
from .model import ModelLoader, load_session

__all__ = [
    "ActionRefused",
    "AuditController",
    "DetectionController",
    "JobController",
    "ModelLoader",
    "comparison_png",
    "comparison_summary",
    "job_config",
    "load_session",
    "save_results",
    "widget_png",
]
