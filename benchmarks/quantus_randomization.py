"""Benchmark: our model-randomisation sanity check of explanations against Quantus ``MPRT`` and ``SmoothMPRT``.

The check (Adebayo et al. 2018) re-initialises a trained network from the output towards the input and asks how
similar the explanation of each randomised network stays to the trained network's: a map that stays similar does not
show what the model learnt. Both scorers get the same explanation function on the same inputs: the project's default
map, Integrated Gradients of ``axial_monai.explain.explain_scan`` (8 steps from the run's mean control scan, positive
part, normalised anti-aliasing, min-max to [0, 1], 0 outside the brain voxels the network reads), explaining the AD
class (the label, which Quantus passes as ``targets``), on the first ``--scans`` AD test scans of one fold of a
cross-validation run (e.g. ``<work>/runs/axial`` of ``benchmarks/paper_table.py``):

* ours: ``axial_monai.explain.cascading_randomization`` (whole blocks: head, attention, the backbone's stages from the
  top), Spearman correlation between the trained and the randomised map over the brain voxels the network reads
  (``map_spearman`` over ``read_mask & (scan != 0)``, as in ``benchmarks/explain_groundtruth.py``);
* Quantus ``MPRT(layer_order="top_down")``: one module with ``reset_parameters`` more at each step, Spearman
  (``quantus.similarity_func.correlation_spearman``, its default) over the whole flattened volume;
* Quantus ``SmoothMPRT``: each map the mean over ``--smooth-samples`` noisy copies of the scan, fully randomised
  network only (``skip_layers=True``); 0 leaves it out.

Both Quantus metrics run with ``abs=False, normalise=False``: the maps are already >= 0 and scaled to [0, 1], and
Spearman ignores any per-map monotone rescaling, so the defaults would not change a score. Each scorer's maps are also
scored with the other's similarity (ours over the whole volume; Quantus's over the brain, through a similarity
function that returns Quantus's own value and records the in-brain one on the very arrays Quantus compares), which
separates the voxels the similarity counts from the randomisation schedule. Writes ``quantus_randomization.csv`` (one
row per scorer, scan and step) and ``quantus_randomization.md`` to ``--out``. ``pip install quantus`` (not a
dependency of the package).

    python benchmarks/quantus_randomization.py RUN_DIR COHORT_DIR [--fold 0] [--scans 4] [--smooth-samples 3]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import nn

from axial_monai.explain import (
    ExplainSettings,
    cascading_randomization,
    explain_scan,
    map_spearman,
    randomization_stages,
    read_mask,
)
from axial_monai.paper_table import markdown_table

ROOT = Path(__file__).resolve().parents[1]
#: a map whose fully randomised Spearman correlation with the trained map is below this "passes" the check
PASS_BELOW = 0.5
SCORERS = {"ours": "ours", "quantus_mprt": "Quantus MPRT", "quantus_smooth_mprt": "Quantus SmoothMPRT"}


def ad_test_scans(run_dir: Path, cohort: Path, fold: int, count: int) -> list[tuple[str, Path]]:
    """``(subject, image)`` of the first ``count`` AD test scans of the fold, the images taken from ``cohort``."""
    images = {}
    for items in json.loads((cohort / "datalist.json").read_text()).values():
        images.update({item["subject"]: cohort / item["image"] for item in items})
    tested = json.loads((run_dir / f"fold-{fold}" / "datalist.json").read_text())["test"]
    return [(item["subject"], images[item["subject"]]) for item in tested if item["label"] == 1][:count]


class Explainer:
    """The project's default Integrated Gradients map as a Quantus ``explain_func``: ``(model, inputs, targets)``."""

    def __init__(self, run: Any) -> None:
        # explain_scan's rule: the run's mean control scan is the baseline, the template's brain without one
        control_mean = None if run.control_mean is None else np.asarray(run.control_mean, np.float32)
        template = run.template_input() if control_mean is None else None
        self.settings = {
            target: ExplainSettings(
                methods=["integrated_gradients"], target_class=target, control_mean=control_mean,
                template_baseline=template,
            )  # every other setting is the product's default: steps, sign, anti-aliasing, batch size
            for target in range(len(run.class_names) or 2)
        }  # fmt: skip
        self.positive = int(run.positive_class)
        #: (predicted class, probability of AD) of each scan of the last call
        self.predictions: list[tuple[int, float]] = []

    def __call__(self, model: nn.Module, inputs: np.ndarray, targets: np.ndarray, **kwargs: Any) -> np.ndarray:
        """``(B, 1, X, Y, Z)`` maps of ``model`` for ``inputs`` ``(B, 1, X, Y, Z)`` and class indices ``targets``."""
        maps, self.predictions = [], []
        for volume, target in zip(np.asarray(inputs, np.float32), np.asarray(targets).reshape(-1)):
            result = explain_scan(model, torch.from_numpy(np.ascontiguousarray(volume)), self.settings[int(target)])
            maps.append(result.maps["integrated_gradients"][None])
            self.predictions.append((result.prediction, float(result.probabilities[self.positive])))
        return np.stack(maps)


