"""The forgetting core shared by every task type: the method registry, losses, groups,
prototypes, tasks, the task runner and the run directory."""

from .groups import (
    DEFAULT_BLOCK_REGEX,
    GROUP_GRANULARITIES,
    ZERO_GROUP_REL_THRESHOLD,
    ParamGroup,
    SparsityWarmup,
    build_groups,
    group_lasso,
    group_norms,
    lora_b_l1,
    zero_group_ratio,
)
from .losses import (
    bounded_forget_loss,
    negative_gradient_loss,
    per_class_mean,
    random_label_loss,
    random_labels,
    reciprocal_forget_loss,
    retain_loss,
)
from .methods import (
    METHODS,
    TASK_TYPES,
    ForgetMethod,
    MethodNotSupportedError,
    check_method,
    get_method,
    methods_for,
    task_type_of,
)
from .objective import ForgettingObjective
from .prototypes import PrototypeAccumulator, compute_prototypes, prototype_kl, prototype_loss
from .regularizers import WeightAnchor, estimate_fisher, task_anchor
from .run_dir import LegacyRunError, RunDirectory, RunHistory
from .runner import TaskRunner, config_hash
from .tasks import ForgetTask, build_tasks, resolve_classes, tasks_from_config

__all__ = [
    "ForgettingObjective",
    "METHODS",
    "TASK_TYPES",
    "ForgetMethod",
    "MethodNotSupportedError",
    "check_method",
    "get_method",
    "methods_for",
    "task_type_of",
    "WeightAnchor",
    "estimate_fisher",
    "task_anchor",
    "ForgetTask",
    "build_tasks",
    "resolve_classes",
    "tasks_from_config",
    "TaskRunner",
    "config_hash",
    "RunDirectory",
    "RunHistory",
    "LegacyRunError",
    "DEFAULT_BLOCK_REGEX",
    "GROUP_GRANULARITIES",
    "ZERO_GROUP_REL_THRESHOLD",
    "ParamGroup",
    "SparsityWarmup",
    "build_groups",
    "group_lasso",
    "group_norms",
    "lora_b_l1",
    "zero_group_ratio",
    "bounded_forget_loss",
    "negative_gradient_loss",
    "per_class_mean",
    "random_label_loss",
    "random_labels",
    "reciprocal_forget_loss",
    "retain_loss",
    "PrototypeAccumulator",
    "compute_prototypes",
    "prototype_kl",
    "prototype_loss",
]
