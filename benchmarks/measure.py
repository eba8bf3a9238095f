#!/usr/bin/env python
"""One measurement in a fresh process: the worker that ``cost.py`` and ``scale.py`` start.

    python benchmarks/measure.py SPEC.json RESULT.json

``SPEC.json`` names a model (config file, overrides, weights) and a kind of measurement:

* ``train_steps``: forgetting steps of one method as the trainer takes them: the real
  ``ForgettingDetector`` forward on a forget and a retain batch (the sides the method
  uses), the summed loss terms, backward, and det_forget's AdamW step with gradient
  clipping (``build_optimizer``). Batches are read before timing, so the times are the
  model's alone. Wall time of every step, peak memory during the steps;
* ``forget_until``: real forgetting with ``ForgetTrainer`` (its loaders, hooks and
  schedule), evaluating AP of the forget classes on a val subset every few iterations and
  stopping once it is at most a target (time to forget);
* ``latency``: inference time per image of the base detector, the detector with adapters
  active, and the merged checkpoint loaded back, interleaved image by image.

Memory: on CPU the resident set size (RSS) from ``/proc/self/status``: ``model_mb`` right
after the model is built and its data read, ``step_peak_mb`` the high-water mark during the
measured work (reset first through ``/proc/self/clear_refs``), ``peak_mb`` the process's
peak over its whole life; on CUDA also ``torch.cuda`` allocated bytes.
"""

from __future__ import annotations

import copy
import gc
import itertools
import json
import logging
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a file: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.common import median, register_smoke_dataset, write_json  # noqa: E402

__all__ = ["MemoryProbe", "measure_forgetting", "measure_latency", "measure_train_steps"]

logger = logging.getLogger("det_forget.benchmarks.measure")

_MB = 1024**2


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _lifetime_peak_mb() -> float:
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / _MB


class MemoryProbe:
    """Resident memory (and CUDA memory) around a piece of work.

    ``start()`` records the memory now and resets the peak; ``stop()`` returns the peak
    since, with the process's lifetime peak. Without ``/proc/self/clear_refs`` (not Linux,
    or not writable) the peak cannot be reset and ``step_peak_mb`` is the lifetime peak
    (``peak_reset`` says which).

    Args:
        device: ``cpu`` or ``cuda``.
    """

    def __init__(self, device: str = "cpu") -> None:
        self.device = device
        self._start: dict[str, Any] = {}

    def start(self) -> MemoryProbe:
        """Record the memory now and reset the high-water marks."""
        import torch

        gc.collect()
        rss = _status_kb("VmRSS")
        self._start = {
            "model_mb": rss / 1024 if rss is not None else _lifetime_peak_mb(),
            "lifetime_mb": _lifetime_peak_mb(),
            "peak_reset": False,
        }
        try:
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")  # reset the RSS high-water mark to the current RSS
            self._start["peak_reset"] = _status_kb("VmHWM") is not None
        except OSError:
            pass
        if self.device == "cuda":
            torch.cuda.synchronize()
            self._start["cuda_model_mb"] = torch.cuda.memory_allocated() / _MB
            self._start["cuda_lifetime_mb"] = torch.cuda.max_memory_allocated() / _MB
            torch.cuda.reset_peak_memory_stats()
        return self

    def stop(self) -> dict[str, Any]:
        """Memory in MiB: ``model_mb``, ``step_peak_mb``, ``peak_mb``, ``overhead_mb``
        (step peak - model), and ``cuda_*`` of the same on CUDA."""
        import torch

        s = self._start
        hwm = _status_kb("VmHWM")
        step_peak = hwm / 1024 if s["peak_reset"] and hwm is not None else _lifetime_peak_mb()
        out = {
            "model_mb": s["model_mb"],
            "step_peak_mb": step_peak,
            "peak_mb": max(s["lifetime_mb"], step_peak),
            "overhead_mb": step_peak - s["model_mb"],
            "peak_reset": s["peak_reset"],
        }
        if self.device == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / _MB
            out.update(
                cuda_model_mb=s["cuda_model_mb"],
                cuda_step_peak_mb=peak,
                cuda_peak_mb=max(peak, s["cuda_lifetime_mb"]),
                cuda_overhead_mb=peak - s["cuda_model_mb"],
            )
        return out


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


# --------------------------------------------------------------------------------------------
# Measurements
# --------------------------------------------------------------------------------------------


def _config(spec: dict[str, Any], extra: list[Any]) -> Any:
    from det_forget.engine.inference import build_config

    # work_dir is scratch: a rerun replaces the runs an earlier one left there.
    opts = [*spec["opts"], "OUTPUT_DIR", spec["work_dir"], "SEED", spec.get("seed", 0)]
    opts += ["FORGET.OVERWRITE", True, *extra]
    return build_config(spec["config_file"], opts)


