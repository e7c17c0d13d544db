"""Command-line plumbing shared by the console scripts: python-fire calls with real ``-h``/``--help`` and the
``python -m monai.bundle`` line equivalent to a bundle run.

python-fire reads ``-h`` as the first option starting with "h" (``--horizon`` in the cross-validation command):
:func:`run_fire` answers ``-h``/``--help`` anywhere on the line with :func:`format_help`, one line per argument taken
from the function's Google ``Args:`` docstring.
"""

from __future__ import annotations

import inspect
import shlex
import sys
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import fire
from fire import docstrings

from .errors import root_cause

__all__ = ["HELP_FLAGS", "USER_ERRORS", "Subcommands", "format_help", "run_fire", "bundle_command"]

#: the flags that always mean help.
HELP_FLAGS = ("-h", "--help")
#: exceptions that are the user's mistake (bad input or settings, a missing file): one line, no traceback.
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, RuntimeError)


def _metavar(parameter: inspect.Parameter) -> str:
    return parameter.name.upper()


def format_help(func: Callable, prog: str) -> str:
    """Help text of a fire function: usage, summary, then one line per argument from its ``Args:`` docstring.

    Args:
        func: the function (its signature and Google docstring).
        prog: command name shown in the usage line.
    """
    info = docstrings.parse(inspect.getdoc(func) or "")
    described = {arg.name: " ".join((arg.description or "").split()) for arg in info.args or []}
    signature = inspect.signature(func)
    positional, options, usage_names = [], [], []
    for parameter in signature.parameters.values():
        if parameter.kind == parameter.VAR_KEYWORD:
            continue
        text = described.get(parameter.name, "")
        if parameter.kind == parameter.VAR_POSITIONAL:  # *scans: any number of them, shown as SCANS...
            positional.append((_metavar(parameter), text))
            usage_names.append(f"{_metavar(parameter)}...")
            continue
        if parameter.default is inspect.Parameter.empty:
            positional.append((_metavar(parameter), text))
            usage_names.append(_metavar(parameter))
            continue
        if isinstance(parameter.default, bool):
            flag = f"--{parameter.name} / --no{parameter.name}"
        else:
            flag = f"--{parameter.name} {_metavar(parameter)}"
        options.append((flag, text if "default" in text else f"{text} (default: {parameter.default!r})"))
    options.append(("-h, --help", "show this help and exit"))
    width = min(max(len(name) for name, _ in positional + options) + 2, 34)

    def line(name: str, text: str) -> str:
        return f"  {name:<{width}}{text}" if len(name) < width else f"  {name}  {text}"

    usage = " ".join([prog, *usage_names, "[OPTIONS]"])
    lines = [f"usage: {usage}", "", info.summary or ""]
    if positional:
        lines += ["", "arguments:"] + [line(name, text) for name, text in positional]
    lines += ["", "options:"] + [line(name, text) for name, text in options]
    return "\n".join(lines)


def run_fire(func: Callable, argv: Sequence[str], prog: str, serialize: Callable | None = None) -> Any:
    """Call ``func`` with the command line ``argv`` through python-fire, answering ``-h``/``--help`` first.

    Args:
        func: the command function.
        argv: its arguments (without the program or subcommand name).
        prog: name used in help and error messages.
        serialize: passed to ``fire.Fire`` (e.g. ``lambda _: None`` to print nothing of the return value).

    Returns:
        the function's return value, or ``None`` after printing help.
    """
    if any(arg in HELP_FLAGS for arg in argv):
        print(format_help(func, prog))
        return None
    return fire.Fire(func, command=list(argv), name=prog, serialize=serialize)


def bundle_command(
    run_id: str, config_files: str | Sequence[str], settings: Mapping[str, Any] | None = None, **files: str
) -> str:
    """The ``python -m monai.bundle run ...`` line equivalent to a bundle run, ready to paste into a shell.

    Args:
        run_id: the config's run list, e.g. ``"training"``, ``"evaluating"``, ``"inferring"``.
        config_files: one config or configs merged in order.
        settings: overrides by id, e.g. ``{"dataset_dir": "/data", "epochs": 100}`` (non-strings as Python
            literals, as monai.bundle parses them).
        files: ``meta_file``, ``logging_file`` and other ``monai.bundle run`` options that take a path.

    Example:
        >>> bundle_command("training", ["train.json", "paper.json"], {"epochs": 5})
        'python -m monai.bundle run training --config_file "[\\'train.json\\',\\'paper.json\\']" --epochs 5'
    """
    configs = [config_files] if isinstance(config_files, str) else [str(c) for c in config_files]
    config = configs[0] if len(configs) == 1 else "[" + ",".join(repr(c) for c in configs) + "]"
    parts = ["python", "-m", "monai.bundle", "run", run_id, "--config_file", config]
    for key, value in {**files, **dict(settings or {})}.items():
        parts += [f"--{key}", value if isinstance(value, str) else repr(value)]
    quoted = [parts[0], *(_quote(p) for p in parts[1:])]
    return " ".join(quoted)


def _quote(part: str) -> str:
    # double quotes for Python literals with single quotes inside, as the bundle docs write them
    if "'" in part and '"' not in part and "$" not in part and "`" not in part and "\\" not in part:
        return f'"{part}"'
    return shlex.quote(part)


class Subcommands(dict):
    """The subcommands of one console script (name -> function, in the order registered) and its ``main``.

    Example:
        >>> COMMANDS = Subcommands("axial-monai")
        >>> @COMMANDS.register("hello")
        ... def hello(name: str = "world") -> int:
        ...     # its docstring: a summary line and a Google "Args:" section
        ...     return 0
    """

    def __init__(self, prog: str) -> None:
        super().__init__()
        self.prog = prog

    def register(self, name: str) -> Callable[[Callable[..., int]], Callable[..., int]]:
        """Register the decorated function as the subcommand ``name``."""

        def register(func: Callable[..., int]) -> Callable[..., int]:
            if name in self:
                raise ValueError(f"The subcommand {name!r} is defined twice.")
            self[name] = func
            return func

        return register

    def overview(self) -> str:
        """The script's help: one line per subcommand, the first line of its docstring."""
        width = max(len(name) for name in self) + 2
        lines = [f"usage: {self.prog} SUBCOMMAND [ARGS] [OPTIONS]   ({self.prog} SUBCOMMAND --help for its options)"]
        lines += ["", "subcommands:"]
        for name, func in self.items():
            lines.append(f"  {name:<{width}}{docstrings.parse(inspect.getdoc(func) or '').summary}")
        return "\n".join(lines)

    def main(self, argv: Sequence[str] | None = None) -> int:
        """Run the script with ``argv`` (default ``sys.argv[1:]``) and return the exit status: 2 with one line
        ``PROG SUBCOMMAND: error: ...`` for bad input, never a traceback."""
        argv = list(sys.argv[1:] if argv is None else argv)
        if not argv or argv[0] in HELP_FLAGS:
            print(self.overview())
            return 0 if argv else 2
        name, rest = argv[0], argv[1:]
        if name not in self:
            print(f"{self.prog}: unknown subcommand {name!r}; choose one of {', '.join(self)}.", file=sys.stderr)
            return 2
        prog = f"{self.prog} {name}"
        try:
            status = run_fire(self[name], rest, prog, serialize=lambda _: None)
        except USER_ERRORS as err:
            print(f"{prog}: error: {root_cause(err)}", file=sys.stderr)
            return 2
        except fire.core.FireExit as exit_:
            return int(exit_.code or 0)
        return 0 if status is None else int(status)
