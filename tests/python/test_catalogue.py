"""The catalogue of bad inputs and faults, table-driven (issue 12).

Every row is one thing a hostile or unlucky user does. Each asserts the error
class that reaches R (``amlr_error_<class>``), key words of the message (the
thing named and the fix), and that nothing was recorded or lost: the
registry's runs and the run folders are the same before and after (and a
damaged registry file is left exactly as it was).

The R side has its own table (tests/testthat/test-catalogue.R); both are
rendered into docs/catalogue.md, and ``test_docs_match_the_tables`` fails
when the page and the tables drift. Regenerate the page with
``python tests/python/test_catalogue.py --write``.
"""
from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
if str(REPO / "inst" / "python") not in sys.path:
    sys.path.insert(0, str(REPO / "inst" / "python"))

from amlr import api, bootstrapper  # noqa: E402
from conftest import run_unprivileged  # noqa: E402
from amlr.registry import Registry  # noqa: E402

ROOT = os.geteuid() == 0 if hasattr(os, "geteuid") else False
DOC = REPO / "docs" / "catalogue.md"
R_TABLE = REPO / "tests" / "testthat" / "test-catalogue.R"


@dataclass
class Ctx:
    """A fresh AMLR_HOME with one completed run in it, and a source folder."""

    home: Path
    src: Path
    tmp: Path
    seed: str = "amlr_20200101_000000_5eed00"
    env: dict = field(default_factory=dict)

    def step(self, **kw: Any) -> dict:
        base = {"name": "a", "script": "a.R", "source_dir": str(self.src), "args": [], "inputs": {}, "outputs": []}
        base.update(kw)
        return base

    def spec(self, *steps: dict, **kw: Any) -> dict:
        out = {"name": "p", "steps": list(steps) or [self.step()]}
        out.update(kw)
        return out


def make_seed(ctx: Ctx) -> None:
    """A completed local run with an output, a log and a metric: what must never be lost."""
    reg = Registry(str(ctx.home))
    reg.ensure()
    run_dir = Path(reg.run_dir(ctx.seed))
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "outputs" / "a" / "out").mkdir(parents=True)
    (run_dir / "outputs" / "a" / "out" / "result.txt").write_text("42\n")
    log = run_dir / "logs" / "a.log"
    log.write_text("hello\nPipeline step execution returned 0\n")
    (run_dir / "spec.json").write_text(json.dumps({"pipeline": {"name": "seed", "steps": []}, "steps": {}}))
    reg.insert_run(
        {"id": ctx.seed, "experiment": "seed", "pipeline": "seed", "backend": "local", "status": "Completed",
         "run_dir": str(run_dir), "created": time.time() - 3600},
        [{"name": "a", "status": "Completed", "log_path": str(log),
          "outputs": {"out": str(run_dir / "outputs" / "a" / "out")}}],
    )
    reg.update_run(ctx.seed, ended=time.time() - 3500, started=time.time() - 3590)
    reg.update_step(ctx.seed, "a", exit_code=0)
    reg.write_run_file(ctx.seed)


def state(ctx: Ctx) -> tuple:
    """What a failed call must not change: the runs the registry knows and the run folders."""
    runs_dir = ctx.home / "runs"
    folders = sorted(os.listdir(runs_dir)) if runs_dir.is_dir() else []
    db = ctx.home / "registry.sqlite"
    ids: Any = None
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            ids = sorted(r[0] for r in con.execute("SELECT id FROM runs"))
        finally:
            con.close()
    except sqlite3.Error:
        # a damaged file must stay as it was
        ids = db.read_bytes() if db.is_file() else ("folder" if db.is_dir() else None)
    return folders, ids


@dataclass
class Row:
    id: str
    what: str
    kind: str  # the class R sees: amlr_error_<kind>
    words: tuple
    call: Callable[[Ctx], tuple]  # -> (method, params); may prepare files first
    needs_non_root: bool = False


def submit(spec_fn: Callable[[Ctx], dict], **params: Any) -> Callable[[Ctx], tuple]:
    def call(ctx: Ctx) -> tuple:
        return "submit", {"spec": spec_fn(ctx), **params}
    return call


def opt(**options: Any) -> Callable[[Ctx], tuple]:
    return submit(lambda c: c.spec(), options=options)


def method(name: str, **params: Any) -> Callable[[Ctx], tuple]:
    return lambda ctx: (name, dict(params))


def with_files(files: dict, then: Callable[[Ctx], tuple], mode: Optional[dict] = None) -> Callable[[Ctx], tuple]:
    def call(ctx: Ctx) -> tuple:
        for rel, text in files.items():
            p = ctx.src / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text(text)
        for rel, m in (mode or {}).items():
            os.chmod(ctx.src / rel, m)
        return then(ctx)
    return call