def measure_train_steps(spec: dict[str, Any]) -> dict[str, Any]:
    """Time and memory of ``warmup + steps`` forgetting steps of ``spec["method"]``.

    Returns:
        ``step_times_s`` (after warm-up), ``step_median_s``, ``memory`` (see
        :class:`MemoryProbe`), parameter counts and the trainable share (%).
    """
    import torch
    from detectron2.modeling import build_model
    from detectron2.utils.events import EventStorage

    from det_forget.checkpoint import ForgetCheckpointer
    from det_forget.engine import finalize_forget_config
    from det_forget.engine.base_trainer import build_optimizer
    from det_forget.engine.forget_data import TaskDataLoader, thing_classes_of
    from det_forget.forgetting import ForgettingObjective, get_method, tasks_from_config
    from det_forget.lora import count_parameters

    method = spec["method"]
    if method == "ewc":
        raise ValueError("train_steps does not estimate EWC's Fisher; measure another method")
    warmup, steps = int(spec.get("warmup", 2)), int(spec.get("steps", 5))
    device = spec.get("device", "cpu")
    cfg = _config(spec, ["FORGET.METHOD", method, "DATALOADER.NUM_WORKERS", 0])
    finalize_forget_config(cfg)
    cfg.freeze()
    torch.manual_seed(spec.get("seed", 0))
    gc.collect()
    runtime_kb = _status_kb("VmRSS")  # interpreter + libraries, before any model memory
    model = build_model(cfg)  # a ForgettingDetector; adapters injected for LoRA methods
    if spec.get("weights"):
        ForgetCheckpointer(model, strict=True).load(spec["weights"])
    model.train()

    spec_ = get_method(method)
    data = TaskDataLoader(cfg, use_forget=spec_.uses_forget_data, use_retain=spec_.uses_retain_data)
    task = tasks_from_config(cfg, thing_classes_of(cfg), cfg.DATASETS.TRAIN[0])[0]
    data.set_task(task, seed=spec.get("seed", 0))
    batches = list(itertools.islice(iter(data), max(1, min(warmup + steps, 8))))
    del data
    # As ForgetTrainer.build_objective: weight anchors (L1/L2 baselines) from the loaded weights.
    model.set_task(task, objective=ForgettingObjective.from_config(cfg, model.detector))
    optimizer = build_optimizer(cfg, model)
    trainable, total = count_parameters(model)

    probe = MemoryProbe(device).start()
    first_step = cfg.FORGET.SPARSITY.WARMUP_ITERS  # past the sparsity warm-up: all terms on
    times = []
    with EventStorage(first_step) as storage:  # detectron2's heads log into one
        for i in range(warmup + steps):
            batch = batches[i % len(batches)]
            storage.iter = first_step + i
            _sync(device)
            start = time.perf_counter()
            model.step = first_step + i
            losses = model(batch)
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            _sync(device)
            times.append(time.perf_counter() - start)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{method}: loss is {loss.item()} at step {i}")
    memory = probe.stop()
    if runtime_kb is not None and device != "cuda":
        # What CUDA's max_memory_allocated counts on a GPU: weights, gradients, optimizer
        # state and activations, without the process's fixed runtime.
        memory["runtime_mb"] = runtime_kb / 1024
        memory["train_peak_mb"] = memory["step_peak_mb"] - memory["runtime_mb"]
    return {
        "method": method,
        "warmup_times_s": times[:warmup],
        "step_times_s": times[warmup:],
        "step_median_s": median(times[warmup:]),
        "memory": memory,
        "trainable_params": trainable,
        "total_params": total,
        "trainable_share": 100.0 * trainable / max(total, 1),
        "batch_per_side": cfg.SOLVER.IMS_PER_BATCH,
        "sides": sorted(batches[0]),
        "loss_terms": sorted(losses),
    }


def _register_val_subset(dataset: str, count: int) -> str:
    """``<dataset>_first<count>``: the first ``count`` images of a registered dataset."""
    from detectron2.data import DatasetCatalog, MetadataCatalog

    name = f"{dataset}_first{count}"
    if name not in DatasetCatalog.list():
        DatasetCatalog.register(name, lambda: DatasetCatalog.get(dataset)[:count])
        meta = MetadataCatalog.get(dataset)
        MetadataCatalog.get(name).set(
            thing_classes=list(meta.thing_classes),
            thing_dataset_id_to_contiguous_id=dict(meta.thing_dataset_id_to_contiguous_id),
            evaluator_type="coco",
        )
    return name


