"""The models the app holds and the detections it computed with them (no Qt in here).

Three models can be shown:

* ``"base"``: the loaded checkpoint, with loaded adapters disabled;
* ``"loaded"``: the model as loaded (with its adapters; the same as ``"base"`` without);
* ``"result"``: the model a finished forgetting job returned.

The "before" pane shows what the last forgetting started from (``"loaded"``), or the base
model when no job has run; the "after" pane shows the job's result, or the loaded
adapters' effect when no job has run. Detections are computed once per (model, image)
with a low score threshold and cached; the score slider only filters the cache.
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

from det_forget.engine import JobResult
from det_forget.engine.inference import (
    Detections,
    ForgetRecord,
    ImagePredictor,
    LoadedDetector,
    read_image,
)
from det_forget.lora import disabled_adapters, lora_layers

__all__ = ["ModelSession", "SOURCE_BASE", "SOURCE_LOADED", "SOURCE_RESULT"]

SOURCE_BASE, SOURCE_LOADED, SOURCE_RESULT = "base", "loaded", "result"


class ModelSession:
    """A loaded model, an optional forgetting result, and the detection cache.

    Args:
        config_file: the config the model was loaded with (shown to the user).
        cfg: the forgetting config jobs start from (``ForgettingDetector``).
        loaded: the loaded detector.
    """

    def __init__(self, config_file: str, cfg: Any, loaded: LoadedDetector) -> None:
        self.config_file = config_file
        self.cfg = cfg
        self.loaded = loaded
        self.result: JobResult | None = None
        self.result_cfg: Any = None
        self.records: list[ForgetRecord] = []
        self._cache: dict[tuple[str, str], Detections] = {}

    @property
    def class_names(self) -> list[str]:
        return self.loaded.class_names

    @property
    def has_adapters(self) -> bool:
        return bool(self.loaded.adapters)

    # -- which model each pane shows --
    def before_source(self) -> str:
        return SOURCE_LOADED if self.result is not None else SOURCE_BASE

    def after_source(self) -> str | None:
        if self.result is not None:
            return SOURCE_RESULT
        return SOURCE_LOADED if self.has_adapters else None

    def describe(self, source: str | None) -> str:
        """A short description of a source for the pane titles."""
        if source == SOURCE_RESULT:
            forgot = ", ".join(self.result_forget_classes()) or "?"
            return f"forgetting result (forgot: {forgot})"
        if source == SOURCE_LOADED and self.has_adapters:
            return "loaded model with adapters"
        if source == SOURCE_BASE and self.has_adapters:
            return "base model (adapters disabled)"
        if source in (SOURCE_BASE, SOURCE_LOADED):
            return "loaded model"
        return "no forgetting result yet"

    def _canonical(self, source: str) -> str:
        return SOURCE_BASE if source == SOURCE_LOADED and not self.has_adapters else source

    # -- results --
    def set_result(self, result: JobResult, cfg: Any, records: list[ForgetRecord]) -> None:
        """Hold a finished job's model; earlier result detections are dropped."""
        self.result = result
        self.result_cfg = cfg
        self.records = [*self.records, *records]
        self._cache = {k: v for k, v in self._cache.items() if k[0] != SOURCE_RESULT}

    def result_forget_classes(self) -> list[str]:
        """Classes the last job forgot (every task of it)."""
        if self.result is None:
            return []
        names: list[str] = []
        for rec in self.result.history:
            names += [c for c in rec.get("classes", {}).get("forget", []) if c not in names]
        return names

    def forgotten_classes(self) -> list[str]:
        """The classes the shown "after" model forgot: the last job's, else those of the
        loaded adapters' (or opened run's) history."""
        if self.result is not None:
            return self.result_forget_classes()
        names: list[str] = []
        for rec in self.records:
            names += [c for c in rec.classes.get("forget", []) if c not in names]
        return names

    def result_adapter_layers(self) -> list[str]:
        if self.result is None:
            return []
        model = getattr(self.result.model, "detector", self.result.model)
        return [name for name, _ in lora_layers(model)]

    # -- detections --
    def cached(self, source: str, image_path: str) -> Detections | None:
        return self._cache.get((self._canonical(source), os.path.abspath(image_path)))

    def predict(self, source: str, image_path: str) -> Detections:
        """Detections of ``image_path`` by ``source`` (cached). Call from one thread only.

        Raises:
            ValueError: unknown source, or no result to predict with.
        """
        source = self._canonical(source)
        key = (source, os.path.abspath(image_path))
        if key in self._cache:
            return self._cache[key]
        image = read_image(image_path)
        if source == SOURCE_RESULT:
            if self.result is None:
                raise ValueError("no forgetting result to run")
            dets = ImagePredictor(self.result_cfg, self.result.model)(image)
        elif source in (SOURCE_BASE, SOURCE_LOADED):
            model = self.loaded.model
            ctx = (
                disabled_adapters(model)
                if source == SOURCE_BASE and self.has_adapters
                else contextlib.nullcontext(model)
            )
            with ctx:
                dets = ImagePredictor(self.loaded.cfg, model)(image)
        else:
            raise ValueError(f"unknown model source {source!r}")
        self._cache[key] = dets
        return dets
