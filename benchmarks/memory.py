"""Benchmark: peak RSS of the bundle on a synthetic 1 mm cohort: training one epoch on 2,000 scans, inference on 100.

The cohort: a few 1 mm scans (193 x 229 x 193) made from the real MNI 2009c template, each with its own intensity
scale, shift and noise, then hard-linked under 2,000 training names (+ validation and test names): every name is
its own file for the bundle (its own decode and cache entry) but the disk holds only the few originals. Check the
free space first (``df -h``): the disk cache of 2,000 scans takes about 8 GB.

* ``train``: ``python -m monai.bundle run training`` as a user runs it (train.json with its defaults: disk cache,
  uint8, thread workers), one epoch of a tiny model (resnet18, 6 slices of 32 px), in a fresh process: cache
  build, epoch, validation and test evaluation. The random augmentation is switched off in this phase only:
  on a CPU an affine resampling of a 1 mm volume takes seconds (on a GPU it runs on the device), which would make
  the epoch last hours on a shared 2-core machine; its memory is measured by the next phase. A naive in-RAM
  float32 cache would need ~44 MB per scan (measured in issue 10), ~88 GB for 2,000 scans.
* ``train_augmented``: the same cohort and cache (built by ``train``) with the default augmentation (on the
  device, here the CPU), for the first ``--aug_iterations`` iterations: what augmentation adds, per batch.
* ``infer``: inference.json over 100 scans with the trained checkpoint; RSS after every batch.

RSS is sampled every 0.25 s and after every batch, summed over the whole process tree (worker processes
included; pages they share with the main process count twice, so with worker processes the sum is an upper
bound), plus ``ru_maxrss`` (peak RSS) of the main process.

    python benchmarks/memory.py [--scans 2000] [--infer 100] [--workdir /tmp/axial-memory] [--quick]

Prints a table and the machine, writes benchmarks/results/memory[_quick].json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from common import RESULTS, ROOT, command, link_scans, machine, peak_rss_mb, table, write_result, write_scans

from axial_monai.configs import CONFIG_DIR as CONFIGS  # noqa: E402

TINY = {"backbone": "resnet18", "num_slices": 6, "image_size": 32, "epochs": 1}


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


def _memory_mb(pid: int, key: str) -> float:
    """``VmRSS`` (from status) or ``Pss`` (from smaps_rollup) of a process, MB; 0 if it is gone."""
    name = f"/proc/{pid}/status" if key == "VmRSS:" else f"/proc/{pid}/smaps_rollup"
    try:
        for line in Path(name).read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def tree_rss_mb(pid: int, key: str = "VmRSS:") -> float:
    """Sum over a process and all its descendants of their RSS (``key="VmRSS:"``: libraries shared by a parent
    and its worker processes count in each, an upper bound) or PSS (``"Pss:"``: shared pages split), MB."""
    total, todo = 0.0, [pid]
    while todo:
        p = todo.pop()
        total += _memory_mb(p, key)
        todo += _children(p)
    return total


class Sampler(threading.Thread):
    """Samples this process tree's RSS in the background."""

    def __init__(self, interval: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.interval, self.samples, self.stop = interval, [], threading.Event()

    def run(self) -> None:
        start = time.perf_counter()
        while not self.stop.is_set():
            self.samples.append((round(time.perf_counter() - start, 2), round(tree_rss_mb(os.getpid()), 1)))
            time.sleep(self.interval)


def _cohort(work: Path, n_train: int, n_small: int, n_infer: int, n_distinct: int) -> Path:
    originals = write_scans(work / "originals", n_distinct)
    names = {
        "training": link_scans(originals, work / "images", n_train, "train"),
        "validation": link_scans(originals, work / "images", n_small, "val"),
        "test": link_scans(originals, work / "images", n_small, "test"),
        "infer": link_scans(originals, work / "images", n_infer, "new"),
    }
    datalist = {
        split: [{"image": str(p.relative_to(work)), "label": i % 2} for i, p in enumerate(paths)]
        for split, paths in names.items()
    }
    path = work / "datalist.json"
    path.write_text(json.dumps(datalist))
    return path


def _phase(phase: str, work: Path, iterations: int = 0) -> dict:
    """Run one phase in this (fresh) process and return its measurements."""
    import torch
    from ignite.engine import Events
    from monai.bundle import ConfigWorkflow

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    sampler = Sampler()
    sampler.start()
    per_batch: list[float] = []
    common = {"output_dir": str(work / "run"), "num_workers": 2, **TINY}
    if phase.startswith("train"):
        if phase == "train_augmented":
            variant = {"output_dir": str(work / "run_augmented")}
        else:
            variant = {"train#augmentation": []}
        wf = ConfigWorkflow(
            config_file=str(CONFIGS / "train.json"),
            meta_file=str(CONFIGS / "metadata.json"),
            logging_file=str(CONFIGS / "logging.conf"),
            workflow_type="train",
            dataset_dir=str(work),
            datalist=str(work / "datalist.json"),
            cache_dir=str(work / "cache"),
            **{**common, **variant},
        )
        engine_id = "train#trainer"
    else:
        wf = ConfigWorkflow(
            config_file=str(CONFIGS / "inference.json"),
            meta_file=str(CONFIGS / "metadata.json"),
            logging_file=str(CONFIGS / "logging.conf"),
            workflow_type="infer",
            input=str(work / "datalist.json"),
            datalist_key="infer",
            **{k: v for k, v in common.items() if k != "epochs"},
        )
        engine_id = "evaluator"
    start = time.perf_counter()
    wf.initialize()
    engine = wf.parser.get_parsed_content(engine_id)
    built = time.perf_counter() - start
    after_build = tree_rss_mb(os.getpid())
    engine.add_event_handler(Events.ITERATION_COMPLETED, lambda e: per_batch.append(tree_rss_mb(os.getpid())))
    if phase == "train_augmented":  # the trainer alone, for the first iterations
        engine.add_event_handler(Events.ITERATION_COMPLETED(once=iterations), lambda e: e.terminate())
        engine.run()
    else:
        wf.run()
    wf.finalize()
    sampler.stop.set()
    sampler.join()
    samples = [s[1] for s in sampler.samples]
    return {
        "phase": phase,
        "seconds": round(time.perf_counter() - start, 1),
        "setup_seconds": round(built, 1),
        "peak_tree_rss_mb": max([*samples, *per_batch]),
        "main_ru_maxrss_mb": round(peak_rss_mb(), 1),
        "rss_after_setup_mb": round(after_build, 1),
        "rss_per_batch_mb": [round(v, 1) for v in per_batch],
        "rss_timeline": sampler.samples[:: max(1, len(sampler.samples) // 400)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=2000, help="training scans")
    parser.add_argument("--small", type=int, default=16, help="validation and test scans")
    parser.add_argument("--infer", type=int, default=100, help="scans for inference")
    parser.add_argument("--distinct", type=int, default=8, help="distinct files behind the names")
    parser.add_argument("--workdir", default="/tmp/axial-memory")
    parser.add_argument("--aug_iterations", type=int, default=100, help="iterations of the train_augmented phase")
    parser.add_argument("--keep", action="store_true", help="keep the cohort, cache and run")
    parser.add_argument("--quick", action="store_true", help="every code path, small (40 training scans)")
    parser.add_argument("--phase", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    work = Path(args.workdir)
    if args.phase:
        print("RESULT " + json.dumps(_phase(args.phase, work, args.aug_iterations)))
        return
    if args.quick:
        args.scans, args.small, args.infer, args.distinct, args.aug_iterations = 40, 4, 10, 2, 5
    out = Path(args.out or RESULTS / f"memory{'_quick' if args.quick else ''}.json")
    work.parent.mkdir(parents=True, exist_ok=True)
    free_gb = shutil.disk_usage(work.parent).free / 2**30
    need_gb = args.scans * 4.2 / 1024 + 1
    if free_gb < need_gb + 5:
        raise SystemExit(f"{work.parent} has {free_gb:.0f} GB free; the cache needs about {need_gb:.0f} GB (+5 spare).")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    try:
        _cohort(work, args.scans, args.small, args.infer, args.distinct)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        phases = {}
        for phase in ("train", "train_augmented", "infer"):
            cmd = [sys.executable, __file__, "--phase", phase, "--workdir", str(work)]
            cmd += ["--aug_iterations", str(args.aug_iterations)]
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
            lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
            if done.returncode or not lines:
                raise SystemExit(f"phase {phase} failed:\n{done.stderr[-3000:]}")
            phases[phase] = json.loads(lines[-1][len("RESULT ") :])
            print(phase, {k: v for k, v in phases[phase].items() if not k.startswith("rss_")}, flush=True)
        cache_gb = sum(f.stat().st_size for f in (work / "cache").glob("*.npy")) / 2**30
        infer = phases["infer"]["rss_per_batch_mb"]
        warm = max(1, len(infer) // 10) - 1  # the batch after which ~10 % of the scans are done
        rows = [
            {
                "phase": f"train 1 epoch, {args.scans} scans (cache build + epoch + val/test), no augmentation",
                "seconds": phases["train"]["seconds"],
                "peak_rss_gb": round(phases["train"]["peak_tree_rss_mb"] / 1024, 2),
                "limit_gb": 6.0,
            },
            {
                "phase": f"train with augmentation, first {args.aug_iterations} iterations (cache built)",
                "seconds": phases["train_augmented"]["seconds"],
                "peak_rss_gb": round(phases["train_augmented"]["peak_tree_rss_mb"] / 1024, 2),
                "limit_gb": 6.0,
            },
            {
                "phase": f"inference, {args.infer} scans",
                "seconds": phases["infer"]["seconds"],
                "peak_rss_gb": round(phases["infer"]["peak_tree_rss_mb"] / 1024, 2),
                "limit_gb": 3.0,
            },
        ]
        result = {
            "command": command(),
            "machine": machine("cpu"),
            "settings": {"train_scans": args.scans, "val_test_scans": args.small, "infer_scans": args.infer, **TINY},
            "cache_gb_on_disk": round(cache_gb, 2),
            "naive_float32_cache_gb": round(args.scans * 44 / 1024, 1),
            "inference_rss_growth_after_warmup": round(max(infer[warm:]) / infer[warm] - 1, 4),
            "results": rows,
            "phases": phases,
        }
        print(table(rows, ["phase", "seconds", "peak_rss_gb", "limit_gb"]))
        keys = ("cache_gb_on_disk", "naive_float32_cache_gb", "inference_rss_growth_after_warmup")
        print({k: result[k] for k in keys})
        print(result["machine"])
        print("written", write_result(result, out))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
