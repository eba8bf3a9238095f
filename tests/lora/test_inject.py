import pytest
import torch

from det_forget.lora import (
    LoraConfig,
    LoraLinear,
    disabled_adapters,
    inject_lora,
    lora_layers,
    match_module_name,
    merge_adapters,
    merge_and_reset_adapters,
    unload_adapters,
    unmerge_adapters,
)

FFN = ["mlp.fc1", "mlp.fc2"]


def _perturb_adapters(model, seed=0):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _, layer in lora_layers(model):
            for b in layer.lora_B.values():
                b.copy_(torch.randn(b.shape, generator=gen) * 0.1)


def test_match_module_name_suffix_regex_and_components():
    assert match_module_name("blocks.3.mlp.fc1", ["mlp.fc1"])
    assert match_module_name("blocks.3.mlp.fc1", "fc1")
    assert not match_module_name("blocks.3.mlp.xfc1", ["fc1"])
    assert match_module_name("blocks.3.attn.qkv", r"re:blocks\.\d+\.attn\.qkv")
    assert not match_module_name("head.attn.qkv", r"re:blocks\.\d+\.attn\.qkv")


def test_injection_reports_and_freezes(vit_family):
    _, build, _ = vit_family
    model = build()
    n_params = sum(p.numel() for p in model.parameters())
    report = inject_lora(model, LoraConfig(rank=4, target_modules=FFN))
    assert len(report.wrapped) == 6  # 3 blocks x fc1/fc2
    assert all(parts == ("full",) for parts in report.wrapped.values())
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    lora_numel = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert report.trainable_params == lora_numel
    assert report.total_params == n_params + lora_numel
    assert 0 < report.trainable_share < 0.5


def test_exclusions_and_qkv(vit_family):
    _, build, _ = vit_family
    model = build()
    cfg = LoraConfig(
        target_modules=FFN, qkv_modules=["attn.qkv"], exclude_modules=["blocks.0.mlp.fc1"]
    )
    report = inject_lora(model, cfg)
    assert "blocks.0.mlp.fc1" not in report.wrapped
    assert report.wrapped["blocks.1.attn.qkv"] == ("q", "k", "v")
    assert len(report.wrapped) == 5 + 3


def test_injection_errors_name_the_problem(vit_family):
    _, build, _ = vit_family
    with pytest.raises(ValueError, match="no layer matched.*linear layers"):
        inject_lora(build(), LoraConfig(target_modules=["nonexistent"]))
    with pytest.raises(ValueError, match="not nn.Linear"):
        inject_lora(build(), LoraConfig(target_modules=["patch_embed.proj"]))
    model = build()
    inject_lora(model, LoraConfig(target_modules=FFN))
    with pytest.raises(ValueError, match="already has LoRA"):
        inject_lora(model, LoraConfig(target_modules=FFN))


def test_fresh_adapter_merged_unmerged_base_equal(vit_family):
    _, build, fwd = vit_family
    x = torch.randn(2, 3, 32, 32)
    base_out = fwd(build(), x)
    model = build()
    inject_lora(model, LoraConfig(target_modules=FFN, qkv_modules=["attn.qkv"]))
    assert torch.equal(fwd(model, x), base_out)
    merge_adapters(model)
    assert torch.equal(fwd(model, x), base_out)


def test_after_training_disabled_is_base_and_merged_is_unmerged(vit_family):
    _, build, fwd = vit_family
    x = torch.randn(2, 3, 32, 32)
    base_out = fwd(build(), x)
    model = build()
    inject_lora(model, LoraConfig(target_modules=FFN, qkv_modules=["attn.qkv"]))
    _perturb_adapters(model)
    adapted = fwd(model, x)
    assert not torch.allclose(adapted, base_out, atol=1e-4)
    with disabled_adapters(model):
        assert torch.equal(fwd(model, x), base_out)
    merge_adapters(model)
    torch.testing.assert_close(fwd(model, x), adapted, rtol=1e-4, atol=1e-5)
    with disabled_adapters(model):  # merged adapters are taken out for the duration
        torch.testing.assert_close(fwd(model, x), base_out, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fwd(model, x), adapted, rtol=1e-4, atol=1e-5)
    unmerge_adapters(model)
    torch.testing.assert_close(fwd(model, x), adapted, rtol=1e-4, atol=1e-5)


def test_optimizer_step_changes_only_adapter_weights(vit_family):
    _, build, fwd = vit_family
    model = build()
    inject_lora(model, LoraConfig(target_modules=FFN))
    model.train()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):  # B starts at zero, so A only moves from the second step on
        opt.zero_grad()
        fwd(model, torch.randn(2, 3, 32, 32)).pow(2).mean().backward()
        opt.step()
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "nothing trained"
    assert all(".lora_A." in n or ".lora_B." in n for n in changed), changed
    assert any(".lora_A." in n for n in changed) and any(".lora_B." in n for n in changed)


def test_unload_gives_plain_model_with_same_keys_and_outputs(vit_family):
    _, build, fwd = vit_family
    x = torch.randn(1, 3, 32, 32)
    plain_keys = set(build().state_dict())
    model = build()
    inject_lora(model, LoraConfig(target_modules=FFN, qkv_modules=["attn.qkv"]))
    _perturb_adapters(model, seed=3)
    adapted = fwd(model, x)
    unload_adapters(model, merge=True)
    assert not any(isinstance(m, LoraLinear) for m in model.modules())
    assert set(model.state_dict()) == plain_keys
    torch.testing.assert_close(fwd(model, x), adapted, rtol=1e-4, atol=1e-5)
    fresh = build()
    fresh.load_state_dict(model.state_dict())  # strict: stock code loads the merged weights
    torch.testing.assert_close(fwd(fresh, x), adapted, rtol=1e-4, atol=1e-5)


def test_merge_and_reset_between_tasks(vit_family):
    _, build, fwd = vit_family
    x = torch.randn(1, 3, 32, 32)
    model = build()
    inject_lora(model, LoraConfig(target_modules=FFN))
    _perturb_adapters(model, seed=5)
    task1 = fwd(model, x)
    merge_and_reset_adapters(model)
    torch.testing.assert_close(fwd(model, x), task1, rtol=1e-4, atol=1e-5)
    with disabled_adapters(model):  # "before" of the next task is the task-1 model
        torch.testing.assert_close(fwd(model, x), task1, rtol=1e-4, atol=1e-5)


def test_base_checkpoint_loads_into_injected_model(vit_family):
    _, build, fwd = vit_family
    x = torch.randn(1, 3, 32, 32)
    source = build()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01)
    model = build()
    inject_lora(model, LoraConfig(target_modules=FFN))
    result = model.load_state_dict(source.state_dict(), strict=False)
    assert not result.unexpected_keys
    assert all(".lora_" in k for k in result.missing_keys)
    assert torch.equal(fwd(model, x), fwd(source, x))
