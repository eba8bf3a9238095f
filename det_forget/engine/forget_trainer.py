"""``ForgetTrainer``: GS-LoRA forgetting (one task or a continual sequence) in detectron2.

Task ``i`` owns iterations ``[i * FORGET.MAX_ITER, (i + 1) * FORGET.MAX_ITER)`` of
detectron2's training loop (``SOLVER.MAX_ITER = len(tasks) * FORGET.MAX_ITER``); a task
that the stopping rule (:mod:`det_forget.forgetting.stopping`, checked on a held-out
forget split, :mod:`.heldout`) ends early skips the rest of its iterations. The task
sequence, the task boundary and the run directory are the shared
:class:`~det_forget.forgetting.TaskRunner`'s. A thin hook (:class:`ForgetTaskHook`)
switches the data and objective at each task start, makes the stopping checks, and at
each task end evaluates COCO AP and hands the result to the runner (which records the
task, saves its adapter, writes ``history.json``, merges and resets the adapters), then
starts the next task with a fresh optimizer state. The history and the stopping state are
part of every checkpoint, so ``--resume`` continues a killed run where it stopped.

Outputs in ``OUTPUT_DIR``: the run directory of :mod:`det_forget.forgetting.run_dir`
(``config.yaml``, ``history.json``, ``adapters/task_XX/``, ``model_merged.pth`` +
``merged_config.yaml``, a plain detector checkpoint that stock detectron2 loads), plus
detectron2's ``metrics.json`` with each loss term and its training checkpoints.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping
from typing import Any

import torch
from detectron2.data import build_detection_test_loader
from detectron2.engine import hooks
from detectron2.engine.train_loop import HookBase
from detectron2.evaluation import inference_on_dataset
from detectron2.utils import comm
from detectron2.utils.events import EventStorage
from tabulate import tabulate

from ..config import check_ignored_keys, check_values, lora_config_from_cfg
from ..evaluation.before import card_path_of, evaluation_key, find_card_before
from ..evaluation.coco_forget import ForgetCOCOEvaluator, fate_thresholds, load_before
from ..forgetting import (
    ForgetTask,
    ForgettingObjective,
    RunDirectory,
    TaskRunner,
    check_method,
    config_hash,
    task_anchor,
    task_type_of,
    tasks_from_config,
)
from ..forgetting.request import check_resume_request, run_request, write_request
from ..forgetting.schedule import lr_factor
from ..forgetting.stopping import ForgetStopper, StopRule
from ..utils.io import atomic_write, remove_stale_temporaries
from .base_trainer import DetectionTrainer
from .forget_data import TaskDataLoader, thing_classes_of
from .heldout import HeldoutCheck
from .inference import detector_config, save_merged_checkpoint

__all__ = ["ForgetTrainer", "ForgetTaskHook", "check_resume", "finalize_forget_config"]

logger = logging.getLogger(__name__)


def finalize_forget_config(cfg) -> None:
    """Derive run-level keys from ``FORGET.*`` (call before ``cfg.freeze()``).

    Sets ``SOLVER.MAX_ITER = len(tasks) * FORGET.MAX_ITER`` and checks the classes early,
    so a typo fails before any model is built.
    """
    check_ignored_keys(cfg)
    check_values(cfg)
    check_method(cfg.FORGET.METHOD, task_type_of(cfg))
    tasks = tasks_from_config(cfg, thing_classes_of(cfg), cfg.DATASETS.TRAIN[0])
    cfg.SOLVER.MAX_ITER = len(tasks) * cfg.FORGET.MAX_ITER


def check_resume(cfg) -> None:
    """Before anything is written: ``--resume`` into a run folder with checkpoints must ask
    for what that run was started with (``request.json``).

    Raises:
        RunRequestMismatchError: the config asks for something else (names each
            difference).
    """
    if not os.path.isfile(os.path.join(cfg.OUTPUT_DIR, "last_checkpoint")):
        return
    classes = thing_classes_of(cfg)
    tasks = tasks_from_config(cfg, classes, cfg.DATASETS.TRAIN[0])
    check_resume_request(cfg.OUTPUT_DIR, run_request(cfg, tasks, classes, cfg.MODEL.WEIGHTS))


def _unwrap(model):
    return model.module if hasattr(model, "module") else model


class ForgetTaskHook(HookBase):
    """Runs the task sequence inside detectron2's training loop (see module docstring)."""

    def __init__(
        self, cfg, tasks: list[ForgetTask], data: TaskDataLoader, runner: TaskRunner
    ) -> None:
        self.cfg = cfg
        self.tasks = tasks
        self.data = data
        self.runner = runner
        self.per_task = cfg.FORGET.MAX_ITER
        self.before: dict[str, Any] | None = None
        self.current: int | None = None
        self.rule = StopRule.from_config(cfg, runner.method, "AP")
        self.stoppers = [self._new_stopper(t) for t in tasks]
        self.check: HeldoutCheck | None = None
        # Every iteration reseeds torch's RNG from (run seed, iteration), so box jitter and
        # RoI sampling do not depend on how much randomness earlier steps consumed: a
        # resumed run repeats exactly the steps an uninterrupted one would take.
        self.seed = cfg.SEED if cfg.SEED >= 0 else int(torch.randint(0, 2**31 - 1, ()).item())

    # -- state carried in checkpoints (TrainerBase.state_dict collects it) --
    @property
    def history(self) -> list[dict[str, Any]]:
        """The finished tasks' records (the runner's)."""
        return self.runner.records

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": self.history,
            "before": self.before,
            "seed": self.seed,
            "stopping": [s.state_dict() for s in self.stoppers],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.runner.history.tasks = list(state.get("history", []))
        self.before = state.get("before")
        self.seed = int(state.get("seed", self.seed))
        for stopper, saved in zip(self.stoppers, state.get("stopping", []), strict=False):
            stopper.load_state_dict(saved)

    def _new_stopper(self, task: ForgetTask) -> ForgetStopper:
        names = [self.runner.class_names[c] for c in task.forget]
        return ForgetStopper(self.rule, names, self.per_task)

    @property
    def _checks_possible(self) -> bool:
        """Whether the rule can ever check (else no held-out split is set aside)."""
        return self.rule.enabled and self.rule.period < self.per_task

    def task_of(self, iteration: int) -> int:
        return min(iteration // self.per_task, len(self.tasks) - 1)

    def _steps_done(self, index: int, start: int) -> bool:
        """Whether task ``index`` trained all its steps before iteration ``start``."""
        return start >= (index + 1) * self.per_task or self.stoppers[index].stopped_at is not None

    def next_iter(self, iteration: int) -> int:
        """The iteration after ``iteration``: the next one, or the next task's first one
        when the task of ``iteration`` stopped early (the training loop jumps there)."""
        index = self.task_of(iteration)
        if self.stoppers[index].stopped_at is not None and len(self.history) > index:
            return min((index + 1) * self.per_task, self.trainer.max_iter)
        return iteration + 1

    def first_iter(self, start: int) -> int:
        """Where a (resumed) run continues: past the slots of tasks that stopped early."""
        it = start
        while it < self.trainer.max_iter and self.stoppers[self.task_of(it)].stopped_at is not None:
            it = (self.task_of(it) + 1) * self.per_task
        return it

    def before_train(self) -> None:
        start = self.trainer.start_iter
        if self.before is None or start == 0:
            self.before = self._initial_before()
        trained = sum(self._steps_done(i, start) for i in range(len(self.tasks)))
        if len(self.history) < trained:
            # Resumed from the checkpoint written when a task's steps were done but before
            # its outputs (the run stopped while writing them): finish that task now.
            pending = len(self.history)
            logger.info("Finishing task %d, whose outputs were not written", pending)
            heldout = self.cfg.FORGET.EARLY_STOP.HELDOUT_IMAGES if self._checks_possible else 0
            self.data.set_task(self.tasks[pending], seed=self.seed, heldout_images=heldout)
            self._finish_task(pending)
            self.trainer.checkpointer.save(self._boundary_checkpoint(pending))
            if trained == len(self.tasks):
                return
        start = self.first_iter(start)
        if start >= self.trainer.max_iter:
            return
        index = self.task_of(start)
        if self.current != index:
            self._start_task(index, skip_batches=start - index * self.per_task)

    def _initial_before(self) -> Any:
        if self.cfg.FORGET.BEFORE_REPORT:
            # Per-class {"AP", "AP50"}, the form an evaluation returns, so the task summary
            # and the next task's "before" read it alike.
            ap, ap50 = load_before(self.cfg.FORGET.BEFORE_REPORT, self.trainer.thing_classes)
            return {c: {"AP": v, "AP50": ap50.get(c)} for c, v in ap.items()}
        if not self.cfg.FORGET.EVAL_BEFORE:
            return None
        if self.cfg.FORGET.BEFORE_FROM_CARD and self.cfg.MODEL.WEIGHTS:
            card = card_path_of(self.cfg.MODEL.WEIGHTS)
            key = evaluation_key(self.cfg, self.cfg.DATASETS.TEST[0])
            found = None if key is None else find_card_before(card, key, self.trainer.thing_classes)
            if found is not None:
                logger.info(
                    "Before forgetting: per-class AP from the model card %s (same weights, "
                    "val set %s and test settings by sha256), not evaluated again",
                    card,
                    key.val_set,
                )
                return found
        logger.info("Evaluating the model before forgetting ...")
        return self.trainer.evaluate_task(self.tasks[0], before=None)[1]

    def _start_task(self, index: int, skip_batches: int = 0) -> None:
        task = self.tasks[index]
        self.current = index
        model = _unwrap(self.trainer.model)
        heldout = self.cfg.FORGET.EARLY_STOP.HELDOUT_IMAGES if self._checks_possible else 0
        self.data.set_task(task, skip_batches=skip_batches, seed=self.seed, heldout_images=heldout)
        self.check = None
        if heldout and self.data.heldout:
            self.check = HeldoutCheck(
                self.cfg,
                self.data.heldout,
                task.forget,
                self.runner.class_names,
                batch_size=self.cfg.SOLVER.IMS_PER_BATCH,
            )
        elif heldout:
            logger.warning(
                "task %d: no forget-class training image left to hold out; the stopping "
                "rule cannot check, the task trains FORGET.MAX_ITER steps",
                index,
            )
        model.set_task(task, objective=self.trainer.build_objective(model, task))

    def before_step(self) -> None:
        torch.manual_seed(self.seed * 1_000_003 + self.trainer.iter + comm.get_rank())
        _unwrap(self.trainer.model).step = self.trainer.iter - self.current * self.per_task

    def _boundary_checkpoint(self, index: int) -> str:
        return "model_final" if index + 1 == len(self.tasks) else f"model_task{index:02d}_trained"

    def _retain_loss(self) -> float | None:
        """This iteration's training retain loss (the sum of the logged retain_* terms)."""
        latest = self.trainer.storage.latest()
        values = [
            float(v)
            for k, (v, i) in latest.items()
            if k.startswith("retain_") and i == self.trainer.iter
        ]
        return sum(values) if values else None

    def _stop_check(self, index: int, step: int) -> bool:
        """Observe this step; make a stopping check when one is due. True: stop now."""
        stopper = self.stoppers[index]
        stopper.observe(step, self._retain_loss())
        if not stopper.due(step) or self.check is None:
            return False
        ap, losses = self.check(_unwrap(self.trainer.model))
        stop = stopper.check(step, ap, losses)
        if comm.get_world_size() > 1:
            # Only the main process logs the retain loss: its decision is the run's.
            state = comm.all_gather(stopper.state_dict())[0]
            stopper.load_state_dict(state)
            stop = stopper.stopped_at is not None
        last = stopper.checks[-1]
        self.trainer.storage.put_scalars(
            **{f"stop/heldout_AP/{k}": v for k, v in last.scores.items() if v is not None},
            **{f"stop/heldout_nll/{k}": v for k, v in (last.forget_loss or {}).items() if v},
            **{"stop/passed": float(last.passed), "stop/stopped": float(stop)},
            smoothing_hint=False,
        )
        return stop

    def after_step(self) -> None:
        index = self.task_of(self.trainer.iter)
        if len(self.history) > index:
            return  # finished (stopped early); a loop that does not jump lands here
        step = self.trainer.iter - index * self.per_task
        stopped = self._stop_check(index, step)
        if not stopped and step + 1 < self.per_task:
            return
        # The trained state goes to disk before anything that can fail on other paths (the
        # adapter folder, the history): a failure there loses no training, --resume
        # finishes the task (see before_train).
        self.trainer.checkpointer.save(self._boundary_checkpoint(index))
        self._finish_task(index)
        comm.synchronize()

    def _finish_task(self, index: int) -> None:
        """Evaluate task ``index``, hand it to the runner (outputs, merge), start the next."""
        task = self.tasks[index]
        results, after = self.trainer.evaluate_task(task, before=self.before)
        split = self.data.split
        stopper = self.stoppers[index]
        steps = stopper.stopped_at or self.per_task
        stopping = stopper.summary(steps)
        stopping["heldout_images"] = len(self.data.heldout)
        stopping["heldout_source"] = self.data.heldout_source
        try:
            self.runner.end_task(
                task,
                before=None if self.before is None else _score(self.before, "AP"),
                after=_score(after, "AP"),
                train={
                    "iterations": [index * self.per_task, index * self.per_task + steps],
                    "steps": steps,
                    "stopping": stopping,
                },
                details={
                    "AP50_before": None if self.before is None else _score(self.before, "AP50"),
                    "AP50_after": _score(after, "AP50"),
                    "results": results,
                    "data_used": split.stats() if split is not None else None,
                },
                main_process=comm.is_main_process(),
            )
        except OSError as e:
            raise OSError(
                f"could not write the outputs of task {index} into {self.cfg.OUTPUT_DIR}: {e}. "
                f"The trained model is saved ({self._boundary_checkpoint(index)}.pth); fix the "
                "cause and run the same command with --resume to finish"
            ) from e
        if index + 1 < len(self.tasks):
            self.trainer.optimizer.state.clear()
            self.before = after
            self._start_task(index + 1)


class ForgetTrainer(DetectionTrainer):
    """Forgetting with a forget loader, a retain loader and task boundaries."""

    strict_checkpoint = True

    def __init__(self, cfg) -> None:
        self.thing_classes = thing_classes_of(cfg)
        self.tasks = tasks_from_config(cfg, self.thing_classes, cfg.DATASETS.TRAIN[0])
        self.method = check_method(cfg.FORGET.METHOD, task_type_of(cfg))
        self.task_data = TaskDataLoader(
            cfg, use_forget=self.method.uses_forget_data, use_retain=self.method.uses_retain_data
        )
        self.run_dir = RunDirectory(cfg.OUTPUT_DIR)
        super().__init__(cfg)

    def run_request(self) -> dict[str, Any]:
        """What this run is asked to do (:func:`~det_forget.forgetting.request.run_request`)."""
        return run_request(self.cfg, self.tasks, self.thing_classes, self.cfg.MODEL.WEIGHTS)

    def resume_or_load(self, resume: bool = True) -> None:
        """detectron2's ``resume_or_load``, continuing only the run this config describes.

        Resuming a run folder that has checkpoints requires the same request the run was
        started with (``request.json``); otherwise the run starts from ``MODEL.WEIGHTS``
        and records its request first, and an ``OUTPUT_DIR`` holding a finished run is
        refused (see :meth:`~det_forget.forgetting.RunDirectory.check_new_run`).
        """
        if resume and self.checkpointer.has_checkpoint():
            check_resume_request(self.cfg.OUTPUT_DIR, self.run_request())
            super().resume_or_load(resume=resume)
            return
        # A new run: never over a finished one unless FORGET.OVERWRITE says so.
        self.run_dir.check_new_run(
            overwrite=self.cfg.FORGET.OVERWRITE,
            can_resume=True,
            main_process=comm.is_main_process(),
        )
        if comm.is_main_process():
            remove_stale_temporaries(self.cfg.OUTPUT_DIR)
            write_request(self.cfg.OUTPUT_DIR, self.run_request())
        super().resume_or_load(resume=resume)

    def build_train_loader(self, cfg):  # noqa: D102  (instance method: needs the tasks)
        return self.task_data

    @classmethod
    def build_lr_scheduler(cls, cfg, optimizer):
        """The shared task schedule (:func:`~det_forget.forgetting.schedule.lr_factor`),
        restarted at every task, with detectron2's warm-up keys."""
        per_task = cfg.FORGET.MAX_ITER

        def factor(it: int) -> float:
            return lr_factor(
                it % per_task,
                per_task,
                schedule=cfg.FORGET.LR_SCHEDULE,
                min_factor=cfg.FORGET.MIN_LR_FACTOR,
                warmup_iters=cfg.SOLVER.WARMUP_ITERS,
                warmup_factor=cfg.SOLVER.WARMUP_FACTOR,
            )

        factor(0)  # a bad schedule key fails here, before training
        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)

    def build_hooks(self):
        hook_list = super().build_hooks()
        if self.cfg.TEST.EVAL_PERIOD <= 0:
            # Tasks are evaluated at their boundaries; detectron2's EvalHook would add one
            # more evaluation at the end without the "before" numbers.
            hook_list = [h for h in hook_list if not isinstance(h, hooks.EvalHook)]
        model = _unwrap(self.model)
        runner = TaskRunner(
            model.detector,
            self.tasks,
            class_names=self.thing_classes,
            method=self.method,
            task_type=task_type_of(self.cfg),
            metric="AP",
            run_dir=self.run_dir,
            lora_config=lora_config_from_cfg(self.cfg) if self.method.uses_lora else None,
            info={"config_hash": config_hash(self.cfg), "base_weights": self.cfg.MODEL.WEIGHTS},
            config_text=self.cfg.dump(),
        )
        self.task_hook = ForgetTaskHook(self.cfg, self.tasks, self.task_data, runner)
        at = next(i for i, h in enumerate(hook_list) if isinstance(h, hooks.LRScheduler)) + 1
        hook_list.insert(at, self.task_hook)
        return hook_list

    def build_objective(self, model, task: ForgetTask) -> ForgettingObjective:
        """The objective of ``task``; weight-change baselines anchor to the weights now."""
        n = max(1, self.cfg.FORGET.BASELINE.EWC_SAMPLES // self.cfg.SOLVER.IMS_PER_BATCH)

        def fisher_batches():
            batches = iter(self.task_data)
            return (next(batches)["retain"] for _ in range(n))

        anchor = task_anchor(
            self.cfg.FORGET.METHOD,
            model.detector,
            fisher_batches,
            lambda m, b: sum(m(b).values()),
        )
        return ForgettingObjective.from_config(self.cfg, model.detector, anchor=anchor)

    def class_names(self, task: ForgetTask) -> dict[str, list[str]]:
        """The task's class groups by name."""
        return {g: [self.thing_classes[c] for c in v] for g, v in task.groups().as_dict().items()}

    def evaluate_task(self, task: ForgetTask, before) -> tuple[dict, dict[str, Any]]:
        """COCO AP with the task's groups on ``DATASETS.TEST[0]``.

        Returns:
            ``(flat results, {class name: {"AP": .., "AP50": ..}})``; empty on non-main
            processes.
        """
        dataset = self.cfg.DATASETS.TEST[0]
        # The loader first: it materialises lazily generated datasets (their json file)
        # before the evaluator opens the annotations.
        loader = build_detection_test_loader(self.cfg, dataset)
        evaluator = ForgetCOCOEvaluator(
            dataset,
            self.class_names(task),
            before=before,
            output_dir=os.path.join(self.cfg.OUTPUT_DIR, "inference", f"task_{task.index:02d}"),
            **fate_thresholds(self.cfg),
        )
        results = inference_on_dataset(self.model, loader, evaluator)
        if not comm.is_main_process():
            return {}, {}
        per_class = evaluator.last_per_class["bbox"]
        # Undefined group means (no class in the group) are NaN in detectron2's results;
        # the history keeps them as None so the report is strict JSON.
        flat = {
            k: (None if isinstance(v, float) and not math.isfinite(v) else v)
            for k, v in results.get("forget", {}).items()
            if not k.startswith(("AP-", "AP50-"))
        }
        self.storage.put_scalars(
            **{f"forget/{k}": v for k, v in flat.items() if v is not None},
            smoothing_hint=False,
        )
        return flat, per_class

    @classmethod
    def test(cls, cfg, model, evaluators=None):
        """``--eval-only``: AP per class and per group of ``FORGET.CLASSES``."""
        results = {}
        for dataset in cfg.DATASETS.TEST:
            loader = build_detection_test_loader(cfg, dataset)
            evaluator = ForgetCOCOEvaluator.from_config(
                cfg, dataset, output_dir=os.path.join(cfg.OUTPUT_DIR, "inference")
            )
            results[dataset] = inference_on_dataset(model, loader, evaluator)
        return results[cfg.DATASETS.TEST[0]] if len(results) == 1 else results

    def train(self):
        self._train_loop(self.start_iter, self.max_iter)
        if comm.is_main_process():
            self.log_history()
            if self.cfg.FORGET.SAVE_MERGED:
                try:
                    self.save_merged()
                except OSError as e:
                    raise OSError(
                        f"could not write the merged model into {self.cfg.OUTPUT_DIR}: {e}. "
                        "The adapters, history.json and model_final.pth are complete; fix "
                        "the cause and run the same command with --resume to write it"
                    ) from e
        return self.task_hook.history

    def _train_loop(self, start_iter: int, max_iter: int) -> None:
        """detectron2's ``TrainerBase.train`` loop, except that the iteration after a task
        the stopping rule ended is the next task's first (:meth:`ForgetTaskHook.next_iter`).
        """
        logger.info("Starting training from iteration %d", start_iter)
        self.iter = self.start_iter = start_iter
        self.max_iter = max_iter
        with EventStorage(start_iter) as self.storage:
            try:
                self.before_train()
                it = self.task_hook.first_iter(start_iter)
                if it != start_iter:
                    self._seek(it)
                executed, last = 0, start_iter - 1
                while it < max_iter:
                    self.iter = it
                    self.before_step()
                    self.run_step()
                    self.after_step()
                    executed, last = executed + 1, it
                    following = self.task_hook.next_iter(it)
                    if following != it + 1 and following < max_iter:
                        self._seek(following)
                    it = following
                # As detectron2's loop leaves it (one past the last iteration run), so its
                # "Overall training speed" line counts the iterations that ran.
                self.iter = last + 1
                stopped = sum(s.stopped_at is not None for s in self.task_hook.stoppers)
                logger.info(
                    "Trained %d iterations (ceiling %d); the stopping rule ended %d of %d "
                    "tasks early",
                    executed,
                    max_iter - start_iter,
                    stopped,
                    len(self.tasks),
                )
            except Exception:
                logger.exception("Exception during training:")
                raise
            finally:
                self.after_train()

    def _seek(self, iteration: int) -> None:
        """Put the learning-rate schedule where iteration ``iteration`` starts."""
        self.scheduler.last_epoch = iteration - 1
        self.scheduler.step()

    def log_history(self) -> None:
        """One table: AP_f, AP_r, AP_o, Drop, H-Mean before/after each task."""
        rows = []
        for rec in self.task_hook.history:
            s = rec.get("summary") or {}
            b, a = s.get("before") or {}, s.get("after") or {}
            rows.append(
                [
                    rec["task"]["index"],
                    ", ".join(rec["classes"]["forget"]),
                    _fmt(b.get("forget")),
                    _fmt(a.get("forget")),
                    _fmt(b.get("retain")),
                    _fmt(a.get("retain")),
                    _fmt(a.get("old")),
                    _fmt(s.get("drop")),
                    _fmt(s.get("h_mean")),
                ]
            )
        headers = [
            "task",
            "forget",
            "AP_f before",
            "AP_f after",
            "AP_r before",
            "AP_r after",
            "AP_o after",
            "Drop",
            "H-Mean",
        ]
        logger.info("Forgetting results (COCO AP, %%):\n%s", tabulate(rows, headers, "pipe"))

    def save_merged(self) -> str:
        """``model_merged.pth`` + ``merged_config.yaml``: the plain detector, adapters merged.

        The config names the wrapped detector's meta-architecture, so stock detectron2
        (``DefaultPredictor`` after ``import det_forget`` for the backbone) loads it with
        the same parameter count and speed as the base model.
        """
        out = str(self.run_dir.merged_model_path(".pth"))
        save_merged_checkpoint(_unwrap(self.model), out)
        merged_cfg = detector_config(self.cfg)
        merged_cfg.MODEL.WEIGHTS = out
        with atomic_write(self.run_dir.merged_config_path) as f:
            f.write(merged_cfg.dump())
        logger.info("Merged checkpoint: %s (config %s)", out, self.run_dir.merged_config_path)
        return out


def _score(per_class: Mapping[str, Any], key: str) -> dict[str, float | None]:
    """``{class: AP}`` (or AP50) from the evaluator's ``{class: {"AP": .., "AP50": ..}}``."""
    return {k: v.get(key) for k, v in per_class.items()}


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.1f}"
