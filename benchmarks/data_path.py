"""Benchmark: volumes/s delivered to the network by the compact cache vs a reference-style loader, same 1 mm files.

Two things are timed for each loader, both on the device: the network's input (what ``forward`` gets: the
reference network takes the slice stack, AxialNet a float32 volume batch that it slices itself) and the backbone's
input ``(B, N, 3, S, S)`` (N = 80 central coronal slices of 224 x 224 by default; for AxialNet after its
``SliceStack``, which on a CPU is a large part of the cost):

* ``reference`` (timed first and last; the faster run is the baseline of the speed-ups): what the AXIAL
  reference code does on every epoch, in worker processes: decode the NIfTI (nibabel), normalise it, cut the N
  central slices and resize each one to S x S in a Python loop; the batch is then copied to the device.
* ``decode every epoch``: the bundle before the compact cache (MONAI loading chain on every access; the nested
  Compose kept CacheDataset from caching anything), slices cut on the device by ``SliceStack``; in worker
  processes and in threads (what inference does: it reads each scan once).
* ``compact cache``: ``VolumeCacheDataset`` (disk, uint8, built once before timing and reported separately); the
  crops travel in uint8 and are restored, sliced and resized on the device (``PrepareVolumeBatch`` +
  ``SliceStack``); with thread workers (``ThreadDataLoader``) or worker processes (``DataLoader``), without and with
  the training augmentation of train.json (applied on the device).

    python benchmarks/data_path.py [--device cuda] [--scans 16] [--workers 2] [--quick]

Prints a table and the machine, writes benchmarks/results/data_path[_cuda|_quick].json.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
import torch.nn.functional as F
from common import RESULTS, command, machine, table, write_result, write_scans
from monai.bundle import ConfigParser
from monai.data import DataLoader, ThreadDataLoader
from monai.transforms import Compose

from axial_monai.data import VolumeCacheDataset
from axial_monai.engines import PrepareVolumeBatch
from axial_monai.geometry import central_slice_indices
from axial_monai.networks import SliceStack
from axial_monai.transforms import load_volume


class ReferenceSlices(torch.utils.data.Dataset):
    """The reference code's per-epoch loading: decode, normalise, cut N slices, resize each one in Python."""

    def __init__(self, files: list[Path], plane: int, num_slices: int, image_size: int) -> None:
        self.files, self.plane, self.num_slices, self.image_size = files, plane, num_slices, image_size

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        vol = np.asarray(nib.load(str(self.files[i])).get_fdata(dtype=np.float32))
        vol = (vol - vol.mean()) / vol.std()
        slices = []
        for k in central_slice_indices(vol.shape[self.plane], self.num_slices):
            s = torch.from_numpy(np.ascontiguousarray(np.take(vol, k, axis=self.plane)))[None, None]
            s = F.interpolate(s, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
            slices.append(s[0].expand(3, -1, -1))
        return {"image": torch.stack(slices), "label": 0}


def _train_augmentation() -> Compose:
    parser = ConfigParser()
    parser.read_config(str(Path(__file__).resolve().parents[1] / "bundle/configs/train.json"))
    return Compose(parser.get_parsed_content("train#augmentation"))


def _time_epochs(loader, deliver, epochs: int, device: torch.device) -> tuple[float, int]:
    """Seconds for ``epochs`` passes and the number of volumes delivered."""
    count = 0
    start = time.perf_counter()
    for _ in range(epochs):
        for batch in loader:
            out = deliver(batch)
            count += out.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--scans", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="epochs timed for the cached loaders")
    parser.add_argument("--num_slices", type=int, default=80)
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--plane", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a short check of every code path (4 scans, small)")
    parser.add_argument("--workdir", default=None, help="folder for the scans and the cache (default: a temp dir)")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.quick:
        args.scans, args.epochs, args.num_slices, args.image_size = 4, 1, 8, 64
    device = torch.device(args.device)
    suffix = "_quick" if args.quick else ("_cuda" if device.type == "cuda" else "")
    out = Path(args.out or RESULTS / f"data_path{suffix}.json")
    work = Path(args.workdir or tempfile.mkdtemp(prefix="axial-datapath-"))
    try:
        files = write_scans(work / "scans", args.scans)
        items = [{"image": str(f), "label": i % 2} for i, f in enumerate(files)]
        slicer = SliceStack(args.plane, args.num_slices, args.image_size).to(device)
        pin = device.type == "cuda"
        rows: list[dict] = []
        result = {
            "command": command(),
            "machine": machine(str(device)),
            "settings": {k: v for k, v in vars(args).items() if k not in ("out", "workdir")},
            "scan_grid": list(nib.load(str(files[0])).shape),
            "results": rows,
        }

        def record(name: str, loader, to_network, epochs: int, reference: bool = False) -> None:
            """Time ``epochs`` passes to the network's input, then on to the backbone's input (slices)."""
            row: dict = {"loader": name}
            try:
                seconds, n = _time_epochs(loader, to_network, epochs, device)
                row.update({"volumes": n, "to_network_s": round(seconds, 2), "to_network_vps": n / seconds})
                if not reference:  # the reference's network input already is the slice stack
                    seconds, n = _time_epochs(loader, lambda b: slicer(to_network(b)), epochs, device)
                row.update({"to_backbone_s": round(seconds, 2), "to_backbone_vps": n / seconds})
            except Exception as err:  # record and go on with the other loaders
                row["error"] = f"{type(err).__name__}: {err}"[:300]
            rows.append(row)
            print(row, flush=True)
            write_result(result, out)

        reference = ReferenceSlices(files, args.plane, args.num_slices, args.image_size)
        ref_loader = torch.utils.data.DataLoader(
            reference, batch_size=args.batch_size, num_workers=args.workers, pin_memory=pin
        )
        to_device = lambda b: b["image"].to(device, non_blocking=pin)  # noqa: E731
        record("reference (decode + per-slice resize, processes)", ref_loader, to_device, 1, reference=True)

        prepare = PrepareVolumeBatch()
        restore = lambda b: prepare(b, device, pin)[0]  # noqa: E731
        plain = VolumeCacheDataset(items, load_volume("image"), cache="none")
        loader = DataLoader(plain, batch_size=args.batch_size, num_workers=args.workers, pin_memory=pin)
        record("decode every epoch (MONAI chain, processes)", loader, restore, 1)
        loader = ThreadDataLoader(
            plain, batch_size=args.batch_size, num_workers=args.workers, use_thread_workers=True, pin_memory=pin
        )
        record("decode every epoch (MONAI chain, threads)", loader, restore, 1)

        start = time.perf_counter()
        cached = VolumeCacheDataset(
            items, load_volume("image"), cache_dir=work / "cache", dtype="uint8", num_workers=args.workers
        )
        build_s = time.perf_counter() - start
        threads = ThreadDataLoader(
            cached, batch_size=args.batch_size, num_workers=args.workers, use_thread_workers=True, pin_memory=pin
        )
        processes = DataLoader(cached, batch_size=args.batch_size, num_workers=args.workers, pin_memory=pin)
        record("compact cache (uint8, threads)", threads, restore, args.epochs)
        record("compact cache (uint8, processes)", processes, restore, args.epochs)
        augment = PrepareVolumeBatch(augmentation=_train_augmentation(), seed=0)
        augmented = lambda b: augment(b, device, pin)[0]  # noqa: E731
        record("compact cache + train augmentation on device (threads)", threads, augmented, args.epochs)
        # the reference again: on a shared machine the load changes; its faster run is the baseline
        record("reference, repeated at the end", ref_loader, to_device, 1, reference=True)

        for target in ("network", "backbone"):
            base = max((r.get(f"to_{target}_vps", 0) for r in rows if r["loader"].startswith("reference")), default=0)
            for r in rows:
                if base and f"to_{target}_vps" in r:
                    r[f"to_{target}_speedup"] = round(r[f"to_{target}_vps"] / base, 1)
                    r[f"to_{target}_vps"] = round(r[f"to_{target}_vps"], 2)
        full_mb = np.prod(result["scan_grid"]) * 4 / 2**20
        result["cache_build_seconds"] = round(build_s, 2)
        result["cache_mb_per_scan"] = round(cached.cache_bytes() / len(cached) / 2**20, 2)
        result["float32_mb_per_scan"] = round(float(full_mb), 2)
        columns = ["loader", "volumes", "to_network_vps", "to_network_speedup"]
        print(table(rows, [*columns, "to_backbone_vps", "to_backbone_speedup", "error"]))
        print({k: result[k] for k in ("cache_build_seconds", "cache_mb_per_scan", "float32_mb_per_scan")})
        print(result["machine"])
        print("written", write_result(result, out))
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
