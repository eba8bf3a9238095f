"""LoRA for det_forget: the layer, injection by module name, and adapter files."""

from .config import QKV_PARTS, LoraConfig
from .inject import (
    InjectionReport,
    count_parameters,
    disabled_adapters,
    inject_lora,
    lora_layers,
    lora_parameters,
    mark_only_lora_trainable,
    match_module_name,
    merge_adapters,
    merge_and_reset_adapters,
    reset_adapters,
    unload_adapters,
    unmerge_adapters,
)
from .layer import FULL_PART, LoraLinear
from .save_and_load import (
    AdapterMismatchError,
    base_fingerprint,
    load_adapter,
    load_adapter_sequence,
    lora_state_dict,
    read_adapter_config,
    save_adapter,
)

__all__ = [
    "QKV_PARTS",
    "FULL_PART",
    "LoraConfig",
    "LoraLinear",
    "InjectionReport",
    "inject_lora",
    "lora_layers",
    "lora_parameters",
    "count_parameters",
    "mark_only_lora_trainable",
    "match_module_name",
    "merge_adapters",
    "unmerge_adapters",
    "merge_and_reset_adapters",
    "reset_adapters",
    "disabled_adapters",
    "unload_adapters",
    "AdapterMismatchError",
    "base_fingerprint",
    "lora_state_dict",
    "save_adapter",
    "load_adapter",
    "load_adapter_sequence",
    "read_adapter_config",
]
