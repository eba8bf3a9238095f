"""Try every hostile or clumsy input on the real command line and print what the user sees.

    .venv/bin/python scripts/hostile_table.py [--repo DIR] [--work DIR] [--json OUT]

Runs ``tools/train_net.py`` (on the tests' tiny shapes detector, 3 forgetting iterations) and
the adapter loader of ``--repo`` (default: this checkout; give an older checkout to see how it
behaved before) and prints a markdown table: input, the message the user gets (the ``error:``
line, else the last line of stderr, else "exit 0"), the exit status, and what is left in
``OUTPUT_DIR``. The cases are those of the hostile-input and run-integrity issues (13, 19).
Takes a few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

LAUNCHER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, os.path.join({repo!r}, "tools"))
    sys.path.insert(0, os.path.join({repo!r}, "tests"))
    sys.path.insert(0, {repo!r})
    from detection_fixtures import register_tiny_shapes
    register_tiny_shapes(os.environ["TINY_SHAPES_ROOT"])
    import train_net
    if hasattr(train_net, "entry"):
        from det_forget.errors import run_tool
        sys.exit(run_tool(train_net.entry))
    # An older checkout: its __main__ block, as `python tools/train_net.py` runs it.
    from detectron2.engine import default_argument_parser, launch
    args = default_argument_parser().parse_args()
    launch(train_net.main, args.num_gpus, num_machines=args.num_machines,
           machine_rank=args.machine_rank, dist_url=args.dist_url, args=(args,))
    """
)


class _Payload:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (open, (self.path, "w"))


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _left(out: Path) -> str:
    if not out.exists():
        return "nothing (no folder)"
    if out.is_file():
        return "(OUTPUT_DIR is a file)"
    names = sorted(p.name for p in out.iterdir())
    return ", ".join(names) if names else "empty folder"