def measure_forgetting(spec: dict[str, Any]) -> dict[str, Any]:
    """Forget ``spec["classes"]`` with ``ForgetTrainer`` until AP_f <= ``spec["target_ap"]``.

    AP_f (COCO AP in %, mean over the forget classes) is measured on the first
    ``eval_images`` val images before training and every ``eval_period`` iterations;
    training stops at the first evaluation at or under the target, or after ``max_iter``
    iterations (the schedule's length: the learning rate follows the full schedule either
    way). Evaluation time is not counted as training time.

    Returns:
        ``reached_iteration`` (None when not reached), ``time_to_target_s`` (sum of the step
        times up to it), ``curve`` (iteration, training seconds, AP_f), ``step_median_s``,
        ``memory``, and ``final_full_val_ap_f`` when the whole schedule ran (the trainer's
        own evaluation on the whole val split).
    """
    import torch
    from detectron2.utils.events import EventStorage

    from det_forget.engine import ForgetTrainer, finalize_forget_config
    from det_forget.engine.inference import evaluate_per_class_ap
    from det_forget.evaluation.metrics import group_mean
    from det_forget.forgetting import RunDirectory

    device = spec.get("device", "cpu")
    max_iter, period = int(spec["max_iter"]), int(spec["eval_period"])
    target = float(spec["target_ap"])
    work = Path(spec["work_dir"])
    cfg = _config(
        spec,
        [
            "FORGET.METHOD", spec.get("method", "gs_lora"),
            "FORGET.CLASSES", list(spec["classes"]),
            "FORGET.MAX_ITER", max_iter,
            "FORGET.EVAL_BEFORE", False,
            "FORGET.SAVE_MERGED", False,
            "SOLVER.CHECKPOINT_PERIOD", 10**9,
            # This loop stops on its own criterion (AP_f on val images), so the run's
            # stopping rule (held-out split, det_forget/forgetting/stopping.py) is off.
            "FORGET.EARLY_STOP.PERIOD", 0,
        ],
    )  # fmt: skip
    finalize_forget_config(cfg)
    cfg.freeze()
    subset = _register_val_subset(cfg.DATASETS.TEST[0], int(spec["eval_images"]))
    torch.manual_seed(spec.get("seed", 0))
    trainer = ForgetTrainer(cfg)
    trainer.resume_or_load(resume=False)
    names = trainer.class_names(trainer.tasks[0])["forget"]

    def forget_ap() -> float | None:
        per_class = evaluate_per_class_ap(cfg, trainer.model, subset, str(work / "eval"))
        return group_mean({k: v for k, v in per_class.items() if v is not None}, names)

    probe = MemoryProbe(device).start()
    curve = [{"iteration": 0, "train_seconds": 0.0, "ap_f": forget_ap()}]
    times: list[float] = []
    reached = None
    trainer.iter = trainer.start_iter = 0
    trainer.max_iter = cfg.SOLVER.MAX_ITER
    # detectron2's TrainerBase.train, with a stop once the forget classes are gone.
    with EventStorage(0) as trainer.storage:
        try:
            trainer.before_train()
            for it in range(max_iter):
                trainer.iter = it
                trainer.before_step()
                _sync(device)
                start = time.perf_counter()
                trainer.run_step()
                _sync(device)
                times.append(time.perf_counter() - start)
                trainer.after_step()
                if (it + 1) % period == 0 or it + 1 == max_iter:
                    ap = forget_ap()
                    curve.append({"iteration": it + 1, "train_seconds": sum(times), "ap_f": ap})
                    logger.info("iteration %d: AP_f %s", it + 1, ap)
                    if ap is not None and ap <= target:
                        reached = it + 1
                        break
            trainer.iter += 1
        finally:
            trainer.after_train()
    memory = probe.stop()
    final = None
    if trainer.task_hook.history:  # the whole schedule ran: the run folder holds its record
        after = RunDirectory(cfg.OUTPUT_DIR).read_history().tasks[-1]["after"]
        final = group_mean({k: v for k, v in after.items() if v is not None}, names)
    return {
        "classes": names,
        "target_ap": target,
        "reached_iteration": reached,
        "time_to_target_s": sum(times[:reached]) if reached else None,
        "iterations_run": len(times),
        "train_seconds": sum(times),
        "step_median_s": median(times[2:] or times),
        "curve": curve,
        "memory": memory,
        "final_full_val_ap_f": final,
        "batch_per_side": cfg.SOLVER.IMS_PER_BATCH,
        "eval_images": int(spec["eval_images"]),
    }