def home_is(kind: str, then: Callable[[Ctx], tuple]) -> Callable[[Ctx], tuple]:
    """Point AMLR_HOME somewhere unusable (the seeded home stays untouched)."""
    def call(ctx: Ctx) -> tuple:
        method_name, params = then(ctx)
        if kind == "file":
            bad = ctx.tmp / "home-file"
            bad.write_text("not a folder")
        elif kind == "below_file":
            (ctx.tmp / "home-file").write_text("x")
            bad = ctx.tmp / "home-file" / "sub"
        else:
            bad = ctx.tmp / "home-ro"
            bad.mkdir()
            os.chmod(bad, 0o555)
        params["home"] = str(bad)
        return method_name, params
    return call


def damage(how: str, then: Callable[[Ctx], tuple]) -> Callable[[Ctx], tuple]:
    def call(ctx: Ctx) -> tuple:
        db = ctx.home / "registry.sqlite"
        for suffix in ("-wal", "-shm"):
            if Path(str(db) + suffix).exists():
                os.remove(str(db) + suffix)
        if how == "empty":
            db.write_bytes(b"")
        elif how == "missing":
            db.unlink()
        elif how == "text":
            db.write_text("this is not a database\n" * 10)
        elif how == "truncated":
            data = db.read_bytes()
            db.write_bytes(b"SQLite format 3\x00" + b"\x00" * 84 + data[100:200])
        return then(ctx)
    return call


def folder_gone(then: Callable[[Ctx], tuple]) -> Callable[[Ctx], tuple]:
    def call(ctx: Ctx) -> tuple:
        import shutil

        shutil.rmtree(ctx.home / "runs" / ctx.seed)
        return then(ctx)
    return call


def seeded(name: str, **params: Any) -> Callable[[Ctx], tuple]:
    return lambda ctx: (name, {"run": ctx.seed, **params})


def dest_file(name: str, **params: Any) -> Callable[[Ctx], tuple]:
    def call(ctx: Ctx) -> tuple:
        f = ctx.tmp / "a-file"
        f.write_text("x")
        return name, {"run": ctx.seed, "dest": str(f), **params}
    return call


def dest_below_file(name: str) -> Callable[[Ctx], tuple]:
    def call(ctx: Ctx) -> tuple:
        f = ctx.tmp / "a-file"
        f.write_text("x")
        return name, {"run": ctx.seed, "dest": str(f / "sub")}
    return call


def dest_ro(name: str) -> Callable[[Ctx], tuple]:
    def call(ctx: Ctx) -> tuple:
        d = ctx.tmp / "ro"
        d.mkdir()
        os.chmod(d, 0o555)
        return name, {"run": ctx.seed, "dest": str(d)}
    return call


def dest_exists(ctx: Ctx) -> tuple:
    d = ctx.tmp / "dl"
    (d / "a" / "out").mkdir(parents=True)
    return "download", {"run": ctx.seed, "dest": str(d)}


def export(spec_fn: Callable[[Ctx], dict], path: Optional[str] = "out.yml", **params: Any) -> Callable[[Ctx], tuple]:
    def call(ctx: Ctx) -> tuple:
        target = params.pop("target", None)
        p = target(ctx) if target else (str(ctx.tmp / path) if path else None)
        return "export", {"spec": spec_fn(ctx), "path": p, **params}
    return call


def export_to(where: str) -> Callable[[Ctx], str]:
    def target(ctx: Ctx) -> str:
        if where == "below_file":
            (ctx.tmp / "a-file").write_text("x")
            return str(ctx.tmp / "a-file" / "out.yml")
        if where == "ro":
            d = ctx.tmp / "ro"
            d.mkdir()
            os.chmod(d, 0o555)
            return str(d / "out.yml")
        if where == "missing_dir":
            return str(ctx.tmp / "nope" / "out.yml")
        if where == "folder":
            (ctx.tmp / "adir").mkdir()
            return str(ctx.tmp / "adir")
        if where == "exists":
            (ctx.tmp / "there.yml").write_text("x")
            return str(ctx.tmp / "there.yml")
        raise AssertionError(where)
    return target


BIG = "x" * (128 * 1024)