class RecordingSpearman:
    """Quantus's Spearman similarity, returned unchanged, that also scores the same arrays over the brain voxels."""

    def __init__(self, brains: np.ndarray) -> None:
        self.brains = brains.reshape(len(brains), -1)  # flattened as Quantus flattens the maps (C order)
        #: per call: (Quantus's similarity per scan, ours over the brain per scan)
        self.calls: list[tuple[list[float], list[float]]] = []
        #: the first array Quantus compares: its explanation of the trained network
        self.reference: np.ndarray | None = None

    def __call__(self, a: np.ndarray, b: np.ndarray, batched: bool = False, **kwargs: Any) -> np.ndarray:
        from quantus.functions.similarity_func import correlation_spearman

        if not batched or len(a) != len(self.brains):
            raise RuntimeError("expected one batch holding every scan (batch_size = number of scans)")
        value = correlation_spearman(a, b, batched=True, **kwargs)
        self.reference = np.array(a) if self.reference is None else self.reference
        brain = [map_spearman(u, v, m) for u, v, m in zip(a, b, self.brains)]
        self.calls.append(([float(v) for v in np.atleast_1d(value)], brain))
        return value


@contextmanager
def explain_routed_to(function: Callable) -> Iterator[None]:
    """Route ``quantus.explain`` to ``function`` for the time of the block.

    ``SmoothMPRT`` of Quantus 0.6.0 explains each noisy copy with ``quantus.explain(model, x, y, **kwargs)``, not with
    the ``explain_func`` it is given (which it only checks), so without this it would score captum's vanilla gradient.
    """
    import quantus

    original = quantus.explain
    quantus.explain = function
    try:
        yield
    finally:
        quantus.explain = original


def reset_modules(network: nn.Module) -> list[str]:
    """Modules re-initialised by both schedules (those with ``reset_parameters``), in registration order."""
    return [name for name, module in network.named_modules() if hasattr(module, "reset_parameters")]


def block_of(module: str, stages: list[str]) -> str:
    """Our randomisation block holding a module (``encoder.backbone.7.1.bn2`` -> ``encoder.backbone.7``)."""
    return next(s for s in stages if module == s or module.startswith(f"{s}."))


def our_rows(
    net: nn.Module, explainer: Explainer, x: np.ndarray, y: np.ndarray, brains: np.ndarray, seed: int
) -> tuple[list[dict], np.ndarray]:
    """Our cascade: one row per scan for the trained network (step 0) and after each block; also the trained maps."""
    from quantus.functions.similarity_func import correlation_spearman

    trained = explainer(net, x, y)
    rows = [
        {"scan": i, "step": 0, "randomized": "", "modules_randomized": 0, "spearman_brain": 1.0,
         "spearman_volume": 1.0, "predicted": p, "p_ad": q}
        for i, (p, q) in enumerate(explainer.predictions)
    ]  # fmt: skip
    count = 0
    for step, (stage, randomized) in enumerate(cascading_randomization(net, seed=seed), start=1):
        maps = explainer(randomized, x, y)
        # Quantus's similarity on our maps: Spearman over the whole flattened volume
        volume = np.atleast_1d(correlation_spearman(trained.reshape(len(x), -1), maps.reshape(len(x), -1), True))
        count += len(reset_modules(net.get_submodule(stage)))
        for i, (predicted, p_ad) in enumerate(explainer.predictions):
            rows.append(
                {
                    "scan": i,
                    "step": step,
                    "randomized": stage,
                    "modules_randomized": count,
                    "spearman_brain": map_spearman(trained[i, 0], maps[i, 0], brains[i]),
                    "spearman_volume": float(volume[i]),
                    "predicted": predicted,
                    "p_ad": p_ad,
                }
            )
    return rows, trained


