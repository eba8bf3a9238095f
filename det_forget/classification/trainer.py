"""The classification / face forgetting loop: data and models in, the shared core does the rest.

:class:`ClassificationForgetter` turns a config into forgetting runs:

* LoRA methods (``gs_lora``, ``gs_lora_pp``, ``no_retain``) inject adapters with
  :func:`det_forget.lora.inject_lora` (FFN layers or fused qkv per ``FORGET.LORA``); the
  full-weight baselines train every parameter;
* each step feeds per-sample cross-entropies (forget batch), the retain loss and both
  batches' features to :class:`det_forget.forgetting.ForgettingObjective`, which adds the
  method's terms (and ``FORGET.DEEP``'s term on the features, when enabled);
* a task stops when its classes are forgotten: the shared rule of
  :mod:`det_forget.forgetting.stopping`, scored on the forget classes of the validation
  split carved from train (never the test split), with the training retain loss;
* tasks (one, or a continual sequence) run through the shared
  :class:`det_forget.forgetting.TaskRunner`: this module supplies the step loop
  (:meth:`ClassificationForgetter.train_task`) and per-class accuracy; the runner does the
  task boundary (record, adapter with its manifest, ``history.json``, merge + fresh
  adapter) and the run directory of :mod:`det_forget.forgetting.run_dir`.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..config import lora_config_from_cfg
from ..evaluation.metrics import accuracy_per_class
from ..forgetting import (
    ForgetTask,
    ForgettingObjective,
    PrototypeAccumulator,
    RunDirectory,
    TaskRunner,
    check_method,
    config_hash,
    random_labels,
    retain_loss,
    task_anchor,
    task_type_of,
    zero_group_ratio,
)
from ..forgetting.losses import per_class_mean
from ..forgetting.schedule import lr_factor
from ..forgetting.stopping import (
    BestScoreSelector,
    ForgetStopper,
    StopRule,
    val_selection_score,
)
from ..lora import (
    count_parameters,
    inject_lora,
    lora_layers,
    unload_adapters,
)
from .data import BatchSampler, DataSplits, ImageClassData, subsample_per_class
from .evaluate import evaluate_per_class, predict
from .pretrain import format_eta

__all__ = [
    "TaskData",
    "build_task_data",
    "ClassificationForgetter",
    "summarize_run",
]

logger = logging.getLogger(__name__)


@dataclass
class TaskData:
    """The training data of one forgetting task.

    Attributes:
        forget: samples of the classes to forget now.
        retain: samples of the retained classes that have data (missing classes excluded).
    """

    forget: ImageClassData
    retain: ImageClassData


def build_task_data(
    train: ImageClassData,
    task: ForgetTask,
    *,
    ratio: float = 1.0,
    shots: int = 0,
    seed: int = 0,
) -> TaskData:
    """Subsample the training data of a task (``ratio`` of each class or ``shots`` per class).

    Classes forgotten by earlier tasks (``task.old``) and missing classes get no data.

    Args:
        train: the training split.
        task: the task.
        ratio: fraction of each class's images.
        shots: if > 0, images per class instead of ``ratio``.
        seed: subsampling seed.

    Returns:
        The forget and retain subsets.

    Raises:
        ValueError: a forget class has no training sample.
    """
    missing = set(task.missing)
    retain_classes = [c for c in task.retain if c not in missing]
    forget = train.subset(
        subsample_per_class(train.labels, task.forget, ratio=ratio, shots=shots, seed=seed)
    )
    retain = train.subset(
        subsample_per_class(train.labels, retain_classes, ratio=ratio, shots=shots, seed=seed)
    )
    absent = sorted(set(task.forget) - set(forget.labels.tolist()))
    if absent:
        raise ValueError(f"forget classes {absent} have no training images to forget with")
    return TaskData(forget=forget, retain=retain)


def _build_optimizer(params: list[nn.Parameter], solver, name: str) -> torch.optim.Optimizer:
    """``FORGET.OPTIMIZER`` ``name`` at ``CLS.SOLVER``'s learning rate and weight decay."""
    from ..config import resolve_optimizer

    cls, kwargs = resolve_optimizer(name, weight_decay=solver.WEIGHT_DECAY)
    return cls(params, lr=solver.BASE_LR, **kwargs)