ROWS: list[Row] = [
    # -- the request itself ----------------------------------------------------------------
    Row("req-unknown-method", "A request for a method that does not exist", "bad_request",
        ("Unknown method", "known"), method("no_such_method")),
    Row("req-params-not-object", "`params` that is not an object", "bad_request",
        ("params",), lambda c: ("status", "not-an-object")),
    # -- the pipeline spec (one validator for every backend) ------------------------------
    Row("spec-no-steps", "A pipeline with no steps", "invalid_spec", ("no steps", "r_step"),
        submit(lambda c: {"name": "p", "steps": []})),
    Row("spec-not-object", "A spec that is not an object", "invalid_spec", ("r_pipeline",),
        lambda c: ("submit", {"spec": ["x"]})),
    Row("spec-step-not-object", "A step that is not an object", "invalid_spec", ("r_step",),
        submit(lambda c: {"name": "p", "steps": ["a.R"]})),
    Row("spec-step-name-upper", "Step name with upper case and a space", "invalid_spec",
        ("not allowed", "Try name"), submit(lambda c: c.spec(c.step(name="My Step")))),
    Row("spec-step-name-digit", "Step name starting with a digit", "invalid_spec", ("not allowed", "step_1a"),
        submit(lambda c: c.spec(c.step(name="1a")))),
    Row("spec-step-name-long", "Step name over 255 characters", "invalid_spec", ("at most 255",),
        submit(lambda c: c.spec(c.step(name="a" * 300)))),
    Row("spec-step-name-missing", "Step without a name", "invalid_spec", ("missing",),
        submit(lambda c: c.spec(c.step(name="")))),
    Row("spec-step-name-number", "Step name that is a number", "invalid_spec", ("must be a string",),
        submit(lambda c: c.spec(c.step(name=5)))),
    Row("spec-script-absolute", "Script given as an absolute path", "invalid_spec", ("inside its source_dir",),
        submit(lambda c: c.spec(c.step(script="/etc/passwd")))),
    Row("spec-script-dotdot", "Script that climbs out with ../", "invalid_spec", ("inside its source_dir",),
        submit(lambda c: c.spec(c.step(script="../a.R")))),
    Row("spec-script-missing", "Script that does not exist", "invalid_spec", ("does not exist",),
        submit(lambda c: c.spec(c.step(script="ghost.R")))),
    Row("spec-source-dir-missing", "source_dir that does not exist", "invalid_spec", ("not a folder",),
        submit(lambda c: c.spec(c.step(source_dir=str(c.tmp / "nope"))))),
    Row("spec-source-dir-file", "source_dir that is a file", "invalid_spec", ("not a folder",),
        submit(lambda c: c.spec(c.step(source_dir=str(c.src / "a.R"))))),
    Row("spec-script-symlink-out", "Script that is a symlink out of source_dir", "invalid_spec",
        ("outside its source_dir",), lambda c: (os.symlink(c.tmp / "outside.R", c.src / "link.R"),
                                                 (c.tmp / "outside.R").write_text("1"),
                                                 ("submit", {"spec": c.spec(c.step(script="link.R"))}))[2]),
    Row("spec-inputs-not-named", "inputs that are not a named list", "invalid_spec", ("named list",),
        submit(lambda c: c.spec(c.step(inputs=["a", "b"])))),
    Row("spec-input-bad-name", "Input name with a dash", "invalid_spec", ("letters, digits",),
        submit(lambda c: c.spec(c.step(inputs={"my-data": str(c.src)})))),
    Row("spec-input-number", "Input that is a number", "invalid_spec", ("`d`", "path, a URI"),
        submit(lambda c: c.spec(c.step(inputs={"d": 42})))),
    Row("spec-input-unknown-type", "Input of an unknown type", "invalid_spec", ("unknown type",),
        submit(lambda c: c.spec(c.step(inputs={"d": {"type": "ftp"}})))),
    Row("spec-input-path-missing", "Input path that does not exist", "invalid_spec", ("does not exist",),
        submit(lambda c: c.spec(c.step(inputs={"d": str(c.tmp / "nope.csv")})))),
    Row("spec-output-bad-name", "Output name with a space", "invalid_spec", ("Output name",),
        submit(lambda c: c.spec(c.step(outputs=["my out"])))),
    Row("spec-output-twice", "The same output twice", "invalid_spec", ("twice",),
        submit(lambda c: c.spec(c.step(outputs=["m", "M"])))),
    Row("spec-output-is-input", "A name used as input and output", "invalid_spec", ("both as an input",),
        submit(lambda c: c.spec(c.step(inputs={"d": str(c.src)}, outputs=["d"])))),
    Row("spec-allow-reuse-string", "allow_reuse = \"yes\"", "invalid_spec", ("TRUE or FALSE",),
        submit(lambda c: c.spec(c.step(allow_reuse="yes")))),
    Row("spec-step-type", "An unknown step_type", "invalid_spec", ("step_type",),
        submit(lambda c: c.spec(c.step(step_type="spark")))),
    Row("spec-environment-string", "environment that is a string", "invalid_spec", ("r_environment",),
        submit(lambda c: c.spec(c.step(environment="rocker/r-ver")))),
    Row("spec-duplicate-steps", "Two steps with the same name", "invalid_spec", ("unique",),
        submit(lambda c: c.spec(c.step(), c.step()))),
    Row("spec-unknown-upstream", "output_of() a step that is not in the pipeline", "invalid_spec",
        ("no step", "ghost"),
        submit(lambda c: c.spec(c.step(inputs={"d": {"type": "step_output", "step": "ghost", "output": "o"}})))),
    Row("spec-self-dependency", "A step reading its own output", "invalid_spec", ("itself",),
        submit(lambda c: c.spec(c.step(outputs=["o"], inputs={"d": {"type": "step_output", "step": "a",
                                                                     "output": "o"}})))),
    Row("spec-unknown-output", "output_of() an output the step does not declare", "invalid_spec",
        ("no such output", "add it"),
        submit(lambda c: c.spec(c.step(outputs=["o"]),
                                c.step(name="b", inputs={"d": {"type": "step_output", "step": "a",
                                                               "output": "x"}})))),
    Row("spec-cycle", "Steps that depend on each other", "invalid_spec", ("cycle",),
        submit(lambda c: c.spec(
            c.step(outputs=["o"], inputs={"d": {"type": "step_output", "step": "b", "output": "p"}}),
            c.step(name="b", outputs=["p"], inputs={"d": {"type": "step_output", "step": "a", "output": "o"}})))),
    Row("spec-pipeline-name", "Pipeline name starting with `_`", "invalid_spec", ("Pipeline name",),
        submit(lambda c: c.spec(name="_p"))),
    Row("spec-experiment-name", "Experiment name with a slash", "bad_request", ("Experiment name",),
        submit(lambda c: c.spec(), experiment="a/b")),
    Row("spec-arg-too-long", "An argument over 128 kB", "argument_too_long", ("128 kB", "as a file"),
        submit(lambda c: c.spec(c.step(args=[BIG])))),
    Row("spec-args-total-too-long", "Arguments over 1 MB together", "argument_too_long", ("1 MB",),
        submit(lambda c: c.spec(c.step(args=["y" * 100_000] * 12)))),
    # -- backend and options ----------------------------------------------------------------
    Row("opt-unknown-backend", "An unknown backend", "bad_request", ("Unknown backend", "local"),
        submit(lambda c: c.spec(), backend="aws")),
    Row("opt-not-named", "Options that are not named", "bad_request", ("named",),
        submit(lambda c: c.spec(), options=[2])),
    Row("opt-max-parallel-text", "max_parallel = \"abc\"", "bad_option", ("max_parallel", "whole number"),
        opt(max_parallel="abc")),
    Row("opt-max-parallel-zero", "max_parallel = 0", "bad_option", ("max_parallel", "1 or more"),
        opt(max_parallel=0)),
    Row("opt-max-parallel-negative", "max_parallel = -3", "bad_option", ("max_parallel",), opt(max_parallel=-3)),
    Row("opt-max-parallel-fraction", "max_parallel = 1.5", "bad_option", ("max_parallel",), opt(max_parallel=1.5)),
    Row("opt-max-parallel-logical", "max_parallel = TRUE", "bad_option", ("max_parallel",), opt(max_parallel=True)),
    Row("opt-unknown", "A misspelt option (max_paralel)", "bad_option", ("Unknown option", "max_paralel"),
        opt(max_paralel=2)),
    # -- snapshots ----------------------------------------------------------------------------
    Row("snap-script-ignored", "The script excluded by .amlignore (`*.R`)", "script_excluded",
        (".amlignore", "!a.R"), with_files({".amlignore": "*.R\n"}, submit(lambda c: c.spec()))),
    Row("snap-script-gitignored", "The script excluded by .gitignore", "script_excluded", (".amlignore", "a.R"),
        with_files({".gitignore": "a.R\n"}, submit(lambda c: c.spec()))),
    Row("snap-script-in-ssh", "A script inside a `.ssh/` folder", "script_excluded", (".amlignore",),
        with_files({".ssh/run.R": "1"}, submit(lambda c: c.spec(c.step(script=".ssh/run.R"))))),
    Row("snap-reserved-folder", "A source folder with an `_amlr` folder", "snapshot_reserved_name",
        ("_amlr", "Rename"), with_files({"_amlr/x.txt": "x"}, submit(lambda c: c.spec()))),
    Row("snap-too-large", "A snapshot over the size limit", "snapshot_too_large", ("over the limit", ".amlignore"),
        lambda c: (os.environ.__setitem__("AMLR_SNAPSHOT_MAX_MB", "0.00001"),
                   (c.src / "data.bin").write_bytes(b"x" * 4096), ("submit", {"spec": c.spec()}))[2]),
    Row("snap-limit-invalid", "AMLR_SNAPSHOT_MAX_MB that is not a number", "snapshot_limit_invalid",
        ("AMLR_SNAPSHOT_MAX_MB", "number"),
        lambda c: (os.environ.__setitem__("AMLR_SNAPSHOT_MAX_MB", "lots"), ("submit", {"spec": c.spec()}))[1]),
    Row("snap-unreadable-file", "An unreadable file in the source folder", "source_unreadable",
        ("cannot be read", "secret.csv", ".amlignore"),
        with_files({"secret.csv": "1"}, submit(lambda c: c.spec()), mode={"secret.csv": 0}), needs_non_root=True),
    Row("snap-unreadable-folder", "An unreadable folder in the source folder", "source_unreadable",
        ("cannot be read", "locked"),
        with_files({"locked/x.csv": "1"}, submit(lambda c: c.spec()), mode={"locked": 0}), needs_non_root=True),
    # -- AMLR_HOME and the registry --------------------------------------------------------
    Row("home-is-file-submit", "AMLR_HOME is a file (submit)", "home_unusable", ("is a file", "AMLR_HOME"),
        home_is("file", submit(lambda c: c.spec()))),
    Row("home-is-file-list", "AMLR_HOME is a file (run_list)", "home_unusable", ("is a file",),
        home_is("file", method("list"))),
    Row("home-below-file-submit", "AMLR_HOME below a file (submit)", "home_unusable", ("part of that path is a file",),
        home_is("below_file", submit(lambda c: c.spec()))),
    Row("home-below-file-status", "AMLR_HOME below a file (run_status)", "home_unusable", ("is a file",),
        home_is("below_file", method("status"))),
    Row("home-read-only-submit", "AMLR_HOME read-only (submit)", "home_unusable", ("not writable",),
        home_is("ro", submit(lambda c: c.spec())), needs_non_root=True),
    Row("registry-text-list", "registry.sqlite is a text file (run_list)", "registry_damaged",
        ("not a valid SQLite", "run_registry_rebuild()"), damage("text", method("list"))),
    Row("registry-text-submit", "registry.sqlite is a text file (submit)", "registry_damaged",
        ("run_registry_rebuild()",), damage("text", submit(lambda c: c.spec()))),
    Row("registry-text-status", "registry.sqlite is a text file (run_status)", "registry_damaged",
        ("registry.sqlite",), damage("text", method("status"))),
    Row("registry-empty-list", "registry.sqlite truncated to 0 bytes (run_list)", "registry_damaged",
        ("0 bytes", "1 run folder", "run_registry_rebuild()"), damage("empty", method("list"))),
    Row("registry-empty-submit", "registry.sqlite truncated to 0 bytes (submit)", "registry_damaged",
        ("0 bytes",), damage("empty", submit(lambda c: c.spec()))),
    Row("registry-missing-list", "registry.sqlite deleted (run_list)", "registry_damaged",
        ("missing", "run_registry_rebuild()"), damage("missing", method("list"))),
    Row("registry-missing-latest", "registry.sqlite deleted (run_status(\"latest\"))", "registry_damaged",
        ("missing",), damage("missing", method("status"))),
    Row("registry-garbled", "registry.sqlite with a SQLite header and garbage", "registry_damaged",
        ("run_registry_rebuild()",), damage("truncated", method("list"))),
    Row("registry-is-folder", "registry.sqlite is a folder", "home_unusable", ("is a folder", "run_registry_rebuild()"),
        lambda c: (os.remove(c.home / "registry.sqlite"), (c.home / "registry.sqlite").mkdir(),
                   ("list", {}))[2]),
    Row("home-runs-is-file-submit", "`runs` under AMLR_HOME is a file (submit)", "home_unusable",
        ("is a file", "run folders"), lambda c: (__import__("shutil").rmtree(c.home / "runs"),
                                                 (c.home / "runs").write_text("x"),
                                                 ("submit", {"spec": c.spec()}))[2]),
    Row("home-runs-is-file-list", "`runs` under AMLR_HOME is a file (run_list)", "home_unusable", ("is a file",),
        lambda c: (__import__("shutil").rmtree(c.home / "runs"), (c.home / "runs").write_text("x"),
                   ("list", {}))[2]),
    # -- runs ---------------------------------------------------------------------------------
    Row("run-output-deleted", "run_download() of an output whose folder was deleted", "run_folder_missing",
        ("`out`", "is gone", "Nothing was copied"),
        lambda c: (__import__("shutil").rmtree(c.home / "runs" / c.seed / "outputs"),
                   ("download", {"run": c.seed, "dest": str(c.tmp / "dl")}))[1]),
    Row("run-unknown-id", "A run id that does not exist", "run_not_found", ("No run", "run_list()"),
        method("status", run="amlr_nope")),
    Row("run-not-string", "A run given as a number", "run_not_found", ("amlr_run",), method("status", run=5)),
    Row("run-latest-none", "\"latest\" with no runs at all", "run_not_found", ("no runs yet",),
        lambda c: ("status", {"run": "latest", "home": str(c.tmp / "empty-home")})),
    Row("run-step-unknown-logs", "run_logs() of a step that does not exist", "step_not_found", ("no step", "ghost"),
        seeded("logs", step="ghost")),
    Row("run-step-unknown-download", "run_download() of a step that does not exist", "step_not_found",
        ("no step",), lambda c: ("download", {"run": c.seed, "step": "ghost", "dest": str(c.tmp / "dl")})),
    Row("run-output-ghost", "run_download(output = \"ghost\")", "output_not_found", ("no output `ghost`", "out"),
        lambda c: ("download", {"run": c.seed, "output": "ghost", "dest": str(c.tmp / "dl")})),
    Row("run-download-to-file", "run_download() into a file", "destination_unusable", ("is a file",),
        dest_file("download")),
    Row("run-download-below-file", "run_download() below a file", "destination_unusable", ("below the file",),
        dest_below_file("download")),
    Row("run-download-read-only", "run_download() into a read-only folder", "destination_unusable", ("read-only",),
        dest_ro("download"), needs_non_root=True),
    Row("run-download-exists", "run_download() onto existing files", "file_exists", ("overwrite = TRUE",),
        dest_exists),
    Row("run-cancel-ended", "run_cancel() of a finished run", "run_not_active", ("already ended",),
        seeded("cancel")),
    Row("run-folder-gone-logs", "run_logs() of a run whose folder was deleted", "run_folder_missing",
        ("is gone", "logs"), folder_gone(seeded("logs"))),
    Row("run-folder-gone-download", "run_download() of a run whose folder was deleted", "run_folder_missing",
        ("is gone", "outputs"), folder_gone(lambda c: ("download", {"run": c.seed, "dest": str(c.tmp / "dl")}))),
    Row("list-limit-text", "run_list(limit = \"abc\")", "bad_request", ("limit", "whole number"),
        method("list", limit="abc")),
    Row("list-limit-negative", "run_list(limit = -1)", "bad_request", ("limit",), method("list", limit=-1)),
    Row("list-limit-fraction", "run_list(limit = 1.5)", "bad_request", ("limit",), method("list", limit=1.5)),
    Row("list-limit-logical", "run_list(limit = TRUE)", "bad_request", ("limit",), method("list", limit=True)),
    Row("list-experiment-number", "run_list(experiment = 5)", "bad_request", ("experiment",),
        method("list", experiment=5)),
    # -- export -------------------------------------------------------------------------------
    Row("export-format", "export_pipeline(format = \"cwl\")", "bad_request", ("format", "azureml_v2"),
        export(lambda c: c.spec(), format="cwl")),
    Row("export-no-path", "export_pipeline() without a path", "bad_request", ("path",),
        export(lambda c: c.spec(), path=None)),
    Row("export-path-folder", "export_pipeline(overwrite = TRUE) to a folder", "bad_request", ("is a folder",),
        export(lambda c: c.spec(), target=export_to("folder"), overwrite=True)),
    Row("export-below-file", "export_pipeline() below a file", "destination_unusable", ("is a file",),
        export(lambda c: c.spec(), target=export_to("below_file"))),
    Row("export-missing-dir", "export_pipeline() into a folder that does not exist", "bad_request",
        ("does not exist", "create it"), export(lambda c: c.spec(), target=export_to("missing_dir"))),
    Row("export-read-only", "export_pipeline() into a read-only folder", "destination_unusable", ("read-only",),
        export(lambda c: c.spec(), target=export_to("ro")), needs_non_root=True),
    Row("export-exists", "export_pipeline() onto an existing file", "file_exists", ("overwrite = TRUE",),
        export(lambda c: c.spec(), target=export_to("exists"))),
    Row("export-script-ignored", "export_pipeline() of a step whose script .amlignore excludes", "script_excluded",
        (".amlignore", "!a.R", "a"), with_files({".amlignore": "*.R\n"}, export(lambda c: c.spec()))),
    Row("export-arg-too-long", "export_pipeline() with an argument over 128 kB", "argument_too_long", ("128 kB",),
        export(lambda c: c.spec(c.step(args=[BIG])))),
    Row("export-bad-spec", "export_pipeline() of a cyclic pipeline", "invalid_spec", ("cycle",),
        export(lambda c: c.spec(
            c.step(outputs=["o"], inputs={"d": {"type": "step_output", "step": "b", "output": "p"}}),
            c.step(name="b", outputs=["p"], inputs={"d": {"type": "step_output", "step": "a", "output": "o"}})))),
]


