"""Ground-truth scores of voxel maps and the model-randomisation cascade, on hand-made cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score

from axial_monai.explain import (
    auprc,
    best_region_rank,
    cascading_randomization,
    map_spearman,
    pointing_game,
    randomization_stages,
    region_ranking,
    relevance_mass_ratio,
)
from axial_monai.networks import AxialNet, TriPlanarAxialNet

SHAPE = (6, 5, 4)


def _mask() -> np.ndarray:
    mask = np.zeros(SHAPE, bool)
    mask[1:3, 1:3, 1:3] = True  # 8 voxels
    return mask


def test_pointing_game_is_tie_aware_and_restricted_to_the_reference():
    mask = _mask()
    volume = np.zeros(SHAPE)
    volume[1, 1, 1] = 2.0
    assert pointing_game(volume, mask) == 1.0
    volume[5, 4, 3] = 2.0  # a tie outside: half the maximal voxels hit
    assert pointing_game(volume, mask) == 0.5
    reference = np.ones(SHAPE, bool)
    reference[5] = False  # the outside peak is not in the reference: it does not count
    assert pointing_game(volume, mask, reference) == 1.0
    assert pointing_game(np.zeros(SHAPE), mask) == 0.0


def test_mass_ratio_and_auprc_have_chance_at_one_and_at_the_prevalence():
    mask, reference = _mask(), np.ones(SHAPE, bool)
    uniform = np.ones(SHAPE)
    assert relevance_mass_ratio(uniform, mask, reference) == pytest.approx(1.0)
    ap, prevalence = auprc(uniform, mask, reference)
    assert prevalence == pytest.approx(8 / 120) and ap == pytest.approx(prevalence)
    perfect = mask.astype(float)
    assert relevance_mass_ratio(perfect, mask, reference) == pytest.approx(120 / 8)
    assert auprc(perfect, mask, reference)[0] == pytest.approx(1.0)
    # over a smaller reference the prevalence and the ratio change accordingly
    small = np.zeros(SHAPE, bool)
    small[:3] = True  # 60 voxels, all 8 mask voxels inside
    assert relevance_mass_ratio(uniform, mask, small) == pytest.approx(1.0)
    assert auprc(uniform, mask, small)[1] == pytest.approx(8 / 60)
    rng = np.random.default_rng(0)
    noisy = rng.random(SHAPE)
    assert auprc(noisy, mask)[0] == pytest.approx(average_precision_score(mask.ravel(), noisy.ravel()))
    assert np.isnan(relevance_mass_ratio(np.zeros(SHAPE), mask))
    with pytest.raises(ValueError, match="same shape"):
        auprc(noisy, mask[:3])


def test_region_ranking_by_mean_and_by_mass():
    labels = np.zeros(SHAPE, int)
    labels[:3] = 1  # big region, 60 voxels, low relevance per voxel
    labels[3:, :2] = 2  # small region, 24 voxels, high relevance per voxel
    labels[3:, 2:] = 3
    volume = np.where(labels == 1, 1.0, 0.0) + np.where(labels == 2, 2.0, 0.0)
    names = {1: "big", 2: "small", 3: "empty"}
    by_mean = region_ranking(volume, labels, names, by="mean")
    by_mass = region_ranking(volume, labels, names, by="mass")
    assert list(by_mean["name"]) == ["small", "big", "empty"]
    assert list(by_mass["name"]) == ["big", "small", "empty"]
    assert best_region_rank(by_mean, ["big", "nowhere"]) == 2
    assert best_region_rank(by_mean, ["nowhere"]) > 1000
    # regions with fewer reference voxels than min_voxels are left out
    reference = labels != 2
    assert "small" not in set(region_ranking(volume, labels, names, reference, min_voxels=1)["name"])


def test_map_spearman():
    a = np.arange(np.prod(SHAPE), dtype=float).reshape(SHAPE)
    assert map_spearman(a, 2 * a + 1) == pytest.approx(1.0)
    assert map_spearman(a, -a) == pytest.approx(-1.0)
    assert np.isnan(map_spearman(a, np.zeros(SHAPE)))


def test_cascade_goes_from_the_head_to_the_first_layer_and_leaves_the_network_alone():
    torch.manual_seed(0)
    net = AxialNet(backbone="resnet18", num_slices=4, image_size=32, freeze=0.0)
    with torch.no_grad():  # "trained" weights: batch-norm scales away from their initial 1
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    before = {k: v.clone() for k, v in net.state_dict().items()}
    stages = randomization_stages(net)
    assert stages[:2] == ["head", "attention"] and stages[-1] == "encoder.backbone.0"
    assert randomization_stages(TriPlanarAxialNet(num_slices=4, image_size=32))[:4] == [
        "head",
        "attention.2",
        "attention.1",
        "attention.0",
    ]
    seen = []
    for stage, randomized in cascading_randomization(net, seed=3):
        seen.append(stage)
        state = randomized.state_dict()
        changed = {k for k in state if k.endswith("weight") and not torch.equal(state[k], before[k])}
        # every block so far is re-initialised, the rest is untouched
        for done in seen:
            assert any(k.startswith(done + ".") for k in changed), done
        assert not any(k.startswith("encoder.backbone.0.") for k in changed) or stage == "encoder.backbone.0"
    assert seen == stages
    for k, v in net.state_dict().items():
        assert torch.equal(v, before[k]), k
    # seeded: the same cascade gives the same weights
    *_, (_, first) = cascading_randomization(net, seed=3)
    first_state = {k: v.clone() for k, v in first.state_dict().items()}
    *_, (_, second) = cascading_randomization(net, seed=3)
    assert all(torch.equal(first_state[k], v) for k, v in second.state_dict().items())
