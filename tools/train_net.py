#!/usr/bin/env python
"""Train or forget with detectron2 conventions.

    python tools/train_net.py --config-file configs/coco_forget.yaml [--num-gpus N]
        [--eval-only] [--resume] [--debug] [KEY VALUE ...]

With ``MODEL.META_ARCHITECTURE: ForgettingDetector`` it runs forgetting (one task or a
continual sequence) and reports AP on forgotten vs retained classes; with any other
meta-architecture it trains that detector (how the embedded base model is built).

A new run refuses an ``OUTPUT_DIR`` that holds a finished run (``--resume`` continues it,
``FORGET.OVERWRITE True`` replaces it). A user error (bad config value, unknown class or
method, unfit or unsafe checkpoint, bad dataset) is printed as one ``error:`` line and
the exit status is 2; ``--debug`` shows its traceback.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import detectron2.utils.comm as comm  # noqa: E402
from detectron2.engine import default_argument_parser, default_setup, launch  # noqa: E402
from detectron2.evaluation import verify_results  # noqa: E402
from detectron2.utils.logger import setup_logger  # noqa: E402

import det_forget  # noqa: E402,F401  (registers components and the embedded datasets)
from det_forget.engine import DetectionTrainer  # noqa: E402
from det_forget.engine.inference import build_config  # noqa: E402
from det_forget.errors import run_tool  # noqa: E402
from det_forget.forgetting import RunDirectory  # noqa: E402

logger = logging.getLogger("det_forget.train_net")


def setup(args):
    """Config from file + command-line overrides, frozen, with detectron2's default setup."""
    cfg = build_config(args.config_file, args.opts)  # MODEL.DEVICE cpu without CUDA
    if cfg.MODEL.META_ARCHITECTURE == "ForgettingDetector":
        from det_forget.engine import finalize_forget_config

        finalize_forget_config(cfg)
        if args.resume and not args.eval_only:
            from det_forget.engine.forget_trainer import check_resume

            check_resume(cfg)  # before default_setup rewrites the run's config.yaml
        if not args.eval_only and not (args.resume and _has_checkpoint(cfg.OUTPUT_DIR)):
            # Before default_setup writes config.yaml and log.txt into OUTPUT_DIR.
            RunDirectory(cfg.OUTPUT_DIR).check_new_run(
                overwrite=cfg.FORGET.OVERWRITE, can_resume=True, main_process=comm.is_main_process()
            )
    cfg.freeze()
    args.created_output_dir = not os.path.exists(cfg.OUTPUT_DIR)
    default_setup(cfg, args)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="det_forget")
    return cfg


# What a run writes once it has trained something. A folder this run created that holds
# none of these when the run stops on a user error (config.yaml, log.txt, request.json,
# metrics.json, events, an empty inference/ only) is removed whole: no partial output.
_TRAINED_OUTPUTS = ("last_checkpoint", "history.json", "adapters", "model_")


def _remove_if_nothing_trained(output_dir: str) -> None:
    if not os.path.isdir(output_dir):
        return
    if any(n.startswith(_TRAINED_OUTPUTS) for n in os.listdir(output_dir)):
        return
    shutil.rmtree(output_dir, ignore_errors=True)


def _has_checkpoint(output_dir: str) -> bool:
    return os.path.isfile(os.path.join(output_dir, "last_checkpoint"))


def main(args):
    cfg = setup(args)
    if args.created_output_dir:
        args.output_dir_to_clean = cfg.OUTPUT_DIR
    if cfg.MODEL.META_ARCHITECTURE == "ForgettingDetector":
        from det_forget.engine import ForgetTrainer as Trainer
    else:
        Trainer = DetectionTrainer
    if args.eval_only:
        model = Trainer.build_model(cfg)
        Trainer.build_checkpointer(model, cfg).resume_or_load(cfg.MODEL.WEIGHTS, resume=args.resume)
        res = Trainer.test(cfg, model)
        if comm.is_main_process():
            verify_results(cfg, res)
        return res
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def build_parser():
    """detectron2's command line, plus ``--debug``."""
    parser = default_argument_parser()
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of user errors too"
    )
    return parser


def _main_reporting_errors(args) -> None:
    # Runs in each process detectron2's launch starts: a user error is one line and
    # status 2 there too (the parent then exits with 2 as well).
    status = run_tool(lambda _: main(args), [], debug=args.debug)
    if status:
        output_dir = getattr(args, "output_dir_to_clean", "")
        if output_dir and comm.is_main_process():
            _remove_if_nothing_trained(output_dir)
        sys.exit(status)


def entry(argv: list[str] | None = None) -> int:
    """Parse the command line and run :func:`main` through detectron2's ``launch``."""
    args = build_parser().parse_args(argv)
    launch(
        _main_reporting_errors,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_tool(entry))