# -- the bootstrapper's command line ---------------------------------------------------------

@dataclass
class CliRow:
    id: str
    what: str
    argv: list
    code: int
    words: tuple


CLI_ROWS = [
    CliRow("boot-unknown-option", "Unknown option before the script", ["--frobnicate", "a.R"], 2, ("unknown option",)),
    CliRow("boot-input-no-equals", "--input without NAME=PATH", ["--input", "data", "a.R"], 2, ("NAME=PATH",)),
    CliRow("boot-input-bad-name", "--input with a bad name", ["--input", "1x=/tmp", "a.R"], 2, ("not valid",)),
    CliRow("boot-input-empty-path", "--input with an empty path", ["--input", "d=", "a.R"], 2, ("empty path",)),
    CliRow("boot-input-twice", "The same --input twice", ["--input", "d=/a", "--input", "d=/b", "a.R"], 2,
           ("twice",)),
    CliRow("boot-option-no-value", "--output with no value", ["--output"], 2, ("needs a value",)),
    CliRow("boot-bad-sink", "An unknown metrics sink", ["--metrics-sink", "kafka", "a.R"], 2, ("must be one of",)),
    CliRow("boot-no-script", "No script at all", [], 2, ("no R script",)),
    CliRow("boot-script-missing", "A script that does not exist", ["ghost.R"], 2, ("not found", "ghost.R")),
    CliRow("boot-rscript-missing", "AMLR_RSCRIPT that does not exist", ["a.R"], 127, ("AMLR_RSCRIPT",)),
]


