"""tools/train_net.py --num-gpus 2 on CPU: two processes over gloo through detectron2's launch."""

import os
import subprocess
import sys
import textwrap

from detection_fixtures import REPO, save_base_checkpoint, tiny_cfg

from det_forget.forgetting import RunDirectory

LAUNCHER = textwrap.dedent(
    """
    import os, sys
    sys.path.insert(0, os.path.join({repo!r}, "tools"))
    sys.path.insert(0, os.path.join({repo!r}, "tests"))
    from detectron2.engine import default_argument_parser, launch
    import train_net

    def worker(args):
        from detection_fixtures import register_tiny_shapes
        register_tiny_shapes(os.environ["TINY_SHAPES_ROOT"])
        train_net.main(args)

    if __name__ == "__main__":
        args = default_argument_parser().parse_args()
        launch(worker, args.num_gpus, dist_url="auto", args=(args,))
    """
)


def test_two_process_gloo_forgetting_run(tmp_path, tiny_shapes):
    out = tmp_path / "run"
    cfg = tiny_cfg(
        out, **{"MODEL.WEIGHTS": save_base_checkpoint(tiny_cfg(out), tmp_path / "b.pth")}
    )
    (tmp_path / "cfg.yaml").write_text(cfg.dump())
    (tmp_path / "launch.py").write_text(LAUNCHER.format(repo=REPO))
    import detection_fixtures  # the session's tiny dataset root
    from detectron2.data import MetadataCatalog

    root = os.path.dirname(
        os.path.dirname(MetadataCatalog.get(detection_fixtures.TINY_VAL).json_file)
    )
    env = {**os.environ, "TINY_SHAPES_ROOT": root, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            sys.executable,
            str(tmp_path / "launch.py"),
            "--num-gpus",
            "2",
            "--config-file",
            str(tmp_path / "cfg.yaml"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = (out / "log.txt").read_text()
    assert "World size: 2" in log
    run = RunDirectory(out)
    assert run.read_history().tasks[0]["classes"]["forget"] == ["blue_triangle", "cyan_ring"]
    assert run.merged_model() == out / "model_merged.pth"
    assert run.adapters() == [out / "adapters" / "task_00"]
    assert (out / "adapters" / "task_00" / "adapter_model.safetensors").is_file()