def quantus_rows(
    metric: Any, net: nn.Module, explainer: Explainer, x: np.ndarray, y: np.ndarray, brains: np.ndarray
) -> tuple[list[dict], np.ndarray]:
    """Run a Quantus randomisation metric; one row per scan and scored step (``original``: step 0)."""
    similarity = RecordingSpearman(brains)
    metric.similarity_func = similarity  # its default (Spearman), recorded on the way
    scores = metric(
        model=net, x_batch=x, y_batch=y, channel_first=True, explain_func=explainer, batch_size=len(x), device="cpu"
    )
    keys = list(scores)  # "original", then the randomised modules in Quantus's order (only the last: skip_layers)
    if len(keys) != len(similarity.calls) or any(scores[k] != c[0] for k, c in zip(keys, similarity.calls)):
        raise RuntimeError("the recorded similarities do not line up with Quantus's scores")
    order = reset_modules(net)[::-1]  # what its top_down generator walks through: registration order, reversed
    rows = []
    for key, (theirs, brain) in zip(keys, similarity.calls):
        step = 0 if key == "original" else order.index(key) + 1
        for i in range(len(x)):
            rows.append(
                {
                    "scan": i,
                    "step": step,
                    "randomized": "" if key == "original" else key,
                    "modules_randomized": step,
                    "spearman_brain": brain[i],
                    "spearman_volume": theirs[i],
                }
            )
    return rows, similarity.reference


def scan_rows(args: argparse.Namespace) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Both checks on the first ``args.scans`` AD test scans of fold ``args.fold``: the CSV's rows and run facts."""
    import quantus

    from axial_monai.run import RunSettings, load_weights
    from axial_monai.transforms import load_volume

    ckpt = args.run_dir / f"fold-{args.fold}" / "models" / "model.pt"
    run = RunSettings.load(ckpt)
    net = run.build_network()
    net.load_state_dict(load_weights(ckpt))
    net.eval()
    scans = ad_test_scans(args.run_dir, args.cohort, args.fold, args.scans)
    loader = load_volume("image", intensity=run.intensity)
    x = np.stack([np.asarray(loader({"image": str(path)})["image"], np.float32) for _, path in scans])
    y = np.full(len(x), int(run.positive_class))  # the AD class on every network: Quantus passes the labels
    # the voxels our check scores: the brain voxels the network reads (they do not depend on the weights)
    brains = np.stack([read_mask(net, x.shape[2:]) & (scan[0] != 0) for scan in x])
    explainer = Explainer(run)
    stages = randomization_stages(net)
    info: dict[str, Any] = {"brain_share": float(brains.mean()), "voxels": int(np.prod(x.shape[2:]))}
    info.update(stages=stages, modules=reset_modules(net))
    info["baseline"] = "template brain" if run.control_mean is None else "mean control scan"

    start = time.perf_counter()
    ours, trained = our_rows(net, explainer, x, y, brains, args.seed)
    info["seconds"] = {"ours": time.perf_counter() - start}
    tables = [pd.DataFrame(ours).assign(scorer="ours")]

    start = time.perf_counter()
    mprt = quantus.MPRT(layer_order="top_down", seed=args.seed, abs=False, normalise=False, disable_warnings=True)
    rows, reference = quantus_rows(mprt, net, explainer, x, y, brains)
    info["seconds"]["quantus_mprt"] = time.perf_counter() - start
    # the same explanation function must give Quantus the very maps it gives us
    info["max_map_difference"] = float(np.abs(reference.reshape(trained.shape) - trained).max())
    tables.append(pd.DataFrame(rows).assign(scorer="quantus_mprt"))

    if args.smooth_samples:
        start = time.perf_counter()
        smooth = quantus.SmoothMPRT(
            layer_order="top_down", seed=args.seed, nr_samples=args.smooth_samples, skip_layers=True, abs=False,
            normalise=False, disable_warnings=True,
        )  # fmt: skip
        np.random.seed(args.seed)  # its noise comes from numpy's global generator
        with explain_routed_to(explainer):
            rows, _ = quantus_rows(smooth, net, explainer, x, y, brains)
        info["seconds"]["quantus_smooth_mprt"] = time.perf_counter() - start
        tables.append(pd.DataFrame(rows).assign(scorer="quantus_smooth_mprt"))

    table = pd.concat(tables, ignore_index=True)
    table["block"] = [block_of(r, stages) if r else "" for r in table.randomized]
    table["subject"] = [scans[i][0] for i in table.scan]
    table["fold"] = args.fold
    columns = ["scorer", "fold", "subject", "step", "randomized", "block", "modules_randomized"]
    columns += ["spearman_brain", "spearman_volume", "predicted", "p_ad"]
    return table[columns], info