# -- the faults (behaviour tests elsewhere; listed here for the docs) -------------------------

FAULTS = [
    ("fault-sighup", "Bootstrapper gets SIGHUP / SIGQUIT / SIGUSR1 / SIGUSR2 / SIGALRM", "forwarded to R; exit 128+N",
     "test_hardening.py::test_every_terminating_signal_is_forwarded"),
    ("fault-sigint", "Bootstrapper gets SIGINT", "exit 130, not R's 1", "test_hardening.py::test_sigint_is_130"),
    ("fault-sigint-before-r", "A signal before R starts", "R is not started; exit 128+N",
     "test_hardening.py::test_signal_before_r_starts"),
    ("fault-sigkill-bootstrapper", "Bootstrapper killed with SIGKILL", "R dies with it (parent-death signal)",
     "test_hardening.py::test_r_dies_with_a_killed_bootstrapper"),
    ("fault-setsid", "A step leaves a `setsid` child behind", "runner ends it and says so in the step log",
     "test_hardening.py::test_setsid_escapee_is_reaped_and_reported"),
    ("fault-runner-sigterm", "The local runner gets SIGTERM from outside", "run Canceled, reason names SIGTERM",
     "test_hardening.py::test_runner_sigterm_is_reported_truthfully"),
    ("fault-bootstrapper-killed", "A step's bootstrapper is SIGKILLed", "step Failed, exit code 137",
     "test_hardening.py::test_killed_bootstrapper_is_137"),
    ("fault-secret-env", "AZURE_CLIENT_SECRET / registry password set in R", "not in the step's environment",
     "test_hardening.py::test_secrets_are_not_handed_to_steps"),
    ("fault-key-files", "id_rsa, *.pem, secrets.json, .netrc, .aws/ in the source folder",
     "left out of the snapshot, with a warning naming them", "test_hardening.py::test_key_files_are_left_out"),
    ("fault-key-negation", "`!server.pem` in .amlignore", "that one file is shipped",
     "test_hardening.py::test_amlignore_brings_a_key_back"),
    ("fault-symlink-out", "A symlink to a file outside the folder", "not followed, with a warning",
     "test_snapshot.py::test_symlinks"),
    ("fault-registry-rebuild", "registry.sqlite lost or damaged", "run_registry_rebuild() restores every run",
     "test_hardening.py::test_rebuild_restores_runs"),
    ("fault-unrecorded-folder", "A run folder the registry does not list", "run_list() warns",
     "test_hardening.py::test_list_warns_about_unrecorded_folders"),
    ("fault-failed-submit", "A submit that fails while packaging", "no registry row, no run folder",
     "test_hardening.py::test_failed_submit_leaves_nothing"),
    ("fault-mlflow-down", "MLflow tracking server unreachable", "requests bounded; warning names the server",
     "test_hardening.py::test_unreachable_mlflow_is_bounded_and_explained"),
    ("fault-step-writes-snapshot", "A step overwrites a file of its snapshot (its working directory), which is "
     "hard-linked from the content store", "the store and the next run keep the source's content",
     "test_local_backend.py::test_a_step_that_overwrites_a_source_file_does_not_change_the_next_run"),
]


