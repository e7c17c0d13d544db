"""Backbone execution options (slice micro-batching, activation checkpointing, channels_last): same numbers."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DenseNet121

from axial_monai.networks import AxialNet, TriPlanarAxialNet, configure_backbones

X = (2, 1, 20, 24, 20)


def _step(net: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, dict, dict]:
    """One training forward/backward: logits, parameter gradients, and the state dict (BatchNorm statistics)."""
    net.train()
    net.zero_grad(set_to_none=True)
    out = net(x)
    (out * torch.arange(1, out.shape[1] + 1)).sum().backward()
    grads = {k: p.grad.clone() for k, p in net.named_parameters() if p.grad is not None}
    return out.detach(), grads, {k: v.clone() for k, v in net.state_dict().items()}


def _saved_bytes(net: torch.nn.Module, x: torch.Tensor) -> int:
    """Bytes autograd keeps for the backward pass of one training forward (what activation memory is)."""
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    net.train()
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        net(x).sum().backward()
    return total


@pytest.mark.parametrize("backbone, freeze", [("vgg11_bn", 0.5), ("resnet18", 0.0)])
@pytest.mark.parametrize("options", [{"slice_chunk": 5}, {"checkpoint": True}, {"slice_chunk": 4, "checkpoint": True}])
def test_memory_options_give_the_same_outputs_gradients_and_statistics(backbone, freeze, options):
    """Same computation, only split or recomputed: equal up to float64 rounding (in float32, BatchNorm over a few
    2 x 2 feature maps amplifies the rounding differences of differently sized convolutions to ~1e-3)."""
    torch.manual_seed(0)
    net = AxialNet(backbone=backbone, num_slices=6, image_size=32, freeze=freeze, dropout=0.0).double()
    x = torch.rand(*X, dtype=torch.float64)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    out, grads, state = _step(net, x)
    net.load_state_dict(start)
    configure_backbones(net, **options)
    out2, grads2, state2 = _step(net, x)
    torch.testing.assert_close(out2, out, rtol=1e-10, atol=1e-12)
    assert grads2.keys() == grads.keys() and grads
    for k in grads:
        torch.testing.assert_close(grads2[k], grads[k], rtol=1e-8, atol=1e-11, msg=k)
    for k in state:  # running statistics are updated once, as without checkpointing
        torch.testing.assert_close(state2[k], state[k], rtol=1e-10, atol=1e-12, msg=k)
    net.eval()
    with torch.no_grad():
        chunked = net(x)
        configure_backbones(net)
        torch.testing.assert_close(chunked, net(x), rtol=1e-10, atol=1e-12)


def test_checkpointing_keeps_fewer_activations():
    torch.manual_seed(0)
    net = AxialNet(backbone="vgg11_bn", num_slices=8, image_size=64, freeze=0.0)
    x = torch.rand(*X)
    plain = _saved_bytes(net, x)
    configure_backbones(net, slice_chunk=4, checkpoint=True)
    assert _saved_bytes(net, x) < 0.3 * plain


def test_frozen_half_is_chunked_and_keeps_no_activations():
    """The paper's setting (freeze 0.5): the frozen first half of the backbone runs in chunks of slices."""
    torch.manual_seed(0)
    net = AxialNet(backbone="vgg11_bn", num_slices=8, image_size=64, freeze=0.5)
    calls: list[int] = []
    first_conv = net.encoder.backbone[0][0]
    original = first_conv.forward
    first_conv.forward = lambda t: calls.append(t.shape[0]) or original(t)  # counts calls without a hook
    configure_backbones(net, slice_chunk=4)
    net.train()
    net(torch.rand(*X)).sum().backward()
    assert calls == [4, 4, 4, 4]  # 2 volumes x 8 slices, 4 at a time


def test_hooks_switch_the_options_off():
    """GradCAM's hooks must see each layer once with the whole batch."""
    net = AxialNet(backbone="resnet18", num_slices=8, image_size=32, freeze=0.0).eval()
    configure_backbones(net, slice_chunk=3, checkpoint=True)
    seen: list[int] = []
    handle = net.get_submodule(net.cam_layer).register_forward_hook(lambda m, i, o: seen.append(o.shape[0]))
    with torch.no_grad():
        net(torch.rand(*X))
    handle.remove()
    assert seen == [16]


def test_channels_last_and_triplanar():
    torch.manual_seed(0)
    net = TriPlanarAxialNet(backbone="resnet18", num_slices=4, image_size=32, freeze=0.0).eval()
    x = torch.rand(*X)
    with torch.no_grad():
        ref = net(x)
        configure_backbones(net, slice_chunk=5, channels_last=True)
        out = net(x)
    assert net.backbone[0].weight.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)
    assert net.backbone.slice_chunk == 5


def test_configure_refuses_bad_settings():
    net = AxialNet(backbone="resnet18", num_slices=4, image_size=32)
    with pytest.raises(ValueError, match="slice_chunk must be"):
        configure_backbones(net, slice_chunk=-1)
    dense = DenseNet121(spatial_dims=3, in_channels=1, out_channels=2)
    assert configure_backbones(dense) is dense  # nothing asked, nothing to do
    with pytest.raises(ValueError, match="has none"):
        configure_backbones(dense, checkpoint=True)
