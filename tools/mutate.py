"""Mutation testing of the modules where a silent change hurts most (``make mutate``).

Runs mutmut (pinned in inst/python/requirements-dev.txt) one target at a time,
each in its own scratch folder under ``build/mutate/<target>``, with only the
fast pytest files that exercise that target, and prints killed / survived /
timeout / no-tests counts per target (also written to
``build/mutate/summary.json``).

Usage::

    make mutate                                   # every target
    make mutate TARGETS="spec stepcontract"       # some of them
    .venv/bin/python tools/mutate.py --list       # the targets, their files and tests
    .venv/bin/python tools/mutate.py --sample 60 bootstrapper   # a seeded sample of the mutants

Why a scratch folder: mutmut names a mutant after its module path relative to
``./``, ``src/`` or ``source/``; amlr's package lives in ``inst/python``. The
scratch folder holds the package as ``src/amlr`` (what mutmut mutates and puts
on ``sys.path``), and ``mutants/inst/python`` is a link to ``mutants/src`` so
the tests that start ``inst/python/amlr/bootstrapper.py`` as a subprocess run
the mutated file too (the trampolines read ``MUTANT_UNDER_TEST`` from the
environment the subprocess inherits).

Mutants that only a subprocess reaches show as "no tests" (mutmut selects the
tests per mutant from in-process coverage); they are counted and reported, not
hidden.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PKG = REPO / "inst" / "python" / "amlr"
TESTS = REPO / "tests" / "python"
WORK = REPO / "build" / "mutate"


@dataclass
class Target:
    files: list[str]
    """Files of the package (relative to amlr/) that are mutated."""
    tests: list[str]
    """The pytest files (relative to tests/python) that run against each mutant."""
    functions: list[str] = field(default_factory=list)
    """When set, only mutants of these functions (mutmut name globs, e.g. ``amlr.x.x_redact*``)."""


TARGETS: dict[str, Target] = {
    "spec": Target(["spec.py"], ["test_spec.py", "test_spec_rules.py", "test_stepcontract.py"]),
    "registry": Target(["registry.py"], ["test_registry.py"]),
    "bootstrapper": Target(["bootstrapper.py"], ["test_bootstrapper.py", "test_stepcontract.py", "test_redaction.py"]),
    "snapshot": Target(["snapshot.py", "ignore.py"], ["test_snapshot.py", "test_ignore.py"]),
    "redaction": Target(
        ["bootstrapper.py", "backends/azureml_v2.py", "backends/azureml.py"],
        ["test_redaction.py"],
        ["amlr.bootstrapper.x_redact*", "amlr.backends.azureml_v2.x_redact*",
         "amlr.backends.azureml_v2.x__secret_values*", "amlr.backends.azureml_v2.x__detail*",
         "amlr.backends.azureml.x__scrub*",
         "amlr.backends.azureml.x__secrets*", "amlr.backends.azureml.x__remote_failure*"],
    ),
    "stepcontract": Target(["stepcontract.py"], ["test_stepcontract.py"]),
    "stepcode": Target(["stepcode.py"], ["test_stepcontract.py", "test_stepcode.py"]),
}

STATUS = {1: "killed", 3: "killed", 0: "survived", 5: "no tests", 33: "no tests", 34: "skipped",
          36: "timeout", 24: "timeout", -24: "timeout", 152: "timeout", 255: "timeout",
          37: "killed"}


def _setup(name: str, target: Target) -> Path:
    work = WORK / name
    if work.exists():
        shutil.rmtree(work)
    (work / "src").mkdir(parents=True)
    shutil.copytree(PKG, work / "src" / "amlr", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copytree(TESTS, work / "tests" / "python", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    shutil.copy2(REPO / "pytest.ini", work / "pytest.ini")
    only = "\n    ".join(f"src/amlr/{f}" for f in target.files)
    tests = "\n    ".join(f"tests/python/{t}" for t in target.tests)
    (work / "setup.cfg").write_text(
        "[mutmut]\n"
        "source_paths = src\n"
        f"only_mutate =\n    {only}\n"
        f"pytest_add_cli_args_test_selection =\n    {tests}\n"
        "pytest_add_cli_args =\n    -p\n    no:cacheprovider\n    -q\n"
        "also_copy =\n    pytest.ini\n"
        "timeout_multiplier = 5.0\n"
        "timeout_constant = 10.0\n",
        encoding="utf-8",
    )
    (work / "mutants" / "inst").mkdir(parents=True)
    os.symlink("../src", work / "mutants" / "inst" / "python")
    return work


def _mutant_names(work: Path, python: str) -> list[str]:
    """Every mutant mutmut would make here (generates them, runs nothing)."""
    out = subprocess.run([python, "-m", "mutmut", "results", "--all", "true"], cwd=work,
                         capture_output=True, text=True, check=False).stdout
    return [line.split(":")[0].strip() for line in out.splitlines() if "__mutmut_" in line]


def _results(work: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for meta in (work / "mutants").rglob("*.meta"):
        data = json.loads(meta.read_text(encoding="utf-8"))
        for key, code in (data.get("exit_code_by_key") or {}).items():
            found[key] = "not checked" if code is None else STATUS.get(code, "suspicious")
    return found


def run(name: str, target: Target, python: str, sample: int, seed: int, children: int) -> dict[str, object]:
    work = _setup(name, target)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    started = time.time()
    names = list(target.functions)
    population = 0
    if sample:
        # Generate the mutants first (a run of a name that matches nothing generates and stops).
        subprocess.run([python, "-m", "mutmut", "run", "amlr.__none__"], cwd=work, env=env,
                       capture_output=True, check=False)
        pool = [n for n in _mutant_names(work, python)
                if not names or any(__import__("fnmatch").fnmatch(n, g) for g in names)]
        population = len(pool)
        random.Random(seed).shuffle(pool)
        names = sorted(pool[:sample])
    cmd = [python, "-m", "mutmut", "run", "--max-children", str(children), *names]
    log = work / "mutmut.log"
    with open(log, "w", encoding="utf-8") as fh:
        subprocess.run(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    results = _results(work)
    if names:
        import fnmatch
        results = {k: v for k, v in results.items() if any(fnmatch.fnmatch(k, g) for g in names)}
    counts: dict[str, int] = {}
    for status in results.values():
        counts[status] = counts.get(status, 0) + 1
    if not results or not any(v in ("killed", "survived", "timeout") for v in results.values()):
        print(f"{name}: mutmut ran no mutant; see {log}", file=sys.stderr)
    checked = sum(v for k, v in counts.items() if k not in ("not checked", "no tests", "skipped"))
    survived = counts.get("survived", 0)
    summary = {
        "target": name, "files": target.files, "tests": target.tests, "functions": target.functions,
        "sample": sample if population > sample else None, "population": population or len(results),
        "date": time.strftime("%Y-%m-%d"), "counts": counts, "mutants": len(results),
        "survival_rate": round(survived / checked, 3) if checked else None,
        "survivors": sorted(k for k, v in results.items() if v == "survived"),
        "no_tests": sorted(k for k, v in results.items() if v == "no tests"),
        "seconds": round(time.time() - started),
    }
    return summary


def report(path: Path) -> str:
    """The results in summary.json as the Markdown table of docs/mutation.md."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = ["| target | files | mutants tested | killed | survived | timeout | no tests | survival |",
            "|---|---|---|---|---|---|---|---|"]
    for name, res in data.items():
        c = res["counts"]
        tested = sum(v for k, v in c.items() if k != "not checked")
        scope = ", ".join(res["files"]) + (" (redaction functions only)" if res["functions"] else "")
        sample = f"{tested} (seeded sample of {res.get('population', '?')})" if res.get("sample") else str(tested)
        rate = res["survival_rate"]
        rows.append(f"| {name} | {scope} | {sample} | {c.get('killed', 0)} | {c.get('survived', 0)} | "
                    f"{c.get('timeout', 0)} | {c.get('no tests', 0)} | {'-' if rate is None else f'{rate:.1%}'} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*", help=f"some of: {' '.join(TARGETS)} (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--sample", type=int, default=0, help="test only this many mutants per target (seeded)")
    ap.add_argument("--seed", type=int, default=17)
    ap.add_argument("--max-children", type=int, default=1, help="parallel mutants (the machine is shared)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--report", action="store_true", help="print build/mutate/summary.json as a Markdown table")
    args = ap.parse_args(argv)
    if args.report:
        sys.stdout.write(report(WORK / "summary.json"))
        return 0
    if args.list:
        for name, t in TARGETS.items():
            print(f"{name}: {', '.join(t.files)}  <- {', '.join(t.tests)}"
                  + (f"  (only {', '.join(t.functions)})" if t.functions else ""))
        return 0
    chosen = args.targets or list(TARGETS)
    unknown = [t for t in chosen if t not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    WORK.mkdir(parents=True, exist_ok=True)
    summary_path = WORK / "summary.json"
    all_results = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    worst = 0.0
    for name in chosen:
        res = run(name, TARGETS[name], args.python, args.sample, args.seed, args.max_children)
        # re-read: another `make mutate` of other targets may have written meanwhile
        all_results = json.loads(summary_path.read_text()) if summary_path.exists() else {}
        all_results[name] = res
        summary_path.write_text(json.dumps(all_results, indent=1) + "\n", encoding="utf-8")
        c = res["counts"]
        rate = res["survival_rate"]
        print(f"{name:13s} killed {c.get('killed', 0):4d}  survived {c.get('survived', 0):3d}  "
              f"timeout {c.get('timeout', 0):2d}  no tests {c.get('no tests', 0):3d}  "
              f"survival {'-' if rate is None else f'{rate:.1%}'}  ({res['seconds']}s)", flush=True)
        for s in res["survivors"]:
            print(f"    survived: {s}")
        worst = max(worst, rate or 0.0)
    print(f"details: {summary_path}; a mutant's diff: cd build/mutate/<target> && "
          f"{args.python} -m mutmut show <name>")
    return 1 if worst >= 0.10 else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