# ---------------------------------------------------------------------------------------------


@pytest.fixture
def ctx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Ctx:
    home = tmp_path / "home"
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.R").write_text('cat("hi\\n")\n')
    monkeypatch.setenv("AMLR_HOME", str(home))
    monkeypatch.setenv("AMLR_SNAPSHOT_MAX_MB", "300")  # the default; rows may change it, undone afterwards
    c = Ctx(home=home, src=src, tmp=tmp_path)
    make_seed(c)
    yield c
    for root, dirs, _ in os.walk(tmp_path):  # let pytest clean up what a row made read-only
        for d in dirs:
            try:
                os.chmod(os.path.join(root, d), 0o755)
            except OSError:
                pass


@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
def test_bad_input(row: Row, ctx: Ctx) -> None:
    if row.needs_non_root and ROOT:  # permissions do not bind root: run this row as `nobody`
        run_unprivileged("test_catalogue.py", f"test_bad_input[{row.id}]")
        return
    name, params = row.call(ctx)  # the scenario (files, damage) ...
    before = state(ctx)  # ... then the call must change nothing
    if isinstance(params, dict):
        params.setdefault("home", str(ctx.home))
    response = api.handle({"method": name, "params": params})
    assert "error" in response, f"{row.id}: expected an error, got {str(response)[:300]}"
    error = response["error"]
    assert error["class"] == row.kind, f"{row.id}: {error}"
    for word in row.words:
        assert word.lower() in error["message"].lower(), f"{row.id}: {word!r} not in {error['message']!r}"
    assert "Unexpected Python error" not in error["message"]
    assert state(ctx) == before, f"{row.id}: the registry or the run folders changed"
    # the seeded run is still whole (nothing lost)
    if row.id.startswith(("registry-", "run-folder-gone", "home-runs", "run-output-deleted")):
        return
    seed = Registry(str(ctx.home)).get_run(ctx.seed)
    assert seed["status"] == "Completed"