def measure_latency(spec: dict[str, Any]) -> dict[str, Any]:
    """Inference time per image: base, adapters active, merged checkpoint loaded back.

    The adapters are ``FORGET.LORA``'s, with B drawn from N(0, ``lora_b_std``) so the
    merge changes the weights (a fresh adapter's B = 0 would merge to the base itself).
    The merged model is written with ``save_merged_checkpoint`` and loaded with
    ``load_detector``, as a user would. Each image runs through the three in a rotating
    order; ``reps`` passes over ``images`` val images after a warm-up.

    Returns:
        ``median_ms`` / ``mean_ms`` per variant, detections per variant (postprocessing
        cost depends on them), the largest box difference between adapters and merged
        (pixels, first image), parameter counts.
    """
    import numpy as np
    import torch
    from detectron2.data import DatasetCatalog
    from detectron2.modeling import build_model

    from det_forget.config import lora_config_from_cfg
    from det_forget.engine.inference import (
        ImagePredictor,
        detector_config,
        load_detector,
        read_image,
        save_merged_checkpoint,
    )
    from det_forget.lora import count_parameters, inject_lora, lora_parameters

    device = spec.get("device", "cpu")
    cfg = detector_config(_config(spec, []))
    cfg.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05  # what load_detector uses
    torch.manual_seed(spec.get("seed", 0))
    if spec.get("weights"):
        base = load_detector(cfg, spec["weights"]).model
    else:
        base = build_model(cfg).eval()
    adapted = copy.deepcopy(base)
    inject_lora(adapted, lora_config_from_cfg(cfg))
    gen = torch.Generator().manual_seed(spec.get("seed", 0))
    with torch.no_grad():
        for name, p in lora_parameters(adapted):
            if ".lora_B." in name:
                p.copy_(torch.randn(p.shape, generator=gen) * float(spec.get("lora_b_std", 1e-3)))
    adapted.to(device).eval()
    merged_path = Path(spec["work_dir"]) / "latency_merged.pth"
    save_merged_checkpoint(adapted, merged_path)
    merged = load_detector(cfg, merged_path).model

    models = {"base": base, "adapters": adapted, "merged": merged}
    predictors = {k: ImagePredictor(cfg, m) for k, m in models.items()}
    dicts = DatasetCatalog.get(cfg.DATASETS.TEST[0])[: int(spec.get("images", 20))]
    images = [read_image(d["file_name"]) for d in dicts]
    for _ in range(int(spec.get("warmup", 2))):
        for p in predictors.values():
            p(images[0])
    order = list(predictors)
    times: dict[str, list[float]] = {k: [] for k in order}
    detections = dict.fromkeys(order, 0)
    for rep in range(int(spec.get("reps", 3))):
        for i, image in enumerate(images):
            shift = (rep * len(images) + i) % len(order)
            for name in order[shift:] + order[:shift]:
                _sync(device)
                start = time.perf_counter()
                dets = predictors[name](image)
                _sync(device)
                times[name].append(time.perf_counter() - start)
                if rep == 0:
                    detections[name] += len(dets)
    a, m = predictors["adapters"](images[0]), predictors["merged"](images[0])
    box_diff = float(np.abs(a.boxes - m.boxes).max()) if len(a) == len(m) and len(a) else None
    return {
        "median_ms": {k: 1000 * median(v) for k, v in times.items()},
        "mean_ms": {k: 1000 * sum(v) / len(v) for k, v in times.items()},
        "images": len(images),
        "reps": int(spec.get("reps", 3)),
        "detections": detections,
        "adapters_vs_merged_max_box_diff_px": box_diff,
        "params": {k: count_parameters(m)[1] for k, m in models.items()},
        "lora_b_std": float(spec.get("lora_b_std", 1e-3)),
    }


KINDS = {
    "train_steps": measure_train_steps,
    "forget_until": measure_forgetting,
    "latency": measure_latency,
}


def main(argv: list[str]) -> None:
    """``measure.py SPEC.json RESULT.json``: run the spec's measurement, write its result."""
    if len(argv) != 2:
        raise SystemExit("usage: measure.py SPEC.json RESULT.json")
    spec = json.loads(Path(argv[0]).read_text())
    if spec.get("kind") not in KINDS:
        raise ValueError(f"unknown measurement kind {spec.get('kind')!r}; valid: {list(KINDS)}")
    import torch
    from detectron2.utils.logger import setup_logger

    import det_forget  # noqa: F401  (registrations)

    setup_logger(name="det_forget")
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    if spec.get("smoke_root"):
        register_smoke_dataset(spec["smoke_root"])
    os.makedirs(spec["work_dir"], exist_ok=True)
    result = KINDS[spec["kind"]](spec)
    result.update(
        kind=spec["kind"],
        label=spec.get("label"),
        device=spec.get("device", "cpu"),
        torch_threads=torch.get_num_threads(),
    )
    write_json(argv[1], result)


if __name__ == "__main__":
    main(sys.argv[1:])
