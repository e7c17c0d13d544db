"""Checkpoints are never unpickled: a file that carries a pickled object is refused on every loading path.

Each payload is a real pickled object whose ``__reduce__`` would create a marker file when unpickled. Every way the
product loads a checkpoint (run settings, weights, the bundle's inference with ``ckpt_path``, ``axial-monai predict
--model`` with a run or an exported bundle, ``init_ckpt`` transfer, ``pretrained=<file>``) must refuse it with one
line naming the file, and the marker must not exist afterwards: the payload's code never ran.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from bundle_utils import TINY, workflow
from monai.bundle import ConfigParser

from axial_monai import cli
from axial_monai.configs import config_path
from axial_monai.errors import InputError
from axial_monai.networks import AxialNet
from axial_monai.networks.transfer import init_from_checkpoint
from axial_monai.run import RunSettings, load_run_settings, load_weights, read_checkpoint


class SideEffect:
    """Unpickling this creates ``marker`` (``pathlib.Path.touch``): the proof that the payload's code ran."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def _root_error(err: BaseException) -> BaseException:
    """The first error of a chain (monai.bundle wraps errors raised while a config is parsed)."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


#: where the pickled object sits: the whole file, the run settings entry, or inside the weights
PAYLOADS = {
    "whole-file": lambda marker: SideEffect(marker),
    "in-run-settings": lambda marker: {"model": {"w": torch.ones(2)}, "run": {"format": 1, "x": SideEffect(marker)}},
    "in-weights": lambda marker: {"model": {"w": torch.ones(2), "hook": SideEffect(marker)}, "run": {"format": 1}},
}


@pytest.fixture(params=sorted(PAYLOADS))
def evil(request, tmp_path) -> tuple[Path, Path]:
    """``(checkpoint with a pickled payload, marker its unpickling would create)``, saved with ``torch.save``."""
    marker = tmp_path / "payload-ran"
    ckpt = tmp_path / "run" / "models" / "model.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save(PAYLOADS[request.param](marker), ckpt)
    # the payload is real: an unrestricted load runs it (this proves the marker test can fail)
    probe = tmp_path / "probe" / "model.pt"
    probe.parent.mkdir()
    torch.save(PAYLOADS[request.param](tmp_path / "probe-ran"), probe)
    torch.load(probe, weights_only=False)
    assert (tmp_path / "probe-ran").exists()
    return ckpt, marker


def _assert_refused(message: str, ckpt: Path, marker: Path) -> None:
    assert str(ckpt) in message and "pickled Python object" in message and "refused" in message, message
    assert "\n" not in message.strip(), message
    assert "weights_only=False" not in message  # never advise the unsafe load
    assert not marker.exists(), "the pickled payload ran"


def test_run_settings_and_weights_refuse_a_pickled_payload(evil):
    ckpt, marker = evil
    for load in (read_checkpoint, load_weights, RunSettings.load, load_run_settings):
        with pytest.raises(InputError) as err:
            load(ckpt)
        _assert_refused(str(err.value), ckpt, marker)
    with pytest.raises(InputError) as err:  # the run folder, as evaluate/inference/explain accept it
        load_run_settings(ckpt.parents[1])
    _assert_refused(str(err.value), ckpt, marker)


def test_bundle_inference_with_ckpt_path_refuses_it(evil, tmp_path):
    ckpt, marker = evil
    wf = workflow(["inference"], "infer", ckpt_path=str(ckpt), output_dir=str(tmp_path / "out"), **TINY)
    with pytest.raises(Exception) as err:
        wf.initialize()
        wf.run()
    root = _root_error(err.value)
    assert isinstance(root, InputError)
    _assert_refused(str(root), ckpt, marker)
    assert not (tmp_path / "out" / "inference").exists()


def test_predict_refuses_it_for_a_run_and_an_exported_bundle(evil, tmp_path, capsys):
    ckpt, marker = evil
    scan = tmp_path / "scan.nii.gz"
    scan.write_bytes(b"never read: the model is refused first")
    bundle = tmp_path / "bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "configs" / "inference.json").write_text("{}")
    (bundle / "models").mkdir()
    (bundle / "models" / "model.pt").write_bytes(ckpt.read_bytes())
    for model, named in ((ckpt, ckpt), (ckpt.parents[1], ckpt), (bundle, bundle / "models" / "model.pt")):
        out = tmp_path / f"predictions-{model.name}"
        status = cli.main(["predict", str(scan), "--model", str(model), "--out", str(out)])
        stderr = capsys.readouterr().err
        assert status == 2 and "Traceback" not in stderr
        assert stderr.startswith("axial-monai predict: error: The checkpoint")
        _assert_refused(stderr.removeprefix("axial-monai predict: error: "), named.resolve(), marker)


def test_transfer_and_pretrained_refuse_it(evil, tmp_path):
    ckpt, marker = evil
    net = AxialNet(backbone="resnet18", num_slices=2, image_size=32, pretrained="none")
    with pytest.raises(InputError) as err:
        init_from_checkpoint(net, ckpt)
    _assert_refused(str(err.value), ckpt, marker)
    # the training config's init_ckpt (double transfer learning) goes through the same reader
    parser = ConfigParser()
    parser.read_config(str(config_path("train")))
    parser.update({"init_ckpt": str(ckpt), "device": "$torch.device('cpu')", "num_slices": 2, "image_size": 32})
    with pytest.raises(Exception) as err:
        parser.get_parsed_content("local_network")
    root = _root_error(err.value)
    assert isinstance(root, InputError)
    _assert_refused(str(root), ckpt, marker)
    with pytest.raises(InputError) as err:
        AxialNet(backbone="resnet18", num_slices=2, image_size=32, pretrained=str(ckpt))
    _assert_refused(str(err.value), ckpt, marker)


def test_transfer_from_another_architecture_is_refused(tmp_path):
    """init_ckpt of a resnet34 run into a resnet18 network: one message naming the file and the mismatch."""
    other = tmp_path / "resnet34.pt"
    torch.save(
        {"model": AxialNet(backbone="resnet34", num_slices=2, image_size=32, pretrained="none").state_dict()}, other
    )
    net = AxialNet(backbone="resnet18", num_slices=2, image_size=32, pretrained="none")
    before = {k: v.clone() for k, v in net.state_dict().items()}
    with pytest.raises(InputError, match=r"resnet34\.pt does not match AxialNet .*same backbone") as err:
        init_from_checkpoint(net, other)
    assert "\n" not in str(err.value)
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())  # nothing was half-copied


def test_a_non_checkpoint_file_is_one_line(tmp_path):
    text = tmp_path / "model.pt"
    text.write_text("not a checkpoint\n" * 3)
    with pytest.raises(InputError, match=r"model\.pt: it is not a torch checkpoint or it is damaged") as err:
        read_checkpoint(text)
    assert "\n" not in str(err.value)
