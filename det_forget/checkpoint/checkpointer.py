"""A ``DetectionCheckpointer`` that writes atomically and refuses checkpoints that do not fit.

detectron2's checkpointer writes ``model_XXXX.pth`` in place (a kill mid-write leaves a
corrupt file that ``--resume`` then picks up) and, when fine-tuning, skips parameters
whose shapes differ with a warning. For forgetting, the checkpoint must be *the* model
being edited: a checkpoint of another architecture or class count is an error that
names the parameters that do not fit.
"""

from __future__ import annotations

import os
from typing import Any

from detectron2.checkpoint import DetectionCheckpointer

from ..errors import UnfitFileError
from ..utils.io import atomic_torch_save, atomic_write
from .safe_load import load_pickle_weights, load_safetensors_weights, load_torch_weights

__all__ = ["CheckpointMismatchError", "ForgetCheckpointer"]

# Parameters a base checkpoint does not have because det_forget adds them.
_ADDED_KEY_MARKERS = (".lora_A.", ".lora_B.")


class CheckpointMismatchError(UnfitFileError):
    """A checkpoint does not fit the model (wrong architecture, sizes or classes)."""


class ForgetCheckpointer(DetectionCheckpointer):
    """Atomic saves; with ``strict=True`` a load must cover every non-adapter parameter.

    Args:
        model: the model.
        save_dir: where checkpoints go.
        strict: refuse checkpoints with missing or mis-shaped parameters.
        **checkpointables: as for ``DetectionCheckpointer``.
    """

    def __init__(self, model, save_dir: str = "", *, strict: bool = True, **checkpointables):
        super().__init__(model, save_dir, **checkpointables)
        self.strict = strict

    def save(self, name: str, **kwargs: Any) -> None:
        """As ``Checkpointer.save``, through a temporary file renamed into place."""
        if not self.save_dir or not self.save_to_disk:
            return
        data = {"model": self.model.state_dict()}
        for key, obj in self.checkpointables.items():
            data[key] = obj.state_dict()
        data.update(kwargs)
        basename = f"{name}.pth"
        path = os.path.join(self.save_dir, basename)
        self.logger.info("Saving checkpoint to %s", path)
        atomic_torch_save(data, path)
        self.tag_last_checkpoint(basename)

    def get_checkpoint_file(self) -> str:
        """The checkpoint ``last_checkpoint`` names, which must be a file of ``save_dir``.

        detectron2 joins whatever the text file says onto the folder, so an absolute path
        or ``../elsewhere/x.pkl`` would be loaded by ``--resume``; a run only resumes from
        its own checkpoints.

        Raises:
            ValueError: ``last_checkpoint`` names something outside ``save_dir``, or a
                file that does not exist.
        """
        tag = os.path.join(self.save_dir, "last_checkpoint")
        try:
            with open(tag, encoding="utf-8") as f:
                name = f.read().strip()
        except OSError:
            return ""
        path = os.path.join(self.save_dir, name)
        inside = os.path.dirname(os.path.realpath(path)) == os.path.realpath(self.save_dir)
        if not name or os.path.isabs(name) or os.path.basename(name) != name or not inside:
            raise ValueError(
                f"{tag} names {name!r}; --resume only loads a checkpoint file of the run "
                f"folder itself (e.g. model_final.pth). Fix or delete {tag}"
            )
        if not os.path.isfile(path):
            raise ValueError(f"{tag} names {name!r}, which is not a file in {self.save_dir}")
        return path

    def tag_last_checkpoint(self, last_filename_basename: str) -> None:
        with atomic_write(os.path.join(self.save_dir, "last_checkpoint")) as f:
            f.write(last_filename_basename)

    def load(self, path: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """As ``DetectionCheckpointer.load``; a local path that is not a file is an error
        that names it (fvcore only asserts)."""
        local = (path or "").split("?")[0]
        if local and "://" not in local and not os.path.isfile(local):
            raise FileNotFoundError(f"checkpoint not found: {local} (MODEL.WEIGHTS)")
        return super().load(path, *args, **kwargs)

    def _load_file(self, filename: str) -> dict[str, Any]:
        """detectron2's formats, read without running code from the file.

        ``.pkl`` goes through :func:`~.safe_load.load_pickle_weights` and is then treated as
        detectron2 treats it (model-zoo files keep their ``__author__``; Caffe2 / Detectron
        files get ``matching_heuristics``); ``.pth`` and ``.pyth`` through
        ``torch.load(weights_only=True)``; ``.safetensors`` holds the model's tensors.
        """
        if filename.endswith(".pkl"):
            data = load_pickle_weights(filename)
            if not isinstance(data, dict):
                raise UnfitFileError(f"{filename} holds a {type(data).__name__}, not a dict")
            if "model" in data and "__author__" in data:
                self.logger.info("Reading a file from '%s'", data["__author__"])
                return data
            if "blobs" in data:  # Caffe2 / Detectron1 detection models
                data = data["blobs"]
            data = {k: v for k, v in data.items() if not k.endswith("_momentum")}
            return {"model": data, "__author__": "Caffe2", "matching_heuristics": True}
        if filename.endswith(".pyth"):  # pycls
            data = load_torch_weights(filename)
            if not isinstance(data, dict) or "model_state" not in data:
                raise UnfitFileError(f"{filename}: pycls checkpoints must contain 'model_state'")
            state = data["model_state"]
            state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
            return {"model": state, "__author__": "pycls", "matching_heuristics": True}
        if filename.endswith(".safetensors"):
            return {"model": load_safetensors_weights(filename)}
        loaded = super()._load_file(filename)
        if not isinstance(loaded, dict):
            raise UnfitFileError(f"{filename} holds a {type(loaded).__name__}, not a checkpoint")
        return loaded

    def _torch_load(self, f: str) -> Any:
        return load_torch_weights(f)

    def _load_model(self, checkpoint: Any):
        if self.strict:
            self._check_fits(checkpoint["model"])
        return super()._load_model(checkpoint)

    def _check_fits(self, state: dict) -> None:
        model = self.model.module if hasattr(self.model, "module") else self.model
        own = model.state_dict()
        # Map the checkpoint's names onto the model's the way load_state_dict's pre-hooks
        # will (plain detector keys -> "detector.", "fc1.weight" -> "fc1.base_layer.weight").
        renamed = dict(state)
        for name, module in model.named_modules():
            prefix = f"{name}." if name else ""
            for hook in module._load_state_dict_pre_hooks.values():
                hook(renamed, prefix, {}, True, [], [], [])
        mismatched = [
            f"{k}: checkpoint {tuple(v.shape)} vs model {tuple(own[k].shape)}"
            for k, v in renamed.items()
            if k in own and hasattr(v, "shape") and tuple(v.shape) != tuple(own[k].shape)
        ]
        missing = [
            k for k in own if k not in renamed and not any(m in k for m in _ADDED_KEY_MARKERS)
        ]
        if mismatched or missing:
            lines = mismatched[:8] + [f"{k}: not in the checkpoint" for k in missing[:8]]
            more = len(mismatched) + len(missing) - len(lines)
            raise CheckpointMismatchError(
                "checkpoint does not fit the model (another architecture, size or class "
                "count?):\n  " + "\n  ".join(lines) + (f"\n  ... and {more} more" if more else "")
            )