class ClassificationForgetter:
    """Run one config's forgetting tasks on a classifier (or face model).

    Args:
        cfg: the full config (``FORGET.*`` and ``CLS.*``).
        model: the trained model; modified in place (adapters injected, weights trained).
        data: train / validation / test splits.
        model_factory: builds a freshly initialised copy of the architecture (``retrain``
            baseline only).
    """

    def __init__(
        self,
        cfg,
        model: nn.Module,
        data: DataSplits,
        model_factory=None,
    ) -> None:
        self.cfg = cfg
        self.model = model
        self.data = data
        self.model_factory = model_factory
        self.method = cfg.FORGET.METHOD
        self.spec = check_method(self.method, task_type_of(cfg))
        self.is_lora = self.spec.uses_lora
        self.num_classes = data.test.num_classes
        self.lora_config = None
        self.injection = None
        if self.spec.reinit and model_factory is None:
            raise ValueError("FORGET.METHOD 'retrain' needs a model_factory (fresh weights)")
        self.val_eval = data.val.subset(
            subsample_per_class(
                data.val.labels,
                range(self.num_classes),
                shots=cfg.CLS.VAL_EVAL_PER_CLASS,
                seed=cfg.CLS.SPLIT_SEED,
            )
        )

    # ----------------------------------------------------------------- setup
    def prepare(self) -> dict[str, Any]:
        """Inject LoRA (LoRA methods) or unfreeze every weight (baselines).

        Returns:
            ``{"trainable_params", "total_params", "trainable_share"}``; the share is of
            the model without adapters, in %.
        """
        base_total = sum(p.numel() for p in self.model.parameters())
        if self.is_lora:
            self.lora_config = lora_config_from_cfg(self.cfg, {"method": self.method})
            self.injection = inject_lora(self.model, self.lora_config)
            trainable, _ = count_parameters(self.model)
        else:
            for p in self.model.parameters():
                p.requires_grad_(True)
            trainable = base_total
        return {
            "trainable_params": trainable,
            "total_params": base_total,
            "trainable_share": 100.0 * trainable / base_total,
        }

    def evaluate(self, split: str = "test") -> dict[int, float]:
        """Per-class accuracy (%) on ``"test"``, ``"val"`` (all of it) or ``"val_eval"``.

        Args:
            split: which data.

        Returns:
            ``{class id: accuracy}``.
        """
        data = {"test": self.data.test, "val": self.data.val, "val_eval": self.val_eval}[split]
        return evaluate_per_class(
            self.model, data.images, data.labels, self.num_classes, self.cfg.CLS.EVAL_BATCH_SIZE
        )

    # ----------------------------------------------------------------- training
    def _trainable(self) -> dict[str, nn.Parameter]:
        return {n: p for n, p in self.model.named_parameters() if p.requires_grad}

    def _prototypes(self, data: TaskData) -> tuple[torch.Tensor, torch.Tensor]:
        acc = PrototypeAccumulator(self.num_classes, self.model.feature_dim)
        was_training = self.model.training
        self.model.eval()
        bs = self.cfg.CLS.EVAL_BATCH_SIZE
        with torch.no_grad():
            for part in (data.forget, data.retain):
                for i in range(0, len(part), bs):
                    acc.update(
                        self.model.features(part.images[i : i + bs]), part.labels[i : i + bs]
                    )
        self.model.train(was_training)
        return acc.compute()

    def _anchor(self, data: TaskData):
        n = min(self.cfg.FORGET.BASELINE.EWC_SAMPLES, len(data.retain))
        bs = self.cfg.CLS.SOLVER.BATCH_SIZE
        idx = torch.randperm(len(data.retain), generator=torch.Generator().manual_seed(0))[:n]
        batches = [idx[i : i + bs] for i in range(0, n, bs)]

        def loss_fn(model, b):
            logits, _ = model.train_logits(data.retain.images[b], data.retain.labels[b])
            return retain_loss(logits, data.retain.labels[b])

        return task_anchor(self.method, self.model, lambda: batches, loss_fn)

    def _reinitialize(self) -> None:
        fresh = self.model_factory()
        self.model.load_state_dict(fresh.state_dict())
        for p in self.model.parameters():
            p.requires_grad_(True)

    def train_task(self, task: ForgetTask) -> dict[str, Any]:
        """Train on one task (the ``train_task`` step loop :class:`TaskRunner` calls).

        Args:
            task: the forgetting task.

        Returns:
            Training statistics: steps, how the task stopped (``stopping``: the shared
            rule's record), wall time, final loss terms, zero group ratio (GS-LoRA).

        Raises:
            FloatingPointError: a loss term became NaN/inf (the run stops; nothing is
                written by this method).
        """
        cfg, f, solver = self.cfg, self.cfg.FORGET, self.cfg.CLS.SOLVER
        start = time.perf_counter()
        seed = cfg.SEED + 1000 * task.index
        torch.manual_seed(seed)
        data = build_task_data(
            self.data.train, task, ratio=f.DATA_RATIO, shots=f.SHOTS, seed=f.DATA_SEED
        )
        if self.spec.reinit:
            self._reinitialize()
        objective = ForgettingObjective.from_config(cfg, self.model, anchor=self._anchor(data))
        if objective.uses_retain_data and len(data.retain) == 0:
            raise ValueError(f"method {self.method!r} needs retain data but task has none")
        deep = objective.deep
        prototypes = present = retain_prototypes = None
        if self.spec.uses_prototypes or (deep is not None and deep.needs_prototypes):
            prototypes, present = self._prototypes(data)
        if deep is not None and deep.needs_prototypes:
            missing = set(task.missing)
            retained = [c for c in task.retain if c not in missing and bool(present[c])]
            retain_prototypes = prototypes[torch.tensor(retained, dtype=torch.long)]
        params = self._trainable()
        optimizer = _build_optimizer(list(params.values()), solver, f.OPTIMIZER)
        max_iter = int(f.MAX_ITER)
        forget_sampler = BatchSampler(len(data.forget), solver.BATCH_SIZE, seed=seed)
        retain_sampler = (
            BatchSampler(len(data.retain), solver.BATCH_SIZE, seed=seed + 1)
            if len(data.retain)
            else None
        )
        label_gen = torch.Generator().manual_seed(seed + 2)
        exclude = torch.tensor(task.forgotten, dtype=torch.long)

        stopper = ForgetStopper(
            StopRule.from_config(cfg, self.spec, "accuracy"), self.names(task.forget), max_iter
        )
        heldout = self._heldout(task)
        selector = self._selector(task, max_iter)
        terms: dict[str, torch.Tensor] = {}
        logger.info(
            "task %d: %s on %d forget / %d retain images, %d steps",
            task.index,
            self.method,
            len(data.forget),
            len(data.retain),
            max_iter,
        )
        self.model.train()
        step = 0
        for step in range(max_iter):
            lr = solver.BASE_LR * lr_factor(
                step, max_iter, schedule=f.LR_SCHEDULE, min_factor=f.MIN_LR_FACTOR
            )
            for group in optimizer.param_groups:
                group["lr"] = lr
            inputs = self._step_inputs(
                data, objective, forget_sampler, retain_sampler, label_gen, exclude
            )
            try:
                terms = objective(
                    step=step,
                    model=self.model,
                    prototypes=prototypes,
                    prototype_present=present,
                    retain_prototypes=retain_prototypes,
                    **inputs,
                )
            except FloatingPointError as err:
                raise FloatingPointError(
                    f"{err}. Forgetting task {task.index} ({self.method}) stopped at step {step}; "
                    "no output file was written"
                ) from err
            loss = torch.stack(list(terms.values())).sum()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if solver.GRAD_CLIP > 0:
                torch.nn.utils.clip_grad_norm_(params.values(), solver.GRAD_CLIP)
            optimizer.step()
            if (step + 1) % cfg.CLS.LOG_PERIOD == 0 or step + 1 == max_iter:
                elapsed = time.perf_counter() - start
                logger.info(
                    "task %d step %d/%d loss %.4f (%s) eta %s",
                    task.index,
                    step + 1,
                    max_iter,
                    loss.item(),
                    ", ".join(f"{k[5:]} {v.item():.4f}" for k, v in terms.items()),
                    format_eta(elapsed / (step + 1) * (max_iter - step - 1)),
                )
            raw_retain = inputs.get("retain_loss")
            stopper.observe(step, None if raw_retain is None else float(raw_retain.detach()))
            if selector is not None:
                if selector.due(step):
                    score = self._val_score(task)
                    self.model.train()
                    if selector.check(step, score, params):
                        break
            elif stopper.due(step):
                scores, losses = self._heldout_check(heldout, task)
                self.model.train()
                if stopper.check(step, scores, losses):
                    break
        if selector is not None:
            selector.restore(params)
        self.model.eval()
        stats: dict[str, Any] = {
            "steps": step + 1,
            "stopping": (
                selector.summary(step + 1) if selector is not None else stopper.summary(step + 1)
            ),
            "seconds": time.perf_counter() - start,
            "forget_images": len(data.forget),
            "retain_images": len(data.retain),
            "last_terms": {k: float(v.detach()) for k, v in terms.items()},
        }
        if deep is not None and deep.probe is not None:
            # ln 2 = 0.693: the online probe no longer tells forget from retained features.
            stats["deep_probe_loss"] = deep.probe.last_loss
        if objective.groups is not None:
            stats["zero_group_ratio"] = zero_group_ratio(
                objective.groups, cfg.FORGET.SPARSITY.ZERO_REL_THRESHOLD
            )
        logger.info(
            "task %d done in %.1fs, %d steps (%s)",
            task.index,
            stats["seconds"],
            stats["steps"],
            stats["stopping"]["reason"],
        )
        return stats

    def _val_score(self, task: ForgetTask) -> float:
        """Poppi et al.'s ``mean(Acc_r, 100 - Acc_f)`` on the validation split."""
        retained = [c for c in task.retain if c not in set(task.missing)]
        return val_selection_score(self.evaluate("val_eval"), task.forget, retained)

    def _selector(self, task: ForgetTask, max_iter: int) -> BestScoreSelector | None:
        """``FORGET.EARLY_STOP.SELECT "val_score"``: the best-validation-score selector
        (None: the shared stopping rule decides)."""
        s = self.cfg.FORGET.EARLY_STOP
        if s.SELECT != "val_score" or self.spec.reinit or int(s.PERIOD) == 0:
            return None
        initial = self._val_score(task)
        self.model.train()
        return BestScoreSelector(int(s.PERIOD), int(s.PATIENCE), initial, max_iter)

    def names(self, ids) -> list[str]:
        """Class names of contiguous ids."""
        return [self.data.test.classes[int(c)] for c in ids]

    def _heldout(self, task: ForgetTask) -> ImageClassData:
        """The held-out forget split of the stopping rule: the forget classes' samples of
        the validation split carved from train (``CLS.VAL_EVAL_PER_CLASS`` per class)."""
        keep = torch.isin(self.val_eval.labels, torch.tensor(list(task.forget), dtype=torch.long))
        return self.val_eval.subset(torch.nonzero(keep).flatten())

    def _heldout_check(
        self, heldout: ImageClassData, task: ForgetTask
    ) -> tuple[dict[str, float | None], dict[str, float | None]]:
        """Accuracy (%) and mean cross-entropy of each forget class on the held-out split."""
        names = self.names(task.forget)
        if len(heldout) == 0:
            return dict.fromkeys(names), dict.fromkeys(names)
        preds, logits = predict(self.model, heldout.images, self.cfg.CLS.EVAL_BATCH_SIZE)
        acc = accuracy_per_class(preds, heldout.labels, self.num_classes)
        ce = F.cross_entropy(logits, heldout.labels.long(), reduction="none")
        classes, means = per_class_mean(ce, heldout.labels.long())
        loss = {int(c): float(m) for c, m in zip(classes, means, strict=True)}
        return (
            {n: acc.get(int(c)) for n, c in zip(names, task.forget, strict=True)},
            {n: loss.get(int(c)) for n, c in zip(names, task.forget, strict=True)},
        )

    def _step_inputs(
        self,
        data: TaskData,
        objective: ForgettingObjective,
        forget_sampler: BatchSampler,
        retain_sampler: BatchSampler | None,
        label_gen: torch.Generator,
        exclude: torch.Tensor,
    ) -> dict[str, Any]:
        """One forward pass over the forget and retain batches (concatenated)."""
        images, labels = [], []
        n_f = 0
        if objective.uses_forget_data:
            fi = next(forget_sampler)
            images.append(data.forget.images[fi])
            labels.append(data.forget.labels[fi])
            n_f = len(fi)
        if objective.uses_retain_data and retain_sampler is not None:
            ri = next(retain_sampler)
            images.append(data.retain.images[ri])
            labels.append(data.retain.labels[ri])
        x, y = torch.cat(images), torch.cat(labels)
        logits, feats = self.model.train_logits(x, y)
        out: dict[str, Any] = {}
        if n_f:
            yf = y[:n_f]
            target = yf
            if self.spec.name == "random_labels":
                target = random_labels(yf, self.num_classes, generator=label_gen, exclude=exclude)
            out["forget_loss"] = F.cross_entropy(logits[:n_f], target, reduction="none")
            out["forget_labels"] = yf
            out["forget_features"] = feats[:n_f]
        if len(y) > n_f:
            out["retain_loss"] = retain_loss(logits[n_f:], y[n_f:])
            out["retain_features"] = feats[n_f:]
            out["retain_labels"] = y[n_f:]
        return out

    # ----------------------------------------------------------------- runs
    def run(
        self,
        tasks: Sequence[ForgetTask],
        before: Mapping[Hashable, float] | None = None,
        output_dir: str | Path | None = None,
    ) -> dict[str, Any]:
        """Run ``tasks`` in sequence and return the results (per-class and per-group).

        Args:
            tasks: from :func:`det_forget.forgetting.tasks_from_config`.
            before: test per-class accuracy of the model before forgetting (by class id
                or name), if known.
            output_dir: the run directory (:mod:`det_forget.forgetting.run_dir`): each
                task's adapter (LoRA methods), ``history.json``, ``config.yaml`` and, with
                ``FORGET.SAVE_MERGED``, ``model_merged.safetensors``; None writes nothing.

        Returns:
            ``{"method", "params", "class_names", "tasks": the runner's task records,
            "seconds"}``; per-class scores are keyed by class name.
        """
        params = self.prepare()
        logger.info(
            "%s: %d trainable of %d parameters (%.2f%%)",
            self.method,
            params["trainable_params"],
            params["total_params"],
            params["trainable_share"],
        )
        names = list(self.data.test.classes)
        run_dir = RunDirectory(output_dir) if output_dir is not None else None
        runner = TaskRunner(
            self.model,
            tasks,
            class_names=names,
            method=self.spec,
            task_type=task_type_of(self.cfg),
            metric="accuracy",
            run_dir=run_dir,
            lora_config=self.lora_config,
            info={
                "config_hash": config_hash(self.cfg),
                "base_weights": self.cfg.CLS.WEIGHTS,
                "params": params,
            },
            config_text=self.cfg.dump(),
        )

        def by_name(scores: Mapping[Hashable, float]) -> dict[str, float]:
            return {names[k] if isinstance(k, int) else str(k): v for k, v in scores.items()}

        if before is None and self.cfg.FORGET.BEFORE_FROM_CARD:
            before = self.card_before()
        start = time.perf_counter()
        history = runner.run(
            self.train_task,
            lambda: by_name(self.evaluate("test")),
            before=None if before is None else by_name(before),
        )
        result = {
            "method": self.method,
            "params": params,
            "class_names": names,
            "tasks": history,
            "seconds": time.perf_counter() - start,
        }
        if run_dir is not None and self.cfg.FORGET.SAVE_MERGED:
            from .model import save_classifier

            save_classifier(
                self.merged_model(),
                run_dir.merged_model_path(".safetensors"),
                {"forget_method": self.method, "tasks": [t.to_dict() for t in tasks]},
            )
        return result

    def card_before(self) -> dict[str, float] | None:
        """Per-class test accuracy before forgetting from the model card next to
        ``CLS.WEIGHTS``, when it holds one of the same weights, test set and model config
        (:mod:`det_forget.evaluation.before`); None: evaluate."""
        from ..evaluation.before import card_path_of, classifier_evaluation_key, find_card_before
        from .config import resolve_weights_path

        weights = resolve_weights_path(self.cfg.CLS.WEIGHTS)
        test = self.data.test
        key = classifier_evaluation_key(
            self.cfg, weights, f"{self.cfg.CLS.DATASET}:test", test.images, test.labels
        )
        card = card_path_of(weights)
        found = None if key is None else find_card_before(card, key, test.classes, ("accuracy",))
        if found is None:
            return None
        logger.info(
            "Before forgetting: per-class test accuracy from the model card %s (same weights, "
            "test set and model by sha256), not evaluated again",
            card,
        )
        return {c: v["accuracy"] for c, v in found.items()}

    def merged_model(self) -> nn.Module:
        """A copy of the model with adapters merged and removed (a plain checkpoint)."""
        merged = copy.deepcopy(self.model)
        if any(True for _ in lora_layers(merged)):
            unload_adapters(merged, merge=True)
        return merged.eval()


