import pytest
import torch
from monai.visualize import GradCAM, GradCAMpp

from axial_monai.errors import InputError
from axial_monai.geometry import central_slice_indices
from axial_monai.networks import (
    AxialNet,
    ExplainableNetwork,
    MeanPoolNet,
    SliceClassifier2D,
    SliceTransformerNet,
    TriPlanarAxialNet,
    build_backbone,
)

TINY = {"backbone": "resnet18", "image_size": 64, "pretrained": "none"}
SHAPE = (2, 1, 21, 24, 19)  # odd and even sizes


def test_too_many_slices_names_both_numbers():
    net = AxialNet(num_slices=30, plane=2, **TINY)
    with pytest.raises(ValueError, match=r"30.*19|19.*30"):
        net(torch.rand(*SHAPE))


def test_axialnet_vgg16_bn_parameter_count():
    net = AxialNet(num_classes=2, backbone="vgg16_bn", pretrained="none")
    assert sum(p.numel() for p in net.parameters()) == 14_724_675


def _networks():
    return [
        AxialNet(num_classes=3, num_slices=6, **TINY),
        TriPlanarAxialNet(num_classes=3, num_slices=(5, 6, 7), **TINY),
        MeanPoolNet(num_classes=3, num_slices=6, **TINY),
        SliceTransformerNet(num_classes=3, num_slices=6, **TINY),
        SliceClassifier2D(num_classes=3, num_slices=6, **TINY),
    ]


@pytest.mark.parametrize("net", _networks(), ids=lambda n: type(n).__name__)
def test_output_shape(net):
    net.eval()
    with torch.no_grad():
        out = net(torch.rand(*SHAPE))
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()


def test_attention_sums_to_one_and_matches_slices():
    x = torch.rand(*SHAPE)
    net = AxialNet(num_slices=6, **TINY).eval()
    logits, alpha = net.forward_attention(x)
    assert alpha.shape == (2, 6)
    torch.testing.assert_close(alpha.sum(1), torch.ones(2))
    assert net.slice_indices(SHAPE[2:]) == {1: central_slice_indices(SHAPE[3], 6)}
    torch.testing.assert_close(logits, net(x))

    tri = TriPlanarAxialNet(num_slices=(5, 6, 7), **TINY).eval()
    logits, alphas = tri.plane_attention(x)
    assert {p: a.shape for p, a in alphas.items()} == {0: (2, 5), 1: (2, 6), 2: (2, 7)}
    for a in alphas.values():
        torch.testing.assert_close(a.sum(1), torch.ones(2))
    assert tri.slice_indices(SHAPE[2:]) == {p: central_slice_indices(SHAPE[p + 2], n) for p, n in enumerate((5, 6, 7))}

    _, weights = SliceTransformerNet(num_slices=6, **TINY).eval().forward_attention(x)
    assert weights.shape == (2, 5)
    torch.testing.assert_close(weights.sum(1), torch.ones(2))


def test_majority_vote_and_tie_rule():
    net = SliceClassifier2D(num_slices=4, **TINY)
    # 3 of 4 slices vote class 1 although class 0 has the higher mean probability
    logits = torch.tensor([[[9.0, 0.0], [0.0, 0.1], [0.0, 0.1], [0.0, 0.1]]])
    assert net.vote(logits).argmax(1).item() == 1
    # 2-2 tie: class 0 wins by mean probability, then the reverse
    tie = torch.tensor([[[5.0, 0.0], [5.0, 0.0], [0.0, 0.1], [0.0, 0.1]]])
    assert net.vote(tie).argmax(1).item() == 0
    assert net.vote(tie.flip(-1)).argmax(1).item() == 1
    # a 2D slice batch gives slice logits
    assert net(torch.rand(5, 1, 21, 19)).shape == (5, 2)


@pytest.mark.parametrize("net_cls", [AxialNet, TriPlanarAxialNet])
def test_gradient_reaches_attention_and_head(net_cls):
    net = net_cls(num_slices=4, freeze=0.5, **TINY).train()
    loss = torch.nn.functional.cross_entropy(net(torch.rand(*SHAPE)), torch.tensor([0, 1]))
    loss.backward()
    attention = [m for n, m in net.named_modules() if type(m).__name__ == "AttentionPool"]
    assert attention
    for module in attention:
        assert module.score.weight.grad is not None and module.score.weight.grad.abs().sum() > 0
        # the softmax over slices ignores a score offset shared by every slice: the bias can get no gradient
        assert module.score.bias.grad.abs().max() < 1e-6
    for p in net.head.parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0


@pytest.mark.parametrize("cam_cls", [GradCAM, GradCAMpp])
def test_monai_gradcam_on_last_feature_layer(cam_cls):
    x = torch.rand(1, *SHAPE[1:])
    net = AxialNet(num_slices=6, **TINY).eval()
    cam = cam_cls(nn_module=net, target_layers=net.cam_layer)
    maps = cam.compute_map(x, class_idx=1, layer_idx=-1)
    assert maps.shape == (6, 1, 2, 2)
    assert torch.isfinite(torch.as_tensor(maps)).all()

    tri = TriPlanarAxialNet(num_slices=(3, 4, 5), **TINY).eval()
    maps = cam_cls(nn_module=tri, target_layers=tri.cam_layer).compute_map(x, class_idx=0, layer_idx=-1)
    assert maps.shape == (12, 1, 2, 2)


