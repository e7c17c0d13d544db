"""The console scripts: ``-h``/``--help`` everywhere, one line per option, the subcommand registry, the
``python -m monai.bundle`` line helper, and the entry points declared in setup.cfg."""

from __future__ import annotations

import ast
import configparser
import importlib
import inspect
import shlex
from pathlib import Path

import pytest

from axial_monai import cli, commandline
from axial_monai.crossval.__main__ import crossval_command
from axial_monai.crossval.__main__ import main as crossval_main

REPO = Path(__file__).resolve().parents[1]


def test_overview_lists_every_subcommand(capsys):
    for argv in (["-h"], ["--help"]):
        assert cli.main(argv) == 0
        out = capsys.readouterr().out
        for name in ("check-bids", "datalist", "report"):
            assert f"  {name} " in out
    assert cli.main([]) == 2  # no subcommand: the overview, and a failing status for scripts
    assert cli.main(["frobnicate"]) == 2
    assert "unknown subcommand 'frobnicate'" in capsys.readouterr().err


def _option_lines(out: str, func) -> None:
    lines = out.splitlines()
    for name, parameter in inspect.signature(func).parameters.items():
        if parameter.default is inspect.Parameter.empty:
            hits = [line for line in lines if line.startswith(f"  {name.upper()} ")]
        else:
            hits = [line for line in lines if line.startswith(f"  --{name} ")]
        assert len(hits) == 1, f"{name}: {hits}"
        assert len(hits[0].split("  ", 2)[-1].strip()) > 10, f"{name} has no description"


@pytest.mark.parametrize("name", list(cli.COMMANDS))
@pytest.mark.parametrize("flag", ["-h", "--help"])
def test_subcommand_help_lists_each_option_on_one_line(name, flag, capsys, tmp_path):
    # help wins wherever it is and whatever else is on the line: nothing runs
    assert cli.main([name, str(tmp_path / "not-there"), flag]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: axial-monai {name} ")
    _option_lines(out, cli.COMMANDS[name])
    assert "  -h, --help " in out


def test_crossval_dash_h_is_help_not_horizon(capsys, tmp_path):
    assert crossval_main(["-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: axial-monai-crossval BIDS_DIR OUTPUT_DIR [OPTIONS]")
    _option_lines(out, crossval_command)
    assert crossval_main([str(tmp_path), str(tmp_path / "out"), "--help"]) == 0
    assert not (tmp_path / "out").exists()


def test_preprocess_help(capsys):
    from axial_monai.preprocess.__main__ import main as preprocess_main
    from axial_monai.preprocess.batch import preprocess_bids

    assert preprocess_main(["-h"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: axial-monai-preprocess BIDS_DIR OUT_DIR [OPTIONS]")
    _option_lines(out, preprocess_bids)


def test_subcommand_registry():
    @cli.subcommand("hello-test")
    def hello(name: str, loud: bool = False) -> int:
        """Say hello.

        Args:
            name: who is greeted by the command.
            loud: shout the greeting at them.
        """
        print(f"hello {name}" + ("!" if loud else ""))
        return 0

    try:
        assert cli.COMMANDS["hello-test"] is hello
        assert "  --loud / --noloud  shout the greeting at them. (default: False)" in commandline.format_help(
            hello, "x"
        )
        with pytest.raises(ValueError, match="defined twice"):
            cli.subcommand("hello-test")(hello)
        assert cli.main(["hello-test", "you", "--loud"]) == 0
    finally:
        cli.COMMANDS.pop("hello-test")


def test_bundle_command_line_round_trips():
    line = commandline.bundle_command(
        "training",
        ["bundle/configs/train.json", "bundle/configs/paper.json"],
        {"dataset_dir": "/data/my adni", "epochs": 5, "class_names": ["sMCI", "pMCI"]},
        meta_file="bundle/configs/metadata.json",
    )
    tokens = shlex.split(line)
    assert tokens[:5] == ["python", "-m", "monai.bundle", "run", "training"]
    options = dict(zip(tokens[5::2], tokens[6::2]))
    assert ast.literal_eval(options["--config_file"]) == ["bundle/configs/train.json", "bundle/configs/paper.json"]
    assert options["--dataset_dir"] == "/data/my adni" and options["--meta_file"] == "bundle/configs/metadata.json"
    assert ast.literal_eval(options["--epochs"]) == 5
    assert ast.literal_eval(options["--class_names"]) == ["sMCI", "pMCI"]
    single = commandline.bundle_command("evaluating", "bundle/configs/train.json", {"eval_split": "test"})
    assert single == "python -m monai.bundle run evaluating --config_file bundle/configs/train.json --eval_split test"


def test_console_scripts_in_setup_cfg():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    scripts = dict(line.split(" = ") for line in config["options.entry_points"]["console_scripts"].strip().splitlines())
    assert scripts["axial-monai"] == "axial_monai.cli:main"
    for target in scripts.values():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function))
    assert "jinja2" in config["options"]["install_requires"]
    assert "*.j2" in config["options.package_data"]["axial_monai.report"]