def _spread(values: pd.Series) -> str:
    """Mean and range over scans."""
    return f"{values.mean():.3f} [{values.min():.3f}, {values.max():.3f}]" if len(values) else "-"


def block_table(table: pd.DataFrame, info: dict[str, Any]) -> pd.DataFrame:
    """Per block of ours: the step at which each schedule has re-initialised all of it, and the similarities then."""
    ours, theirs = table[table.scorer == "ours"], table[table.scorer == "quantus_mprt"]
    n_ours, n_theirs = len(info["stages"]), len(info["modules"])
    order = info["modules"][::-1]
    out = []
    for step, stage in enumerate(info["stages"], start=1):
        done = max(order.index(m) + 1 for m in order if block_of(m, info["stages"]) == stage)
        mine, their = ours[ours.step == step], theirs[theirs.step == done]
        out.append(
            {
                "block": stage,
                "ours: step": f"{step}/{n_ours}",
                "ours: Spearman, brain": _spread(mine.spearman_brain),
                "ours: Spearman, whole volume": _spread(mine.spearman_volume),
                "Quantus: step": f"{done}/{n_theirs}",
                "Quantus MPRT (whole volume)": _spread(their.spearman_volume),
                "Quantus maps: Spearman, brain": _spread(their.spearman_brain),
            }
        )
    return pd.DataFrame(out)


def last_steps(table: pd.DataFrame) -> pd.DataFrame:
    """Per scan: the fully randomised similarities of each scorer (the last step), the lowest over each cascade."""
    frames = {}
    for scorer, part in table[table.step > 0].groupby("scorer"):
        last = part[part.step == part.step.max()].set_index("subject")
        frames[f"{scorer}_brain"] = last.spearman_brain
        frames[f"{scorer}_volume"] = last.spearman_volume
        frames[f"{scorer}_lowest_brain"] = part.groupby("subject").spearman_brain.min()
        frames[f"{scorer}_lowest_volume"] = part.groupby("subject").spearman_volume.min()
    trained = table[(table.scorer == "ours") & (table.step == 0)].set_index("subject")
    frames["p_ad"] = trained.p_ad
    subjects = list(dict.fromkeys(table.subject))
    return pd.DataFrame(frames).loc[subjects]


def scan_table(last: pd.DataFrame) -> pd.DataFrame:
    """The per-scan table of the markdown: fully randomised similarities, three decimals."""
    columns = {
        "p_ad": "p(AD), trained",
        "ours_brain": "ours: brain",
        "ours_volume": "ours: whole volume",
        "quantus_mprt_volume": "Quantus MPRT",
        "quantus_mprt_brain": "Quantus maps: brain",
        "quantus_smooth_mprt_volume": "Quantus SmoothMPRT",
        "quantus_smooth_mprt_brain": "SmoothMPRT maps: brain",
    }
    shown = last[[c for c in columns if c in last]].rename(columns=columns)
    return shown.map(lambda v: f"{v:.3f}").reset_index().rename(columns={"index": "subject"})