@pytest.mark.parametrize("row", CLI_ROWS, ids=[r.id for r in CLI_ROWS])
def test_bootstrapper_command_line(row: CliRow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                   capsys: pytest.CaptureFixture) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.R").write_text("1\n")
    monkeypatch.setenv("AMLR_RSCRIPT", str(tmp_path / "no-such-Rscript"))
    code = bootstrapper.main(row.argv)
    err = capsys.readouterr().err
    assert code == row.code, err
    for word in row.words:
        assert word.lower() in err.lower(), err
    assert err.rstrip().splitlines()[-1] == f"Pipeline step execution returned {row.code}"


# -- the docs page -----------------------------------------------------------------------------

R_ROW = re.compile(r'^\s*cat_row\("([^"]+)",\s*"((?:[^"\\]|\\.)*)",\s*"([^"]+)"', re.M)
R_FAULT = re.compile(r'^\s*cat_fault\("([^"]+)",\s*"((?:[^"\\]|\\.)*)",\s*"((?:[^"\\]|\\.)*)"', re.M)


def r_rows() -> tuple[list, list]:
    text = R_TABLE.read_text(encoding="utf-8")
    unescape = lambda s: s.replace('\\"', '"')  # noqa: E731
    rows = [(m[0], unescape(m[1]), m[2]) for m in R_ROW.findall(text)]
    faults = [(m[0], unescape(m[1]), unescape(m[2])) for m in R_FAULT.findall(text)]
    return rows, faults


