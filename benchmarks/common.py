"""What the benchmark scripts share: the machine, the models, isolated workers, tables, JSON.

* :func:`describe_machine`: what numbers were measured on (CPU, usable cores, memory,
  load, library versions, GPU), stored in every result file;
* :func:`model_setup`: the detectors the benchmarks measure (the embedded tiny model,
  ViT-S/B-size backbones in the same detector, ViTDet-B), at full or ``--smoke`` size;
* :func:`run_worker`: one measurement in a fresh Python process (``benchmarks/measure.py``),
  so the peak memory of one variant never includes another's;
* :func:`format_table`, :func:`write_json`, :func:`add_common_arguments`, :func:`ratio`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "DEMO_FORGET_CLASSES",
    "MEASURE_SCRIPT",
    "MODEL_NAMES",
    "RESULTS_DIR",
    "ROOT",
    "SMOKE_DATASETS",
    "ModelSetup",
    "add_common_arguments",
    "default_output",
    "describe_machine",
    "format_table",
    "median",
    "model_setup",
    "ratio",
    "register_smoke_dataset",
    "run_worker",
    "write_json",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "benchmarks" / "results"
MEASURE_SCRIPT = ROOT / "benchmarks" / "measure.py"
CONFIG_DIR = ROOT / "configs"
SHIPPED_TINY_WEIGHTS = ROOT / "det_forget" / "model_zoo" / "shapes_vit_tiny_frcnn.pth"

#: The demo's forget set (``configs/coco_forget.yaml``).
DEMO_FORGET_CLASSES = ["blue_triangle", "cyan_ring"]

#: Train / val dataset names of ``--smoke`` runs: 24 + 8 generated images of 64 px.
SMOKE_DATASETS = ("bench_smoke_shapes_train", "bench_smoke_shapes_val")

logger = logging.getLogger("det_forget.benchmarks")


# --------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSetup:
    """A detector the benchmarks measure: a config, overrides and weights.

    Attributes:
        name: ``tiny``, ``small``, ``base`` or ``vitdet_b``.
        config_file: the yaml config (a forgetting config).
        opts: ``KEY VALUE`` overrides, JSON-serialisable.
        weights: checkpoint file; ``""`` means random initial weights.
        description: one line for reports (architecture, where the weights come from).
        image_size: input side in pixels (train and test).
    """

    name: str
    config_file: str
    opts: tuple[Any, ...]
    weights: str
    description: str
    image_size: int


#: Names accepted by :func:`model_setup`.
MODEL_NAMES = ("tiny", "small", "base", "vitdet_b")

_VIT_DIMS = {  # embed dim, depth, heads
    "tiny": (192, 6, 3),
    "small": (384, 12, 6),
    "base": (768, 12, 12),
}
_SMOKE_VIT_DIMS = {"tiny": (48, 2, 2), "small": (64, 2, 2), "base": (96, 2, 3)}

_SMOKE_DETECTOR_OPTS = [
    "MODEL.VIT.PRETRAIN_IMG_SIZE", 64,
    "MODEL.VIT.OUT_CHANNELS", 32,
    "MODEL.ROI_BOX_HEAD.FC_DIM", 64,
    "MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 32,
    "MODEL.RPN.BATCH_SIZE_PER_IMAGE", 32,
    "DATASETS.TRAIN", [SMOKE_DATASETS[0]],
    "DATASETS.TEST", [SMOKE_DATASETS[1]],
    "FORGET.DATA_RATIO", 1.0,
    "FORGET.SPARSITY.WARMUP_ITERS", 0,
    "SOLVER.WARMUP_ITERS", 1,
]  # fmt: skip

_VITDET_B_SHAPES_OPTS = [
    "DATASETS.TRAIN", ["shapes_train"],
    "DATASETS.TEST", ["shapes_val"],
    "MODEL.ROI_HEADS.NUM_CLASSES", 10,
    "FORGET.CLASSES", DEMO_FORGET_CLASSES,
    "FORGET.DATA_RATIO", 0.5,
]  # fmt: skip

_SMOKE_VITDET_B_OPTS = [
    "MODEL.VIT.EMBED_DIM", 48,
    "MODEL.VIT.DEPTH", 2,
    "MODEL.VIT.NUM_HEADS", 2,
    "MODEL.VIT.WINDOW_SIZE", 2,
    "MODEL.VIT.WINDOW_BLOCK_INDEXES", [0],
    "MODEL.VIT.DROP_PATH_RATE", 0.0,
    "MODEL.ROI_BOX_HEAD.CONV_DIM", 32,
    "MODEL.RPN.PRE_NMS_TOPK_TRAIN", 200,
    "MODEL.RPN.POST_NMS_TOPK_TRAIN", 50,
    "MODEL.RPN.PRE_NMS_TOPK_TEST", 100,
    "MODEL.RPN.POST_NMS_TOPK_TEST", 50,
]  # fmt: skip


def _size_opts(size: int, square_pad: bool) -> list[Any]:
    opts = [
        "INPUT.MIN_SIZE_TRAIN", [size],
        "INPUT.MAX_SIZE_TRAIN", size,
        "INPUT.MIN_SIZE_TEST", size,
        "INPUT.MAX_SIZE_TEST", size,
        "MODEL.VIT.IMG_SIZE", size,
    ]  # fmt: skip
    return opts + (["MODEL.VIT.SQUARE_PAD", size] if square_pad else [])


def model_setup(
    name: str,
    *,
    smoke: bool = False,
    image_size: int | None = None,
    batch: int | None = None,
    device: str = "cpu",
) -> ModelSetup:
    """The detector ``name`` on the embedded shapes data (or the ``--smoke`` data).

    Full size: ``tiny`` is the demo's detector with its shipped weights; ``small`` and
    ``base`` put a ViT-S / ViT-B-size backbone (384-d x 12 / 768-d x 12) into the same
    detector; ``vitdet_b`` is ``configs/vitdet_b_coco_forget.yaml`` (ViTDet-B: windowed
    attention, relative positions, 4conv1fc box head) with the shapes' 10 classes. Only
    ``tiny`` has trained weights: no other checkpoint ships and none can be downloaded,
    so the others start from random weights (step time and memory do not depend on the
    values). ``--smoke`` shrinks every model to a 2-block ViT of at most 96 dims on 64 px
    images, all with random weights.

    Args:
        name: one of :data:`MODEL_NAMES`.
        smoke: the seconds-long test size.
        image_size: input side in pixels (default: 192, the shapes' size; 64 in smoke).
        batch: images per side and step (``SOLVER.IMS_PER_BATCH``); ``None`` keeps the
            config's.
        device: ``cpu`` or ``cuda``.

    Returns:
        A :class:`ModelSetup`.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model {name!r}; valid: {list(MODEL_NAMES)}")
    size = image_size or (64 if smoke else 192)
    opts: list[Any] = ["MODEL.DEVICE", device]
    if batch is not None:
        opts += ["SOLVER.IMS_PER_BATCH", int(batch)]
    if name == "vitdet_b":
        config = CONFIG_DIR / "vitdet_b_coco_forget.yaml"
        opts += _VITDET_B_SHAPES_OPTS
        if smoke:
            opts += _SMOKE_DETECTOR_OPTS + _SMOKE_VITDET_B_OPTS
            desc = "ViTDet-B config shrunk to 48-d x 2 blocks (smoke); random weights"
        else:
            desc = (
                "ViTDet-B Faster R-CNN (configs/vitdet_b_coco_forget.yaml: ViT-B 768-d x 12, "
                "windowed attention, 4conv1fc head), 10 classes; random weights"
            )
        weights = ""
    else:
        config = CONFIG_DIR / "coco_forget.yaml"
        dim, depth, heads = (_SMOKE_VIT_DIMS if smoke else _VIT_DIMS)[name]
        opts += ["MODEL.VIT.EMBED_DIM", dim, "MODEL.VIT.DEPTH", depth, "MODEL.VIT.NUM_HEADS", heads]
        if smoke:
            opts += _SMOKE_DETECTOR_OPTS
        weights = str(SHIPPED_TINY_WEIGHTS) if name == "tiny" and not smoke else ""
        origin = "shipped weights" if weights else "random weights"
        what = {"tiny": "demo detector", "small": "ViT-S-size", "base": "ViT-B-size"}[name]
        desc = f"{what}: ViT {dim}-d x {depth} blocks, {heads} heads; {origin}"
        if smoke:
            desc += " (smoke)"
    opts += ["MODEL.WEIGHTS", weights]
    opts += _size_opts(size, square_pad=name == "vitdet_b")
    return ModelSetup(
        name=name,
        config_file=str(config),
        opts=tuple(opts),
        weights=weights,
        description=desc,
        image_size=size,
    )


def register_smoke_dataset(root: str | os.PathLike) -> None:
    """Register the ``--smoke`` shapes data under ``root`` (generated on first use)."""
    from det_forget.data import register_shapes_dataset

    register_shapes_dataset(
        root=str(root), names=SMOKE_DATASETS, num_train=24, num_val=8, image_size=64
    )


# --------------------------------------------------------------------------------------------
# Machine
# --------------------------------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text()
    except OSError:
        return None


def _cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _cgroup_cpus() -> float | None:
    """CPUs the container may use (cgroup v2 ``cpu.max``), ``None`` when unlimited."""
    text = _read("/sys/fs/cgroup/cpu.max")
    parts = (text or "").split()
    if len(parts) != 2 or parts[0] == "max":
        return None
    return int(parts[0]) / int(parts[1])


def _memory_gb() -> float | None:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemTotal:"):
            return round(int(line.split()[1]) / 1024**2, 1)
    return None


def _git_commit() -> str | None:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
    except OSError:
        return None
    if head.returncode:
        return None
    return head.stdout.strip() + ("+local changes" if dirty.stdout.strip() else "")


def describe_machine(device: str = "cpu") -> dict[str, Any]:
    """What the numbers are measured on, for the result files.

    Returns:
        CPU model, logical and usable cores (affinity and cgroup quota), memory, load
        average (1/5/15 min: a busy machine shows here), OS, Python, torch, torchvision,
        detectron2 and det_forget versions, torch threads, ``OMP_NUM_THREADS``, the git
        commit, the date; on ``cuda`` the GPU name, capability, memory, CUDA and cuDNN
        versions. ``summary`` is all of it in one line.
    """
    import detectron2
    import torch
    import torchvision

    import det_forget

    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "usable_cores": usable,
        "cgroup_cpu_limit": _cgroup_cpus(),
        "memory_gb": _memory_gb(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "detectron2": detectron2.__version__,
        "det_forget": det_forget.__version__,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "git_commit": _git_commit(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "device": device,
    }
    cores = f"{usable} usable cores ({info['logical_cores']} logical)"
    summary = (
        f"{info['cpu']}, {cores}, {info['memory_gb']} GB; torch {info['torch']}, "
        f"detectron2 {info['detectron2']}; {info['torch_threads']} torch threads"
    )
    if device == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("--device cuda but torch sees no CUDA device; use --device cpu")
        props = torch.cuda.get_device_properties(0)
        info["gpu"] = {
            "name": props.name,
            "capability": f"{props.major}.{props.minor}",
            "memory_gb": round(props.total_memory / 1024**3, 1),
            "count": torch.cuda.device_count(),
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        }
        summary += f"; GPU {props.name} ({info['gpu']['memory_gb']} GB), CUDA {torch.version.cuda}"
    summary += f"; load average {info['load_average'][0]:.2f} at start"
    info["summary"] = summary
    return info


# --------------------------------------------------------------------------------------------
# Workers, tables, files
# --------------------------------------------------------------------------------------------


def run_worker(spec: dict[str, Any], *, timeout: float | None = None) -> dict[str, Any]:
    """Run one measurement (``spec["kind"]``) in a fresh Python process and return its result.

    The worker is ``benchmarks/measure.py``; it gets a scratch folder (``spec["work_dir"]``)
    that is removed afterwards. Its log is kept only when it fails.

    Raises:
        RuntimeError: the worker failed (the message ends with its last output lines).
    """
    with tempfile.TemporaryDirectory(prefix="det_forget_bench_") as tmp:
        spec_path, out_path = Path(tmp, "spec.json"), Path(tmp, "result.json")
        spec_path.write_text(json.dumps({**spec, "work_dir": str(Path(tmp, "work"))}))
        cmd = [sys.executable, str(MEASURE_SCRIPT), str(spec_path), str(out_path)]
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out_path.is_file():
            tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
            raise RuntimeError(
                f"benchmark worker {spec.get('kind')!r} ({spec.get('label', '')}) failed with "
                f"exit status {proc.returncode}:\n{tail}"
            )
        return json.loads(out_path.read_text())


def format_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A fixed-width text table: first column left-aligned, the others right-aligned."""
    lines = [tuple(str(x) for x in r) for r in rows]
    widths = [max(len(str(x[i])) for x in (tuple(header), *lines)) for i in range(len(header))]
    fmt = "  ".join([f"{{:<{widths[0]}}}"] + [f"{{:>{w}}}" for w in widths[1:]])
    sep = "-" * (sum(widths) + 2 * (len(widths) - 1))
    return "\n".join([fmt.format(*header), sep, *(fmt.format(*x) for x in lines)])


def _finite(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def write_json(path: str | os.PathLike, doc: dict[str, Any]) -> str:
    """Write ``doc`` as strict JSON (NaN/inf become null), atomically."""
    from det_forget.utils.io import atomic_write

    with atomic_write(path) as f:
        json.dump(_finite(doc), f, indent=2, allow_nan=False)
        f.write("\n")
    return str(path)


def median(values: Sequence[float]) -> float | None:
    """The median, ``None`` for no values."""
    return statistics.median(values) if values else None


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, ``None`` when either is missing or ``b`` is not positive."""
    if a is None or b is None or b <= 0:
        return None
    return a / b


def default_output(name: str, device: str) -> Path:
    """``benchmarks/results/<name>.json`` (CPU) or ``<name>_cuda.json``."""
    return RESULTS_DIR / (f"{name}.json" if device == "cpu" else f"{name}_{device}.json")


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """``--output``, ``--device``, ``--threads``, ``--smoke``, ``--work-dir``."""
    parser.add_argument(
        "--output", default=None, help="results JSON (default benchmarks/results/<name>.json)"
    )
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads in each measurement (0: torch's default, i.e. OMP_NUM_THREADS "
        "or the usable cores)",
    )
    parser.add_argument(
        "--smoke", action="store_true", help="tiny models, 1-2 steps: checks the script runs"
    )
    parser.add_argument(
        "--work-dir",
        default=str(ROOT / "output" / "benchmarks"),
        help="scratch folder (smoke data, training outputs)",
    )