def _message(proc: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error:")]
    if errors:
        text = errors[-1]
    elif proc.returncode and lines:
        text = lines[-1]
    else:
        text = "exit 0"
    tb = " (after a traceback)" if "Traceback" in proc.stderr and not errors else ""
    text = text.replace("|", "\\|")
    return (text[:230] + "...") if len(text) > 230 else text + tb


class Table:
    def __init__(self, repo: Path, work: Path):
        self.repo, self.work = repo, work
        self.rows: list[dict] = []
        sys.path[:0] = [str(repo), str(repo / "tests")]
        from detection_fixtures import register_tiny_shapes, save_base_checkpoint, tiny_cfg

        import det_forget  # noqa: F401

        self.tiny_cfg, self.save_base = tiny_cfg, save_base_checkpoint
        self.data = work / "tiny_shapes"
        register_tiny_shapes(self.data)
        from detectron2.data import DatasetCatalog

        DatasetCatalog.get("tiny_shapes_train")  # generate now
        DatasetCatalog.get("tiny_shapes_val")
        (work / "launch.py").write_text(LAUNCHER.format(repo=str(repo)))
        cfg = tiny_cfg(work / "unused")
        self.base = save_base_checkpoint(cfg, work / "base.pth")

    def yaml(self, name: str, data_root: Path | None = None, **overrides) -> tuple[Path, Path]:
        out = self.work / name / "run"
        out.parent.mkdir(parents=True, exist_ok=True)
        cfg = self.tiny_cfg(out, **overrides)
        cfg.MODEL.WEIGHTS = self.base
        path = self.work / name / "cfg.yaml"
        path.write_text(cfg.dump())
        return path, out

    def train_net(self, *argv, data_root: Path | None = None) -> subprocess.CompletedProcess:
        env = {
            **os.environ,
            "TINY_SHAPES_ROOT": str(data_root or self.data),
            "OMP_NUM_THREADS": "1",
            "PYTHONPATH": str(self.repo),
        }
        return subprocess.run(
            [sys.executable, str(self.work / "launch.py"), *map(str, argv)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    def add(self, issue, case, proc=None, out=None, message=None, status=None, extra=""):
        row = {
            "issue": issue,
            "input": case,
            "message": message if message is not None else _message(proc),
            "exit": status if status is not None else proc.returncode,
            "left": (_left(out) if out is not None else "-") + (f"; {extra}" if extra else ""),
        }
        self.rows.append(row)
        print(f"[{issue}] {case}: exit {row['exit']}: {row['message']}", flush=True)

    # ---------------------------------------------------------------------------------------

    def cli_cases(self):
        marker = self.work / "MARKER"
        for suffix in (".pkl", ".pth"):
            import torch

            path = self.work / f"evil{suffix}"
            state = {"model": {"w": _Payload(marker)}}
            if suffix == ".pkl":
                path.write_bytes(pickle.dumps(state, protocol=2))
            else:
                torch.save(state, path)
            cfg, out = self.yaml(f"payload{suffix}")
            proc = self.train_net("--config-file", cfg, "MODEL.WEIGHTS", path)
            ran = marker.exists()
            marker.unlink(missing_ok=True)
            self.add(
                13,
                f"MODEL.WEIGHTS: {suffix} whose payload creates a file",
                proc,
                out,
                extra="payload RAN (marker created)" if ran else "payload did not run",
            )
        good = Path(self.base).read_bytes()
        trunc = self.work / "truncated.pth"
        trunc.write_bytes(good[: len(good) // 2])
        text = self.work / "notes.txt"
        text.write_text("these are not weights\n")
        for label, opts in [
            ("MODEL.WEIGHTS: truncated .pth", ["MODEL.WEIGHTS", trunc]),
            ("MODEL.WEIGHTS: a text file", ["MODEL.WEIGHTS", text]),
            ("MODEL.WEIGHTS: missing file", ["MODEL.WEIGHTS", self.work / "nope.pth"]),
            ("FORGET.METHOD nonsense", ["FORGET.METHOD", "nonsense"]),
            ("FORGET.CLASSES ['unicorn']", ["FORGET.CLASSES", "['unicorn']"]),
            ("FORGET.CLASSES []", ["FORGET.CLASSES", "[]"]),
            ("FORGET.NO_SUCH_KEY 1", ["FORGET.NO_SUCH_KEY", "1"]),
            ("SOLVER.IMS_PER_BATCH 0", ["SOLVER.IMS_PER_BATCH", "0"]),
            ("--resume after the KEY VALUE overrides", ["FORGET.MAX_ITER", "3", "--resume"]),
        ]:
            cfg, out = self.yaml(
                label.split(":")[0].split()[0].replace(".", "_") + str(len(self.rows))
            )
            self.add(13, label, self.train_net("--config-file", cfg, *opts), out)
        cfg, out = self.yaml("file_output")
        out.write_text("I am a file")
        self.add(13, "OUTPUT_DIR is a file", self.train_net("--config-file", cfg), out)

    def finished_run_cases(self):
        cfg, out = self.yaml("finished")
        first = self.train_net("--config-file", cfg)
        self.add(13, "first run (3 iterations), for the cases below", first, out)
        before = _hashes(out)
        proc = self.train_net("--config-file", cfg)
        same = _hashes(out) == before
        self.add(
            13,
            "same command again into the finished OUTPUT_DIR",
            proc,
            out,
            extra="first run byte-identical" if same else "first run CHANGED",
        )
        before = _hashes(out)
        proc = self.train_net(
            "--config-file", cfg, "--resume", "FORGET.CLASSES", "['green_square']"
        )
        changed = sorted(k for k, v in _hashes(out).items() if before.get(k) != v)
        self.add(
            19,
            "--resume the finished run with another FORGET.CLASSES",
            proc,
            out,
            extra=f"files rewritten: {changed}" if changed else "no file changed",
        )
        for label, target in [
            ("last_checkpoint naming ../elsewhere.pth", "../elsewhere.pth"),
            ("last_checkpoint naming an absolute path", self.base),
        ]:
            cfg2, out2 = self.yaml(f"lastckpt{len(self.rows)}")
            shutil.copytree(out, out2)
            shutil.copy(self.base, out2.parent / "elsewhere.pth")
            for name in ("model_merged.pth", "model_merged.safetensors"):
                (out2 / name).unlink(missing_ok=True)
            (out2 / "last_checkpoint").write_text(str(target))
            proc = self.train_net("--config-file", cfg2, "--resume")
            self.add(19, label, proc, out2)

    def data_cases(self):
        import json as _json

        def variant(name, edit):
            root = self.work / f"data_{name}"
            shutil.copytree(self.data, root)
            ann = root / "annotations" / "instances_train.json"
            if not ann.exists():
                ann = next(root.rglob("*train*.json"))
            edit(root, ann)
            return root

        def first_image(root, ann):
            d = _json.loads(ann.read_text())
            img = d["images"][0]["file_name"]
            return next(p for p in root.rglob(os.path.basename(img)) if "train" in str(p))

        def missing(root, ann):
            first_image(root, ann).unlink()

        def not_image(root, ann):
            first_image(root, ann).write_bytes(b"this is not a PNG")

        def unknown_cat(root, ann):
            d = _json.loads(ann.read_text())
            d["annotations"][0]["category_id"] = 999
            ann.write_text(_json.dumps(d))

        def empty_file(root, ann):
            ann.write_text("")

        def no_annotations(root, ann):
            d = _json.loads(ann.read_text())
            d["annotations"] = []
            ann.write_text(_json.dumps(d))

        for label, edit in [
            ("a train image listed but missing on disk", missing),
            ("a train image that is not an image", not_image),
            ("an annotation with unknown category id 999", unknown_cat),
            ("an empty annotations file", empty_file),
            ("annotations with no objects", no_annotations),
        ]:
            root = variant(label.split()[1] + str(len(self.rows)), edit)
            cfg, out = self.yaml(f"data{len(self.rows)}")
            self.add(13, label, self.train_net("--config-file", cfg, data_root=root), out)

    def adapter_cases(self):
        """Adapters through the library loader (the app's --adapter and --run use it)."""
        import numpy as np
        from safetensors.numpy import load_file, save_file

        cfg, out = self.yaml("finished")
        adapters = sorted((out / "adapters").glob("*")) if (out / "adapters").exists() else []
        adapter = adapters[0] if adapters else next(out.rglob("adapter_config.json")).parent
        from det_forget.engine.inference import build_config, load_detector

        def load(folder):
            c = build_config(str(cfg), [])
            try:
                load_detector(c, adapters=[str(folder)])
            except Exception as e:  # noqa: BLE001 - reporting what the user sees
                msg = f"{type(e).__name__}: {e}".splitlines()[0]
                return msg[:230], 2
            return "loaded without complaint", 0

        manifest = adapter / "adapter_config.json"
        weights = adapter / "adapter_model.safetensors"

        def variant(name, edit):
            folder = self.work / "adapters" / name
            shutil.copytree(adapter, folder)
            edit(folder / manifest.name, folder / weights.name)
            return folder

        def set_key(key, value, nested=True):
            def edit(m, w):
                d = json.loads(m.read_text())
                (d.get("lora_config", d) if nested else d)[key] = value
                m.write_text(json.dumps(d))

            return edit

        def tensor_edit(fn):
            def edit(m, w):
                t = load_file(str(w))
                k = next(k for k in sorted(t) if "lora_B" in k)
                t[k] = fn(t[k].copy())
                save_file(t, str(w))
                # As if saved so: the manifest's checksum matches the edited tensors.
                d = json.loads(m.read_text())
                if "weights_sha256" in d:
                    d["weights_sha256"] = hashlib.sha256(w.read_bytes()).hexdigest()
                    m.write_text(json.dumps(d))

            return edit

        def flip_byte(m, w):
            b = bytearray(w.read_bytes())
            b[-5] ^= 0xFF
            w.write_bytes(bytes(b))

        def nan_b(a):
            a.flat[0] = np.nan
            return a

        cases = [
            ("adapter: alpha NaN", set_key("alpha", float("nan"))),
            ("adapter: alpha 1000x", set_key("alpha", 1000.0)),
            ("adapter: one NaN in lora_B (checksum matching)", tensor_edit(nan_b)),
            ("adapter: a flipped byte in the tensor data", flip_byte),
            ("adapter: truncated JSON", lambda m, w: m.write_text(m.read_text()[:20])),
            ("adapter: truncated safetensors", lambda m, w: w.write_bytes(w.read_bytes()[:100])),
            ("adapter: wrong types (rank 'eight')", set_key("rank", "eight")),
            ("adapter: unknown key", set_key("surprise", 1, nested=False)),
            ("adapter: path-like target name", set_key("target_modules", ["../../etc/passwd"])),
        ]
        for label, edit in cases:
            try:
                folder = variant(label.split(":")[1].strip().replace(" ", "_")[:20], edit)
            except Exception as e:  # noqa: BLE001
                self.add(
                    19 if "NaN" in label or "byte" in label or "1000" in label else 13,
                    label,
                    message=f"(could not build the case: {e})",
                    status="-",
                )
                continue
            msg, status = load(folder)
            issue = 19 if any(s in label for s in ("NaN", "byte", "1000", "truncated JSON")) else 13
            self.add(issue, label, message=msg, status=status)
        mode = oct(weights.stat().st_mode & 0o777)
        self.add(19, "adapter_model.safetensors permissions", message=f"mode {mode}", status="-")

    def save_order_case(self):
        cfg, out = self.yaml("unwritable_adapters")
        out.mkdir(parents=True)
        (out / "adapters").write_text("a file where the adapters folder goes")
        proc = self.train_net("--config-file", cfg)
        self.add(19, "adapters folder cannot be written (a file is in the way)", proc, out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--work", default=None, help="scratch folder (default: a new temp dir)")
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    import tempfile

    work = Path(args.work or tempfile.mkdtemp(prefix="hostile_"))
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    table = Table(Path(args.repo).resolve(), work)
    for part in (
        table.cli_cases,
        table.finished_run_cases,
        table.adapter_cases,
        table.data_cases,
        table.save_order_case,
    ):
        try:
            part()
        except Exception as e:  # noqa: BLE001 - keep the table going
            print(f"{part.__name__} stopped: {type(e).__name__}: {e}", flush=True)
    print("\n| issue | input | message | exit | left in OUTPUT_DIR |\n|---|---|---|---|---|")
    for r in table.rows:
        print(f"| {r['issue']} | {r['input']} | {r['message']} | {r['exit']} | {r['left']} |")
    if args.json:
        Path(args.json).write_text(json.dumps(table.rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
