import os

import pytest
import torch
import torchvision
from torch import nn

from axial_monai.networks import BACKBONES, build_backbone, freeze_layers, layers

REQUIRED = [
    *(f"vgg{d}_bn" for d in (11, 13, 16, 19)),
    *(f"resnet{d}" for d in (18, 34, 50, 101)),
    "densenet121",
    "densenet161",
    *(f"efficientnet_b{i}" for i in range(7)),
    "efficientnet_v2_s",
    "efficientnet_v2_m",
    "convnext_tiny",
    "convnext_small",
    "convnext_base",
    "swin_v2_t",
]


def test_required_backbones_are_listed():
    assert set(REQUIRED) <= set(BACKBONES)


@pytest.mark.parametrize("name", REQUIRED)
def test_build_without_network(name, no_network):
    backbone = build_backbone(name, pretrained="none").eval()
    with torch.no_grad():
        out = backbone(torch.rand(1, 3, 64, 64))
    assert out.ndim == 4 and out.shape[1] == backbone.out_features
    assert no_network == []


def test_unknown_backbone():
    with pytest.raises(ValueError, match="Unknown backbone 'vgg16'"):
        build_backbone("vgg16")


def test_imagenet_without_cache_or_network_is_a_clear_error(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    torch.hub.set_dir(str(tmp_path / "hub"))
    try:
        with pytest.raises(RuntimeError, match="Cannot load ImageNet weights for backbone 'resnet18'") as info:
            build_backbone("resnet18", pretrained="imagenet")
    finally:
        torch.hub.set_dir(os.path.join(os.path.expanduser("~"), ".cache", "torch", "hub"))
    assert str(tmp_path) in str(info.value)  # tells where the cache file is expected
    assert info.value.__cause__ is None and info.value.__suppress_context__  # no stack of URL errors


@pytest.mark.parametrize("source", ["backbone", "torchvision"])
def test_local_state_dict_round_trip(tmp_path, source, no_network):
    if source == "backbone":
        state = build_backbone("resnet18").state_dict()
    else:
        state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    loaded = build_backbone("resnet18", pretrained=str(path)).state_dict()
    reference = build_backbone("resnet18").state_dict()
    expected = state if source == "backbone" else {}
    if source == "torchvision":
        # the backbone's keys are torchvision's ones renamed by position: compare by order
        expected = dict(zip(reference, [state[k] for k in state if not k.startswith("fc.")], strict=True))
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        assert torch.equal(loaded[key], value), key


def test_local_state_dict_mismatch(tmp_path):
    path = tmp_path / "vgg.pt"
    torch.save(build_backbone("vgg11_bn").state_dict(), path)
    with pytest.raises(ValueError, match=str(path)):
        build_backbone("resnet18", pretrained=str(path))
    with pytest.raises(ValueError, match="existing file path"):
        build_backbone("resnet18", pretrained=str(tmp_path / "missing.pt"))


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.5, 1.0])
def test_freeze_fraction_and_frozen_bn_eval(fraction):
    backbone = build_backbone("resnet18", freeze=fraction)
    all_layers = list(layers(backbone))
    n_frozen = int(fraction * len(all_layers))
    for i, layer in enumerate(all_layers):
        frozen = not any(p.requires_grad for p in layer.parameters(recurse=False))
        assert frozen == (i < n_frozen), (i, layer)
    backbone.train()
    bns = [m for m in all_layers if isinstance(m, nn.BatchNorm2d)]
    assert bns
    for i, layer in enumerate(all_layers):
        if isinstance(layer, nn.BatchNorm2d):
            assert layer.training == (i >= n_frozen)
    # frozen BN statistics do not move in training mode
    if n_frozen:
        first_bn = next(m for m in all_layers[:n_frozen] if isinstance(m, nn.BatchNorm2d))
        before = first_bn.running_mean.clone()
        backbone(torch.rand(2, 3, 32, 32) * 5)
        assert torch.equal(first_bn.running_mean, before)


def test_freeze_rejects_bad_fraction():
    with pytest.raises(ValueError, match="1.5"):
        freeze_layers(nn.Linear(2, 2), 1.5)