def render() -> str:
    r_table, r_faults = r_rows()
    out = [
        "# What amlr does with bad input and faults",
        "",
        "<!-- Generated from tests/python/test_catalogue.py and tests/testthat/test-catalogue.R by",
        "     `python tests/python/test_catalogue.py --write`; a test fails when this page and the tables differ. -->",
        "",
        "Every row is a test. A bad input ends in an error of class `amlr_error_<class>` (and `amlr_error`)",
        "whose message names the thing and the fix, raised before anything is recorded: no registry row,",
        "no run folder, and nothing earlier is lost. `amlr_error_python` is kept for bugs in amlr.",
        "",
        f"{len(r_table)} R API rows, {len(ROWS)} bridge rows, {len(CLI_ROWS)} bootstrapper rows and "
        f"{len(FAULTS) + len(r_faults)} faults: {len(r_table) + len(ROWS) + len(CLI_ROWS) + len(FAULTS) + len(r_faults)} in all.",
        "",
        "## The R API",
        "",
        "| id | what the user does | class |",
        "|---|---|---|",
    ]
    out += [f"| `{i}` | {w} | `amlr_error_{k}` |" for i, w, k in r_table]
    out += ["", "## The bridge (every backend, every R entry point)", "", "| id | what the user does | class |",
            "|---|---|---|"]
    out += [f"| `{r.id}` | {r.what} | `amlr_error_{r.kind}` |" for r in ROWS]
    out += ["", "## The bootstrapper's command line (inside a job)", "",
            "Each ends with `Pipeline step execution returned N` on stderr.", "", "| id | what | exit code |",
            "|---|---|---|"]
    out += [f"| `{r.id}` | {r.what} | {r.code} |" for r in CLI_ROWS]
    out += ["", "## Faults", "", "| id | what happens | what amlr does |", "|---|---|---|"]
    out += [f"| `{i}` | {w} | {d} |" for i, w, d, _ in FAULTS]
    out += [f"| `{i}` | {w} | {d} |" for i, w, d in r_faults]
    return "\n".join(out) + "\n"


def test_docs_match_the_tables() -> None:
    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/catalogue.md is out of date: run `python tests/python/test_catalogue.py --write`")


def test_catalogue_is_big_enough() -> None:
    r_table, r_faults = r_rows()
    ids = [r.id for r in ROWS] + [r.id for r in CLI_ROWS] + [f[0] for f in FAULTS] + [i for i, _, _ in r_table] \
        + [f[0] for f in r_faults]
    assert len(ids) == len(set(ids)), "catalogue ids must be unique"
    assert len(ids) >= 120


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        DOC.parent.mkdir(exist_ok=True)
        DOC.write_text(render(), encoding="utf-8")
        print(f"wrote {DOC}")