def verdicts(last: pd.DataFrame) -> dict[str, Any]:
    """Share of scans that pass (fully randomised Spearman < PASS_BELOW) and rank agreement over scans."""
    passes = {c: float((last[c] < PASS_BELOW).mean()) for c in last if c != "p_ad" and "_lowest_" not in c}

    def rank(a: str, b: str) -> float:
        if b not in last or len(last) < 3:
            return float("nan")
        return float(spearmanr(last[a], last[b]).statistic)

    agreement = {
        "Quantus MPRT": rank("ours_brain", "quantus_mprt_volume"),
        "Quantus maps, brain": rank("ours_brain", "quantus_mprt_brain"),
        "Quantus SmoothMPRT": rank("ours_brain", "quantus_smooth_mprt_volume"),
    }
    return {"passes": passes, "agreement": agreement}


def _mean(table: pd.DataFrame, scorer: str, step: int | None, column: str = "spearman_brain") -> float:
    """Mean over scans of a scorer's similarity at a step (None: its last step)."""
    part = table[table.scorer == scorer]
    return float(part[part.step == (part.step.max() if step is None else step)][column].mean())


def differences(table: pd.DataFrame, info: dict[str, Any], last: pd.DataFrame) -> str:
    """The paragraph "Where they differ and why", with this run's numbers."""
    stages, order = info["stages"], info["modules"][::-1]
    n_ours, n_theirs = len(stages), len(order)
    first_backbone = max(order.index(m) + 1 for m in order if block_of(m, stages) == stages[2])
    ours = table[(table.scorer == "ours") & (table.step > 0)]
    flips = ours[ours.predicted != 1]
    first_flip = ours.groupby("subject").apply(lambda p: p.step[p.predicted != 1].min(), include_groups=False)
    text = [
        "**The verdict differs because of the voxels the similarity ranks, not because of the randomisation.** "
        f"Quantus's `correlation_spearman` ranks all {info['voxels']:,} voxels of the volume. Every map of this "
        "explanation, of the trained or of a randomised network, is 0 outside the brain voxels the network reads "
        f"({info['brain_share']:.1%} of the volume), so about {1 - info['brain_share']:.0%} of the voxels are tied "
        "zeros in both maps, and that shared zero/non-zero split alone makes the whole-volume Spearman close to 1 "
        "whatever the maps do inside the brain: fully randomised, Quantus MPRT gives "
        f"{_mean(table, 'quantus_mprt', None, 'spearman_volume'):.3f}, and our cascade's maps scored the same way "
        f"{_mean(table, 'ours', None, 'spearman_volume'):.3f}, while over the brain our maps give "
        f"{_mean(table, 'ours', None):.3f} and Quantus's own maps {_mean(table, 'quantus_mprt', None):.3f}. With "
        f'Quantus\'s default similarity no map of this model can fall below {PASS_BELOW} (MPRT "fails" every scan); '
        "restricted to the brain, both schedules end far below it. For a volume with a background (any "
        "skull-stripped MRI), MPRT needs a similarity over the brain: a `similarity_func` that masks, as here.",
        f"**The schedules differ, so only the fully randomised network is shared.** Ours re-initialises {n_ours} "
        "blocks in data-flow order from the output (head, attention, the ResNet's layer4 to layer1, then the stem's "
        f"batch norm and convolution); Quantus's `top_down` re-initialises the {n_theirs} modules that have "
        "`reset_parameters`, one per step, in the reverse of their *registration* order, and AxialNet registers "
        "`head` before the encoder and the attention. So Quantus starts with the attention's scoring layer "
        f"(Spearman over the brain still {_mean(table, 'quantus_mprt', 1):.3f}: it only re-weights the slices), "
        "walks the backbone from layer4 down to the stem and reaches the head last; the head-only network, which "
        f"takes our similarity to {_mean(table, 'ours', 1):.3f} at the first step, is never in its schedule. "
        f"Its map loses the trained one inside layer4 ({_mean(table, 'quantus_mprt', first_backbone):.3f} once "
        f"layer4 is re-initialised, step {first_backbone}/{n_theirs}). Both end with all {n_theirs} modules "
        "re-initialised.",
        "**The draws differ.** Quantus re-seeds the global torch generator with `seed + 1` before every module, so "
        "modules of one shape get identical weights (in each ResNet stage, the 3x3 convolutions with as many input "
        "as output channels are one tensor: three in layer2-4, four in layer1) and the global generator is left "
        "re-seeded; ours seeds `seed + step` once per block and restores the generator. Both draw each module's "
        "own default initialisation, and a re-initialised batch norm is the identity with running statistics (0, 1) "
        "in both, so the gap between the two fully randomised scores over the brain "
        f"({_mean(table, 'ours', None):.3f} against {_mean(table, 'quantus_mprt', None):.3f}) comes from the draws "
        "alone (one draw each here).",
        "**The class explained.** Both scorers explain the AD class on every network (Quantus passes the label as "
        "`targets`). `benchmarks/explain_groundtruth.py` calls `explain_scan` with its default `target_class=None`, "
        "the *predicted* class of each randomised network: here the randomised network predicts CN at "
        f"{len(flips)} of {len(ours)} (scan, step) pairs (first such step per scan: "
        f"{', '.join(str(int(s)) if s == s else 'none' for s in first_flip)}), where that benchmark would compare a "
        "map of CN with the trained network's map of AD.",
    ]
    if "quantus_smooth_mprt_volume" in last:
        floor = _mean(table, "quantus_smooth_mprt", 0)
        # skip_layers: the trained network twice (preprocessing, then its reference) and the last step, each a mean
        per_map = info["seconds"]["quantus_smooth_mprt"] / (3 * info["smooth_samples"] * len(last))
        text.append(
            "**SmoothMPRT.** In Quantus 0.6.0 it explains its noisy copies with `quantus.explain` instead of the "
            "`explain_func` it is given (a vanilla captum gradient without `method`); the run routes that call to our "
            "explanation. Its noise (0.1 of the intensity range) is added to every voxel, the background included, "
            "so `explain_scan` sees no background and its maps cover the whole slab the network reads, not only the "
            f"brain. With {info['smooth_samples']} samples the smoothed map is noisy: two smoothed maps of the "
            f"*trained* network (its `original` score) correlate only {floor:.3f} over the brain "
            f"({_mean(table, 'quantus_smooth_mprt', 0, 'spearman_volume'):.3f} over the volume). Fully randomised "
            f"(`skip_layers=True`: only the last step is explained) it gives "
            f"{_mean(table, 'quantus_smooth_mprt', None, 'spearman_volume'):.3f} over the volume and "
            f"{_mean(table, 'quantus_smooth_mprt', None):.3f} over the brain: the same verdicts as MPRT, for the same "
            f"reason. Its default 50 samples over every step would cost 50 x {n_theirs + 2} maps per scan (about "
            f"{50 * (n_theirs + 2) * per_map / 3600:.1f} h per scan here)."
        )
    return "\n\n".join(text)