def test_vgg_gradcam_hooks_with_inplace_relu_disabled():
    net = AxialNet(backbone="vgg16_bn", num_slices=3, image_size=64).eval()
    assert not any(getattr(m, "inplace", False) for m in net.modules())
    maps = GradCAM(nn_module=net, target_layers=net.cam_layer).compute_map(torch.rand(1, *SHAPE[1:]), layer_idx=-1)
    assert maps.shape == (3, 1, 2, 2)


def _locked(cls, **kwargs):
    """``cls`` on the grid of SHAPE, small, in eval mode."""
    kwargs = {"num_classes": 3, "num_slices": 6, **TINY, **kwargs}
    if cls is SliceTransformerNet:
        kwargs["num_heads"] = 2
    torch.manual_seed(0)
    return cls(spatial_shape=SHAPE[2:], **kwargs).eval()


@pytest.mark.parametrize(
    "net_cls", [AxialNet, TriPlanarAxialNet, MeanPoolNet, SliceTransformerNet, SliceClassifier2D], ids=str
)
def test_scripted_network_is_the_eager_one_on_its_grid_and_refuses_any_other(net_cls, tmp_path):
    """TorchScript (what the model zoo's ckpt_export does by default) keeps the network's results and its grid."""
    net = _locked(net_cls)
    path = tmp_path / "net.ts"
    torch.jit.script(net).save(str(path))
    scripted = torch.jit.load(str(path))
    x = torch.rand(*SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        eager, compiled = net(x), scripted(x)
    assert (eager - compiled).abs().max() <= 1e-5
    assert not torch.allclose(eager[0], eager[1])  # the input matters: not a constant output
    other = torch.rand(1, 1, SHAPE[2], SHAPE[3] + 1, SHAPE[4])
    expected = r"spatial shape \[21, 24, 19\], not \[21, 25, 19\]"
    with pytest.raises(InputError, match=expected):
        net(other)
    with pytest.raises(torch.jit.Error, match=expected):
        scripted(other)


@pytest.mark.parametrize("backbone", ["vgg11_bn", "densenet121", "efficientnet_b0", "convnext_tiny", "swin_v2_t"])
def test_every_backbone_family_scripts(backbone):
    net = _locked(AxialNet, backbone=backbone, num_slices=2)
    x = torch.rand(1, *SHAPE[1:])
    with torch.no_grad():
        assert (torch.jit.script(net)(x) - net(x)).abs().max() <= 1e-5


def test_a_network_without_spatial_shape_takes_any_grid():
    net = AxialNet(num_slices=4, **TINY).eval()
    with torch.no_grad():
        assert net(torch.rand(*SHAPE)).shape == (2, 2) and net(torch.rand(1, 1, 30, 20, 25)).shape == (1, 2)


#: state-dict keys outside the backbone, as written by the networks before they shared ``SliceNet``: checkpoints
#: saved then must keep loading, so these names may never change.
_OWN_KEYS = {
    "AxialNet": ("encoder.backbone.", ["attention.score.weight", "attention.score.bias", "head.weight", "head.bias"]),
    "TriPlanarAxialNet": (
        "backbone.",
        [f"attention.{p}.score.{w}" for p in range(3) for w in ("weight", "bias")] + ["head.weight", "head.bias"],
    ),
    "MeanPoolNet": ("encoder.backbone.", ["head.weight", "head.bias"]),
    "SliceTransformerNet": (
        "encoder.backbone.",
        ["attn.in_proj_weight", "attn.in_proj_bias", "attn.out_proj.weight", "attn.out_proj.bias"]
        + ["norm.weight", "norm.bias", "head.weight", "head.bias"],
    ),
    "SliceClassifier2D": ("backbone.", ["head.weight", "head.bias"]),
}


@pytest.mark.parametrize("net", _networks(), ids=lambda n: type(n).__name__)
def test_state_dict_keys_are_stable(net):
    prefix, own = _OWN_KEYS[type(net).__name__]
    backbone = {prefix + k for k in build_backbone(name="resnet18").state_dict()}
    assert set(net.state_dict()) == backbone | set(own)
    assert net.cam_layer == f"{prefix}{len(net.backbone_module) - 1}"
    assert isinstance(net.get_submodule(net.cam_layer), torch.nn.Module)


@pytest.mark.parametrize("net", _networks(), ids=lambda n: type(n).__name__)
def test_which_networks_the_explanations_accept(net):
    """AxialNet and TriPlanarAxialNet offer what the InterpretabilityHandler calls; the baselines do not."""
    explainable = isinstance(net, ExplainableNetwork)
    assert explainable == (type(net).__name__ in ("AxialNet", "TriPlanarAxialNet"))
    if explainable:
        logits, attention = net.eval().plane_attention(torch.rand(*SHAPE))
        assert logits.shape == (2, 3)
        indices = net.slice_indices(SHAPE[2:])
        assert {p: a.shape[1] for p, a in attention.items()} == {p: len(r) for p, r in indices.items()}
