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
import re
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
DEFAULT_SEED = 17


@dataclass
class Target:
    files: list[str]
    """Files of the package (relative to amlr/) that are mutated."""
    tests: list[str]
    """The pytest files (relative to tests/python) that run against each mutant."""
    functions: list[str] = field(default_factory=list)
    """When set, only mutants of these functions (mutmut name globs, e.g. ``amlr.x.x_redact*``)."""
    subprocess_tests: list[str] = field(default_factory=list)
    """Test files (of ``tests``) that also run the target's code in a child process: their tests
    run against every mutant of the target, whatever in-process coverage says."""
    scripts: dict[str, str] = field(default_factory=dict)
    """Files the tests run as scripts (``python bootstrapper.py``), with the name each is
    imported under then (``__main__``, or a sibling's bare name): see :func:`_name_scripts`."""


TARGETS: dict[str, Target] = {
    "spec": Target(["spec.py"], ["test_spec.py", "test_spec_rules.py", "test_stepcontract.py"]),
    "registry": Target(["registry.py", "runrecord.py", "sqlitedb.py"],
                       ["test_registry.py", "test_runrecord.py", "test_sqlitedb.py"]),
    "bootstrapper": Target(["bootstrapper.py", "stepmetrics.py"],
                           ["test_bootstrapper.py", "test_stepmetrics.py", "test_stepcontract.py", "test_redaction.py"],
                           subprocess_tests=["test_bootstrapper.py", "test_stepcontract.py"],
                           scripts={"bootstrapper.py": "__main__", "stepmetrics.py": "stepmetrics"}),
    "snapshot": Target(["snapshot.py", "ignore.py"], ["test_snapshot.py", "test_ignore.py"]),
    "redaction": Target(
        ["stepmetrics.py", "backends/azureml_v2/client.py", "backends/azureml/launch.py"],
        ["test_redaction.py"],
        ["amlr.stepmetrics.x_redact*", "amlr.backends.azureml_v2.client.x_redact*",
         "amlr.backends.azureml_v2.client.x__secret_values*", "amlr.backends.azureml_v2.client.x__detail*",
         "amlr.backends.azureml.launch.x__scrub*",
         "amlr.backends.azureml.launch.x__secrets*", "amlr.backends.azureml.launch.x__remote_failure*"],
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


_LITERAL = re.compile(r"(?P<q>[\"'])(?P<body>(?:\\.|(?!(?P=q)).)*)(?P=q)")
_SQL = re.compile(r"\b(select|insert|update|delete|pragma|order by|values|create|where|from)\b", re.IGNORECASE)
_CODECS = {"utf-8", "utf8", "ascii"}


def equivalent_kind(old: str, new: str) -> str | None:
    """Why a mutated line behaves exactly like the original, for the two mechanical kinds; else None.

    Only a change of letter case inside string literals qualifies, and only where
    case means nothing: SQL text (SQLite's keywords, identifiers and pragmas are
    case-insensitive) and codec names (``"utf-8"`` is ``"UTF-8"``). Everything
    else a survivor changes stays a survivor.
    """
    if old == new or old.lower() != new.lower():
        return None
    kinds = set()
    last = 0
    for m_old, m_new in zip(_LITERAL.finditer(old), _LITERAL.finditer(new)):
        if old[last:m_old.start()] != new[last:m_new.start()] or m_old.span() != m_new.span():
            return None
        last = m_old.end()
        if m_old.group("body") == m_new.group("body"):
            continue
        if _SQL.search(m_old.group("body")):
            kinds.add("SQL letter case")
        elif m_old.group("body").lower() in _CODECS:
            kinds.add("codec name case")
        else:
            return None
    if old[last:] != new[last:] or not kinds:
        return None
    return ", ".join(sorted(kinds))


def _diff_lines(work: Path, python: str, mutant: str) -> tuple[str, str] | None:
    out = subprocess.run([python, "-m", "mutmut", "show", mutant], cwd=work, capture_output=True, text=True,
                         check=False).stdout
    minus = [line[1:] for line in out.splitlines() if line.startswith("-") and not line.startswith("---")]
    plus = [line[1:] for line in out.splitlines() if line.startswith("+") and not line.startswith("+++")]
    return (minus[0], plus[0]) if len(minus) == 1 and len(plus) == 1 else None


def _classify(work: Path, python: str, results: dict[str, str]) -> dict[str, str]:
    """Survivors whose change is mechanically equivalent (see equivalent_kind): name -> kind."""
    found = {}
    for name in sorted(k for k, v in results.items() if v == "survived"):
        lines = _diff_lines(work, python, name)
        kind = equivalent_kind(*lines) if lines else None
        if kind:
            found[name] = kind
    return found


def _results(work: Path) -> dict[str, str]:
    found: dict[str, str] = {}
    for meta in (work / "mutants").rglob("*.meta"):
        data = json.loads(meta.read_text(encoding="utf-8"))
        for key, code in (data.get("exit_code_by_key") or {}).items():
            found[key] = "not checked" if code is None else STATUS.get(code, "suspicious")
    return found


def _add_subprocess_tests(work: Path, target: Target, mutants: list[str]) -> int:
    """Give every mutant's function the tests of ``target.subprocess_tests`` too.

    mutmut picks a mutant's tests from the functions each test reached in its own
    process; the bootstrapper's tests mostly start it as a child process (as a job
    does), which that bookkeeping cannot see. The child runs the mutated file (see
    the module docstring), so running those tests against the mutant is a real check.
    """
    path = work / "mutants" / "mutmut-stats.json"
    stats = json.loads(path.read_text(encoding="utf-8"))
    prefixes = tuple(f"tests/python/{f}::" for f in target.subprocess_tests)
    extra = {t for t in stats["duration_by_test"] if t.startswith(prefixes)}
    by_function = stats["tests_by_mangled_function_name"]
    for mutant in mutants:
        function = mutant.rsplit("__mutmut_", 1)[0]
        by_function[function] = sorted(set(by_function.get(function, [])) | extra)
    path.write_text(json.dumps(stats, indent=4), encoding="utf-8")
    return len(extra)


def _name_scripts(work: Path, target: Target) -> None:
    """Make a mutated file that runs as a script answer to its module's mutant names.

    mutmut's trampolines switch to a mutant only when ``MUTANT_UNDER_TEST`` names
    the module the function was defined in; a file run as ``python bootstrapper.py``
    defines its functions in ``__main__`` (and the ``stepmetrics`` it imports is
    plain ``stepmetrics``), so without this every child process would run the
    original code and every mutant would seem to survive the subprocess tests.
    The generated files are patched (only here, in the scratch copy) to take the
    package name while keeping the script's entry point.
    """
    for rel, runs_as in target.scripts.items():
        path = work / "mutants" / "src" / "amlr" / rel
        text = path.read_text(encoding="utf-8")
        module = "amlr." + rel[:-3].replace("/", ".")
        marker = "from mutmut.mutation.trampoline import"
        head, sep, rest = text.partition(marker)
        line, nl, rest = rest.partition("\n")
        patch = (f"_mutmut_as_script = __name__ == {runs_as!r}\n"
                 f"if _mutmut_as_script:\n    __name__ = {module!r}\n")
        text = head + sep + line + nl + patch + rest
        text = text.replace('if __name__ == "__main__":', "if _mutmut_as_script:")
        path.write_text(text, encoding="utf-8")


def run(name: str, target: Target, python: str, sample: int, seed: int, children: int) -> dict[str, object]:
    work = _setup(name, target)
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    started = time.time()
    names = list(target.functions)
    population = 0
    if sample or target.subprocess_tests or target.scripts:
        # Generate the mutants and collect coverage first (a run of a name that matches
        # nothing does that, then stops).
        subprocess.run([python, "-m", "mutmut", "run", "amlr.__none__"], cwd=work, env=env,
                       capture_output=True, check=False)
        pool = [n for n in _mutant_names(work, python)
                if not names or any(__import__("fnmatch").fnmatch(n, g) for g in names)]
        population = len(pool)
        if sample:
            random.Random(seed).shuffle(pool)
            names = sorted(pool[:sample])
        if target.subprocess_tests:
            _add_subprocess_tests(work, target, pool)
        _name_scripts(work, target)
    cmd = [python, "-m", "mutmut", "run", "--max-children", str(children), *names]
    log = work / "mutmut.log"
    with open(log, "w", encoding="utf-8") as fh:
        subprocess.run(cmd, cwd=work, env=env, stdout=fh, stderr=subprocess.STDOUT, check=False)
    results = _results(work)
    if names:
        import fnmatch
        results = {k: v for k, v in results.items() if any(fnmatch.fnmatch(k, g) for g in names)}
    equivalent = _classify(work, python, results)
    for name in equivalent:
        results[name] = "equivalent"
    counts: dict[str, int] = {}
    for status in results.values():
        counts[status] = counts.get(status, 0) + 1
    if not results or not any(v in ("killed", "survived", "timeout") for v in results.values()):
        print(f"{name}: mutmut ran no mutant; see {log}", file=sys.stderr)
    checked = sum(v for k, v in counts.items() if k not in ("not checked", "no tests", "skipped", "equivalent"))
    survived = counts.get("survived", 0)
    summary = {
        "target": name, "files": target.files, "tests": target.tests, "functions": target.functions,
        "sample": sample if population > sample else None, "population": population or len(results),
        "date": time.strftime("%Y-%m-%d"), "counts": counts, "mutants": len(results),
        "survival_rate": round(survived / checked, 3) if checked else None,
        "survivors": sorted(k for k, v in results.items() if v == "survived"),
        "no_tests": sorted(k for k, v in results.items() if v == "no tests"),
        "equivalent": equivalent,
        "seconds": round(time.time() - started),
    }
    return summary


def report(path: Path) -> str:
    """The results in summary.json as the Markdown table of docs/mutation.md."""
    data = json.loads(path.read_text(encoding="utf-8"))
    rows = ["| target | files | mutants tested | killed | survived | equivalent | timeout | no tests | survival |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, res in data.items():
        c = res["counts"]
        tested = sum(v for k, v in c.items() if k != "not checked")
        scope = ", ".join(res["files"]) + (" (redaction functions only)" if res["functions"] else "")
        sample = f"{tested} (seeded sample of {res.get('population', '?')})" if res.get("sample") else str(tested)
        rate = res["survival_rate"]
        rows.append(f"| {name} | {scope} | {sample} | {c.get('killed', 0)} | {c.get('survived', 0)} | "
                    f"{c.get('equivalent', 0)} | {c.get('timeout', 0)} | {c.get('no tests', 0)} | "
                    f"{'-' if rate is None else f'{rate:.1%}'} |")
    return "\n".join(rows) + "\n"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("targets", nargs="*", help=f"some of: {' '.join(TARGETS)} (default: all)")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--sample", type=int, default=0, help="test only this many mutants per target (seeded)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED)
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
        all_results[name if args.seed == DEFAULT_SEED or not args.sample else f"{name} (seed {args.seed})"] = res
        summary_path.write_text(json.dumps(all_results, indent=1) + "\n", encoding="utf-8")
        c = res["counts"]
        rate = res["survival_rate"]
        print(f"{name:13s} killed {c.get('killed', 0):4d}  survived {c.get('survived', 0):3d}  "
              f"equivalent {c.get('equivalent', 0):3d}  "
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
