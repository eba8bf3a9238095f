import json

import pytest
import torch

from det_forget.lora import (
    AdapterMismatchError,
    LoraConfig,
    inject_lora,
    load_adapter,
    load_adapter_sequence,
    lora_layers,
    lora_state_dict,
    merge_adapters,
    merge_and_reset_adapters,
    read_adapter_config,
    save_adapter,
)
from det_forget.lora.save_and_load import ADAPTER_CONFIG_NAME, ADAPTER_WEIGHTS_NAME

FFN = ["mlp.fc1", "mlp.fc2"]


def _adapted(build, seed=0, cfg=None):
    model = build()
    cfg = cfg or LoraConfig(rank=4, target_modules=FFN, qkv_modules=["attn.qkv"])
    inject_lora(model, cfg)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            for p in list(layer.lora_A.values()) + list(layer.lora_B.values()):
                p.copy_(torch.randn(p.shape, generator=gen))
    return model, cfg


def test_round_trip_is_bit_exact(vit_family, tmp_path):
    _, build, fwd = vit_family
    model, cfg = _adapted(build)
    out = save_adapter(model, tmp_path / "task0", cfg, metadata={"classes": ["cat"], "task": 0})
    assert (out / ADAPTER_WEIGHTS_NAME).is_file() and (out / ADAPTER_CONFIG_NAME).is_file()
    fresh = build()
    inject_lora(fresh, cfg)
    loaded_cfg = load_adapter(fresh, out)
    assert loaded_cfg.metadata == {"classes": ["cat"], "task": 0}
    assert loaded_cfg.rank == 4
    a, b = lora_state_dict(model), lora_state_dict(fresh)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(fwd(model, x), fwd(fresh, x))


def test_config_json_describes_layers(vit_family, tmp_path):
    _, build, _ = vit_family
    model, cfg = _adapted(build)
    doc = read_adapter_config(save_adapter(model, tmp_path / "a", cfg))
    assert doc["lora_config"]["target_modules"] == FFN
    assert doc["layers"]["blocks.0.attn.qkv"]["parts"] == ["q", "k", "v"]
    assert doc["layers"]["blocks.2.mlp.fc2"]["in_features"] == 128


def test_saving_merged_model_keeps_base_fingerprint(vit_family, tmp_path):
    _, build, _ = vit_family
    model, cfg = _adapted(build)
    merge_adapters(model)
    path = save_adapter(model, tmp_path / "merged", cfg)
    fresh = build()
    inject_lora(fresh, cfg)
    load_adapter(fresh, path)  # would raise if the fingerprint were of merged weights


def test_mismatched_layout_is_refused_naming_the_layer(vit_family, tmp_path):
    _, build, _ = vit_family
    model, cfg = _adapted(build)
    path = save_adapter(model, tmp_path / "a", cfg)
    other = build()
    inject_lora(other, LoraConfig(rank=2, target_modules=FFN, qkv_modules=["attn.qkv"]))
    before = lora_state_dict(other)
    with pytest.raises(AdapterMismatchError, match=r"blocks\.0\.mlp\.fc1.*lora_A\.full shape"):
        load_adapter(other, path)
    after = lora_state_dict(other)
    assert all(torch.equal(before[k], after[k]) for k in before), "refused load changed weights"
    fewer = build()
    inject_lora(fewer, LoraConfig(rank=4, target_modules=["mlp.fc1"], qkv_modules=["attn.qkv"]))
    with pytest.raises(AdapterMismatchError, match=r"'blocks\.0\.mlp\.fc2': in the adapter"):
        load_adapter(fewer, path)


def test_adapter_for_another_model_is_refused(vit_family, tmp_path):
    _, build, _ = vit_family
    model, cfg = _adapted(build)
    path = save_adapter(model, tmp_path / "a", cfg)
    other = build()
    with torch.no_grad():
        other.get_submodule("blocks.1.mlp.fc2").weight.mul_(1.5)
    inject_lora(other, cfg)
    with pytest.raises(AdapterMismatchError, match=r"blocks\.1\.mlp\.fc2.*another model"):
        load_adapter(other, path)
    load_adapter(other, path, check_base=False)


def test_not_an_adapter_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an adapter folder"):
        read_adapter_config(tmp_path)


def test_failed_save_keeps_previous_adapter(vit_family, tmp_path, monkeypatch):
    _, build, _ = vit_family
    model, cfg = _adapted(build)
    path = save_adapter(model, tmp_path / "a", cfg, metadata={"v": 1})
    import det_forget.lora.save_and_load as sl

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(sl, "save_file", boom)
    with pytest.raises(OSError, match="disk full"):
        save_adapter(model, path, cfg, metadata={"v": 2})
    assert json.loads((path / ADAPTER_CONFIG_NAME).read_text())["lora_config"]["metadata"] == {
        "v": 1
    }
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a"], "temporary folder left behind"


def _randomize_b(model, seed):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            for p in layer.lora_B.values():
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)


def test_adapter_sequence_reloads_a_continual_run(vit_family, tmp_path):
    _, build, fwd = vit_family  # build() gives the same weights every time
    model, cfg = _adapted(build, seed=1)
    save_adapter(model, tmp_path / "task_00", cfg, metadata={"task": {"index": 0}})
    merge_and_reset_adapters(model)  # task 1 trains on the weights with task 0 merged
    _randomize_b(model, seed=2)
    save_adapter(model, tmp_path / "task_01", cfg, metadata={"task": {"index": 1}})

    fresh = build()
    docs = load_adapter_sequence(fresh, [tmp_path / "task_00", tmp_path / "task_01"])
    assert [d["lora_config"]["metadata"]["task"]["index"] for d in docs] == [0, 1]
    x = torch.randn(1, 3, 32, 32)
    torch.testing.assert_close(fwd(fresh.eval(), x), fwd(model.eval(), x), rtol=1e-4, atol=1e-5)

    with pytest.raises(AdapterMismatchError, match="base weights differ"):  # wrong order
        load_adapter_sequence(build(), [tmp_path / "task_01", tmp_path / "task_00"])
    other = build()
    with torch.no_grad():
        other.get_submodule("blocks.1.mlp.fc2").weight.mul_(1.5)
    with pytest.raises(AdapterMismatchError, match="another model"):
        load_adapter_sequence(other, [tmp_path / "task_00"])
    with pytest.raises(FileNotFoundError, match="not an adapter folder"):
        load_adapter_sequence(build(), [tmp_path])
    untouched = build()
    assert load_adapter_sequence(untouched, []) == [] and not list(lora_layers(untouched))