def summarize_run(result: Mapping[str, Any]) -> dict[str, Any]:
    """Compact per-task numbers of a :meth:`ClassificationForgetter.run` result.

    Args:
        result: the run result.

    Returns:
        ``{"method", "trainable_share", "seconds", "tasks": [{"forget", "acc_f_before",
        "acc_f", "acc_r_before", "acc_r", "acc_o", "acc_m", "drop", "h_mean", ...}]}``
        with accuracies in %.
    """
    names = result["class_names"]
    rows = []
    for rec in result["tasks"]:
        s = rec["summary"]
        rows.append(
            {
                "task": rec["task"]["index"],
                "forget": [names[c] for c in rec["task"]["forget"]],
                "old": [names[c] for c in rec["task"]["old"]],
                "missing": [names[c] for c in rec["task"]["missing"]],
                "acc_f_before": s["before"]["forget"],
                "acc_f": s["after"]["forget"],
                "acc_r_before": s["before"]["retain"],
                "acc_r": s["after"]["retain"],
                "acc_o": s["after"]["old"],
                "acc_m_before": s["before"]["missing"],
                "acc_m": s["after"]["missing"],
                "drop": s["drop"],
                "h_mean": s["h_mean"],
                "retain_change": s["retain_change"],
                "seconds": rec["train"].get("seconds"),
                "steps": rec["train"].get("steps"),
                "stopped_at": (rec["train"].get("stopping") or {}).get("stopped_at"),
                "zero_group_ratio": rec["train"].get("zero_group_ratio"),
            }
        )
    return {
        "method": result["method"],
        "trainable_share": result["params"]["trainable_share"],
        "trainable_params": result["params"]["trainable_params"],
        "seconds": result["seconds"],
        "tasks": rows,
    }
