"""Mutation testing (mutmut) of the modules where a silent error would corrupt results.

Each group of modules is mutated on its own, against only the fast test files (or test ids) that check it, in a
scratch copy of the working tree (``git ls-files``: tracked and untracked, not ignored) with its own
``[tool.mutmut]`` settings, so groups do not share mutmut's test-to-function map and no slow training test is
run for a mutant. mutmut then runs, for every mutant, only the selected tests that call the mutated function.

Lines that only build the text of an error, a warning or a log message are not mutated
(``do_not_mutate_patterns``): a changed message is no silent error (the tests check the important part of each
message with ``match=``), and mutating every message would swamp the score with mutants nobody would test.

Not part of CI: it takes tens of minutes on 2 cores. Developer command (from the repository root)::

    pip install -e ".[mutation]"           # mutmut >= 3.8
    nice -n 10 python benchmarks/mutation.py > mutation.log 2>&1          # every group
    python benchmarks/mutation.py --group metrics --group splits          # some groups

Writes ``benchmarks/results/mutation.json``: per group the modules, the tests, the counts per mutmut status,
the score (killed / all mutants) and the diff of every mutant that was not killed. A group run with ``--group``
replaces only its own entry. ``benchmarks/results/mutation.md`` has the table and why each survivor is left.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Group:
    """Modules mutated together and the tests that must kill their mutants."""

    modules: tuple[str, ...]
    tests: tuple[str, ...]


GROUPS = {
    "metrics": Group(("axial_monai/metrics.py",), ("tests/test_metrics.py", "tests/test_confidence.py")),
    "slicing_geometry": Group(
        ("axial_monai/geometry.py", "axial_monai/networks/slicing.py"),
        (
            "tests/test_geometry.py",
            "tests/test_networks.py::test_too_many_slices_names_both_numbers",
            "tests/test_networks.py::test_a_network_without_spatial_shape_takes_any_grid",
        ),
    ),
    "region_metrics": Group(("axial_monai/explain/regions.py",), ("tests/test_region_metrics.py",)),
    "clinica_labels": Group(("axial_monai/data/clinica.py",), ("tests/test_clinica.py",)),
    "splits_leakage": Group(
        ("axial_monai/crossval/splits.py", "axial_monai/crossval/leakage.py"),
        (
            "tests/test_splits.py",
            "tests/test_crossval.py::test_generated_folds_never_share_a_subject_between_splits",
            "tests/test_crossval.py::test_assignment_is_seeded_stratified_and_keeps_fixed_subjects",
            "tests/test_crossval.py::test_validation_split_is_about_a_fifth_of_the_training_subjects",
            "tests/test_crossval.py::test_leakage_guard_names_the_subject_and_splits",
            "tests/test_crossval.py::test_runner_refuses_a_leaky_fold_before_training",
        ),
    ),
    "cohort_map_geometry": Group(
        ("axial_monai/explain/cohort.py", "axial_monai/explain/volumes.py"), ("tests/test_explain_volumes.py",)
    ),
}

#: lines whose expressions are not mutated: the text of errors, warnings and log messages (see the docstring)
MESSAGE_LINES = [
    r"^\s*raise \w+\(",
    r"^\s*(rf|fr|f|r)?\"[^\"]*\"\s*\)?,?\s*$",  # a line that is one string: the rest of a message
    r"^\s*warnings\.warn\(",
    r"^\s*logger\.\w+\(",
]
#: a mutant's tests may take this many times their clean duration before it counts as a timeout (mutmut's
#: default, 15, turns slow runs on a busy 2-core machine into false "timeout" kills)
TIMEOUT_MULTIPLIER = 60.0
#: mutmut exit statuses counted as killed (as mutmut's own score does)
KILLED = ("killed", "timeout")


def _source_files() -> list[str]:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True, capture_output=True, text=True
    )
    return [f for f in listed.stdout.splitlines() if (ROOT / f).is_file()]


def _toml_list(values) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def _scratch_copy(name: str, group: Group, parent: Path) -> Path:
    """A copy of the working tree with this group's ``[tool.mutmut]`` settings appended to ``pyproject.toml``."""
    work = parent / name
    for rel in _source_files():
        target = work / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, target)
    settings = {
        "source_paths": ["axial_monai/"],
        "only_mutate": list(group.modules),
        "also_copy": ["bundle/"],
        "pytest_add_cli_args_test_selection": list(group.tests),
        "pytest_add_cli_args": ["-p", "no:cacheprovider", "-W", "ignore"],
        "do_not_mutate_patterns": MESSAGE_LINES,
    }
    numbers = {"timeout_multiplier": TIMEOUT_MULTIPLIER}
    lines = ["", "[tool.mutmut]"] + [f"{key} = {_toml_list(value)}" for key, value in settings.items()]
    lines += [f"{key} = {value}" for key, value in numbers.items()]
    with open(work / "pyproject.toml", "a") as f:
        f.write("\n".join(lines) + "\n")
    return work