def markdown(table: pd.DataFrame, info: dict[str, Any], args: argparse.Namespace) -> str:
    """``quantus_randomization.md``: the tables, the verdicts, why they differ, and how it was run (no local paths)."""
    import quantus

    last = last_steps(table)
    verdict = verdicts(last)
    n = len(last)
    passes = verdict["passes"]
    share = {k: f"{round(v * n)}/{n}" for k, v in passes.items()}
    command = f"python benchmarks/quantus_randomization.py $RUN $COHORT --fold {args.fold} --scans {args.scans}"
    command += f" --seed {args.seed} --smooth-samples {args.smooth_samples}"
    agreement = ", ".join(f"{k} {v:.2f}" for k, v in verdict["agreement"].items() if v == v) or "n/a (< 3 scans)"
    seconds = ", ".join(f"{SCORERS[k]} {v:.0f} s" for k, v in info["seconds"].items())
    lines = [
        f"# Model-randomisation sanity check: ours against Quantus {quantus.__version__} MPRT and SmoothMPRT",
        "",
        f"Fold {args.fold}, its first {n} AD test scans. One explanation function for every scorer and network: "
        "`explain_scan`'s Integrated Gradients with the product's defaults (8 steps from the run's "
        f"{info['baseline']}, positive part, normalised anti-aliasing, min-max to [0, 1], 0 outside the brain voxels "
        "the network reads), explaining AD. Ours: `cascading_randomization` (seed "
        f'{args.seed}), Spearman over the brain voxels the network reads. Quantus: `MPRT(layer_order="top_down", '
        f"seed={args.seed}, abs=False, normalise=False)` with its default Spearman over the whole volume (the maps "
        "are >= 0 and in [0, 1] already, and a per-map rescaling does not change a Spearman correlation); each "
        "scorer's maps are also scored with the other's similarity. Quantus and we explain the trained network "
        f"identically (largest difference between the maps: {info['max_map_difference']:.1e}).",
        "",
        f"## After each of our blocks (mean [min, max] over {n} scans)",
        "",
        markdown_table(block_table(table, info)),
        "",
        "Quantus: step = the step of its schedule after which the whole block is re-initialised. It reaches the head "
        f"last, so its `head` row is its fully randomised network and its `attention` row has only the attention "
        f"re-initialised; our fully randomised network is the `{info['stages'][-1]}` row.",
        "",
        "## Fully randomised, per scan (Spearman with the trained network's map)",
        "",
        markdown_table(scan_table(last)),
        "",
        f"* Randomisation steps: ours {len(info['stages'])} blocks, Quantus {len(info['modules'])} modules (one "
        "per module with `reset_parameters`).",
        f"* Passes (fully randomised Spearman < {PASS_BELOW}): ours {share['ours_brain']} scans; Quantus MPRT "
        f"{share['quantus_mprt_volume']}; Quantus's maps scored over the brain {share['quantus_mprt_brain']}"
        + (f"; SmoothMPRT {share['quantus_smooth_mprt_volume']}" if "quantus_smooth_mprt_volume" in share else "")
        + f"; our maps scored over the whole volume {share['ours_volume']}.",
        f"* Lowest over the cascade (mean over scans): ours {last.ours_lowest_brain.mean():.3f} over the brain, "
        f"Quantus MPRT {last.quantus_mprt_lowest_volume.mean():.3f}.",
        f"* Rank agreement over scans (Spearman of our fully randomised similarity with): {agreement}"
        + (
            " (too few scans to mean much; the whole-volume scores differ between scans in the third decimal)."
            if n < 10
            else "."
        ),
        "",
        "## Where they differ and why",
        "",
        differences(table, info, last),
        "",
        "## Reproduce",
        "",
        f"    {command}",
        "",
        "`$RUN`: a 5-fold cross-validation run with `--explain` (`$WORK/runs/axial` of `benchmarks/paper_table.py`, "
        "the run of `quantus_agreement.md`), `$COHORT`: its demo cohort (`$WORK/demo-c55fcddb645d`). Per-scan, "
        "per-step values: "
        "`quantus_randomization.csv`. Machine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (busy with other jobs), torch "
        f"{torch.__version__}, {torch.get_num_threads()} thread; quantus {quantus.__version__}. Run time: {seconds}.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path, help="cross-validation run (fold-<i>/models/model.pt, datalist.json)")
    parser.add_argument("cohort", type=Path, help="the demo cohort (datalist.json, images/)")
    parser.add_argument("--fold", type=int, default=0)
    parser.add_argument("--scans", type=int, default=4, help="first AD test scans of the fold")
    parser.add_argument("--seed", type=int, default=0, help="seed of both randomisations (and of SmoothMPRT's noise)")
    parser.add_argument("--smooth-samples", type=int, default=3, help="SmoothMPRT's nr_samples; 0 leaves it out")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "paper_table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    table, info = scan_rows(args)
    info["smooth_samples"] = args.smooth_samples
    args.out.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out / "quantus_randomization.csv", index=False, float_format="%.6g")
    text = markdown(table, info, args)
    (args.out / "quantus_randomization.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