def _mutmut(work: Path, *args: str, log=None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the mutated copy must be imported
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    exe = shutil.which("mutmut") or "mutmut"
    done = subprocess.run([exe, *args], cwd=work, env=env, capture_output=True, text=True)
    if log is not None:
        log.write(done.stdout + done.stderr)
        log.flush()
    if done.returncode != 0 and args[0] != "run":
        raise RuntimeError(f"mutmut {' '.join(args)} failed in {work}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done.stdout


def run_group(name: str, group: Group, parent: Path, max_children: int) -> dict:
    """Mutate one group in a scratch copy; return its counts, score and the diffs of the mutants not killed."""
    work = _scratch_copy(name, group, parent)
    start = time.perf_counter()
    with open(work / "mutmut.log", "w") as log:
        _mutmut(work, "run", "--max-children", str(max_children), log=log)
        results = _mutmut(work, "results", "--all", "true")
    seconds = time.perf_counter() - start
    status = dict(re.findall(r"^\s+(\S+): (.+?)\s*$", results, flags=re.M))
    if not status:
        raise RuntimeError(f"mutmut produced no mutants for {name}; see {work / 'mutmut.log'}")
    counts: dict[str, int] = {}
    for value in status.values():
        counts[value] = counts.get(value, 0) + 1
    killed = sum(counts.get(s, 0) for s in KILLED)
    not_killed = sorted(m for m, s in status.items() if s not in KILLED)
    per_module = {}  # mutant names start with the module's dotted path (``axial_monai.metrics.x_auc__mutmut_3``)
    for module in group.modules:
        prefix = module.removesuffix(".py").replace("/", ".") + "."
        mine = [s for m, s in status.items() if m.startswith(prefix)]
        done = sum(s in KILLED for s in mine)
        per_module[module] = {"total": len(mine), "killed": done, "score": round(done / len(mine), 4) if mine else None}
    return {
        "modules": list(group.modules),
        "tests": list(group.tests),
        "total": len(status),
        "killed": killed,
        "counts": dict(sorted(counts.items())),
        "score": round(killed / len(status), 4),
        "per_module": per_module,
        "seconds": round(seconds, 1),
        "not_killed": {m: {"status": status[m], "diff": _mutmut(work, "show", m)} for m in not_killed},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--group", action="append", choices=sorted(GROUPS), help="group(s) to run (default: all)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "mutation.json"))
    parser.add_argument("--max-children", type=int, default=2, help="parallel mutant runs")
    parser.add_argument("--keep", action="store_true", help="keep the scratch copies (to browse with mutmut)")
    args = parser.parse_args()

    out = Path(args.out)
    report = json.loads(out.read_text()) if out.is_file() else {"groups": {}}
    parent = Path(tempfile.mkdtemp(prefix="axial-mutation-"))
    try:
        for name in args.group or list(GROUPS):
            print(f"[{time.strftime('%H:%M:%S')}] {name}: mutating {', '.join(GROUPS[name].modules)}", flush=True)
            result = run_group(name, GROUPS[name], parent, args.max_children)
            report["groups"][name] = result
            print(
                f"[{time.strftime('%H:%M:%S')}] {name}: {result['killed']}/{result['total']} killed "
                f"({100 * result['score']:.1f} %), {result['counts']}, {result['seconds']:.0f} s; per module: "
                + ", ".join(f"{m} {v['killed']}/{v['total']}" for m, v in result["per_module"].items()),
                flush=True,
            )
            report.update(
                command="nice -n 10 python benchmarks/mutation.py",
                mutmut=version("mutmut"),
                python=platform.python_version(),
                machine={"cpu_count": os.cpu_count(), "processor": platform.machine()},
                message_lines_not_mutated=MESSAGE_LINES,
            )
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    finally:
        if args.keep:
            print(f"scratch copies kept in {parent}")
        else:
            shutil.rmtree(parent, ignore_errors=True)
    print(f"{'group':<22}{'killed/total':>14}{'score':>9}")
    for name, result in report["groups"].items():
        print(f"{name:<22}{result['killed']:>7}/{result['total']:<6}{100 * result['score']:>8.1f}%")
    sys.exit(0)


if __name__ == "__main__":
    main()
