"""A step's code (amlr.stepcode): which files of its folder make a step re-run when they change.

Real R source text; the folder is a dict of relative path -> text, read the way
the snapshot reads files.
"""
from __future__ import annotations

import pytest

from amlr import stepcode as sc


def code(files: dict, script: str, **kw) -> sc.StepCode:
    def read(rel: str) -> str:
        value = files[rel]
        if isinstance(value, Exception):
            raise value
        return value

    return sc.step_code(script, files, read, **kw)


def test_tokens_strings_comments_raw_strings_and_backticks():
    toks = sc.tokens('x <- "a\\"b\\n\\t\\\\" # source("no.R")\n`my var` + r"(raw "str")" - R\'[x]\' 1e3L y$z')
    assert [(t.kind, t.text) for t in toks] == [
        ("ident", "x"), ("op", "<"), ("op", "-"), ("str", 'a"b\n\t\\'), ("ident", "my var"), ("op", "+"),
        ("str", 'raw "str"'), ("op", "-"), ("str", "x"), ("num", "1e3L"), ("ident", "y"), ("op", "$"),
        ("ident", "z")]
    assert [t.text for t in sc.tokens("r\"---{a}--}---\" base::source pkg::f 'it\\'s'")] == \
        ["a}--", "base::source", "pkg::f", "it's"]
    assert sc.tokens('r"(never closed') == [sc.Token("str", "never closed")]
    assert sc.tokens("'\\/\\q'")[0].text == "/q"


@pytest.mark.parametrize("src, sourced, unresolved", [
    ('source("R/a.R")', ["R/a.R"], False),
    ("sys.source('b.R', envir = e)", ["b.R"], False),
    ('base::source(file = "c.R")', ["c.R"], False),
    ('source(exprs = "d.R")', ["d.R"], False),
    ('source(file.path("R", "x.R"))', ["R/x.R"], False),
    ('source(here::here("R", "sub", "y.R"))', ["R/sub/y.R"], False),
    ('source(here("z.R"))', ["z.R"], False),
    ("source(f)", [], True),
    ('source(paste0("a", ".R"))', [], True),
    ('source(file.path(dir, "x.R"))', [], True),
    ("lapply(files, source)", [], True),
    ("source()", [], True),
    ('x$source("a.R"); y@source("b.R")', [], False),
    ('x$source("a.R"); source("b.R")', ["b.R"], False),
    ('f(source = "a.R"); source("b.R")', ["b.R"], False),
    ('otherpkg::source("a.R"); base::source("b.R")', ["b.R"], False),
    ('source(encoding = "UTF-8", "a.R")', [], True),  # the first argument is not the path
    ('x <- r"(a)"; source("b.R"); y <- r"(c)"', ["b.R"], False),
    ('f(source = "a.R")', [], False),
    ('g(x, source = "a.R")', [], False),
    ('# source("a.R")\ncat("source(\'b.R\')")', [], False),
    ('source("a.R"); source("b.R")', ["a.R", "b.R"], False),
])
def test_scan_finds_literal_sources(src, sourced, unresolved):
    found = sc.scan(src)
    assert found.sourced == sourced and found.unresolved is unresolved
    assert found.builds_pipeline is False


@pytest.mark.parametrize("src, builds", [
    ("r_pipeline(a, b)", True), ("amlr::submit_r_pipeline(p)", True), ("submit_r_pipeline()", True),
    ("amlr::r_pipeline(x)", True), ("r_pipeline", False), ("my_r_pipeline(x)", False), ("x$r_pipeline(1)", False),
])
def test_scan_knows_pipeline_builders(src, builds):
    assert sc.scan(src).builds_pipeline is builds


def test_sourced_files_are_followed_transitively_and_other_files_ignored():
    files = {
        "train.R": 'source("R/model.R")\nsource(file.path("R", "prep.R"))\n',
        "R/model.R": 'source("R/util.R")\n',
        "R/util.R": "u <- 1\n",
        "R/prep.R": 'source("R/model.R")\n',  # a cycle is fine
        "R/unused.R": "x <- 1\n",
        "report.R": "cat(1)\n",
        "data/cars.csv": "a,b\n",
        "config.yml": "k: v\n",
    }
    got = code(files, "train.R")
    assert got == sc.StepCode(["R/model.R", "R/prep.R", "R/util.R", "config.yml", "data/cars.csv", "train.R"],
                              False)


def test_an_unresolved_source_makes_every_r_file_count_but_not_other_steps_or_builders():
    files = {
        "train.R": "for (f in list.files('R')) source(f)\n",
        "R/a.R": "a <- 1\n",
        "report.R": "cat(1)\n",
        "run.R": "amlr::submit_r_pipeline(amlr::r_pipeline(a, b))\n",
        "x.csv": "1\n",
    }
    got = code(files, "train.R", other_scripts=["report.R", "train.R"])
    assert got.files == ["R/a.R", "train.R", "x.csv"]
    assert got.conservative is True
    assert got.reason == "train.R calls source() with a path that is not a literal"


def test_a_sourced_file_outside_the_folder_is_conservative_with_a_reason():
    for path in ("../shared.R", "/abs/x.R", "C:/x.R", "~/x.R", "missing.R", "..", "a/../../b.R"):
        files = {"s.R": f'source("{path}")\n', "R/a.R": "1\n"}
        got = code(files, "s.R")
        assert got.conservative, path
        assert got.reason == f"s.R sources {path!r}, which is not a file of the folder"
        assert got.files == ["R/a.R", "s.R"]


def test_a_tilde_path_is_the_home_folder_even_when_the_folder_has_a_tilde_folder():
    """R expands ``~`` to the user's home: source("~/x.R") never reads the folder's own ``~/x.R``."""
    files = {"s.R": 'source("~/x.R")\n', "~/x.R": "1\n", "R/a.R": "2\n"}
    got = code(files, "s.R")
    assert got.conservative and got.reason == "s.R sources '~/x.R', which is not a file of the folder"


def test_normalised_relative_paths_are_followed():
    files = {"s.R": 'source("./R/../R/a.R")\nsource("R\\\\b.R")\n', "R/a.R": "1\n", "R/b.R": "2\n", "R/c.R": "3\n"}
    got = code(files, "s.R")
    assert got == sc.StepCode(["R/a.R", "R/b.R", "s.R"], False)


def test_an_unreadable_file_is_conservative():
    files = {"s.R": 'source("R/a.R")\n', "R/a.R": UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"),
             "R/b.R": "1\n"}
    got = code(files, "s.R")
    assert got.conservative and got.reason == "R/a.R could not be read as text"
    assert got.files == ["R/a.R", "R/b.R", "s.R"]
    # an unreadable file that might build a pipeline is kept (it cannot be ruled out)
    files = {"s.R": "source(f)\n", "b.R": OSError("denied")}
    assert code(files, "s.R").files == ["b.R", "s.R"]


def test_extra_files_and_folders_count():
    files = {"s.R": "1\n", "R/helpers.R": "2\n", "R/more/deep.R": "3\n", "Rx/other.R": "4\n", "t.R": "5\n"}
    got = code(files, "s.R", extra_files=["R/", "t.R", "nope.R"])
    assert got == sc.StepCode(["R/helpers.R", "R/more/deep.R", "s.R", "t.R"], False)
    assert code(files, "s.R", extra_files=["R"]).files == ["R/helpers.R", "R/more/deep.R", "s.R"]
    # a folder is matched by its whole name, whatever its last letter
    files = {"s.R": "1\n", "XX/a.R": "2\n", "X/b.R": "3\n", "Data/c.R": "4\n", "DataX/d.R": "5\n"}
    assert code(files, "s.R", extra_files=["DataX/", "XX"]).files == ["DataX/d.R", "XX/a.R", "s.R"]


def test_a_missing_script_is_just_not_there():
    assert code({"x.csv": "1"}, "s.R") == sc.StepCode(["x.csv"], False)


def test_iter_r_files():
    assert list(sc.iter_r_files(["a.R", "b.r", "c.Rmd", "d.R.bak", "e.csv"])) == ["a.R", "b.r"]


@pytest.mark.parametrize("path, normal", [
    ("R/a.R", "R/a.R"), ("./R/../R/a.R", "R/a.R"), ("R\\b.R", "R/b.R"), ("R//c.R", "R/c.R"), ("a/../b.R", "b.R"),
    ("/abs/x.R", None), ("//x.R", None), ("/../x.R", None), ("C:/x.R", None), ("c:x.R", None), ("~/x.R", None),
    ("~", None), ("..", None), ("../x.R", None), ("a/../../b.R", None), ("..\\x.R", None),
    ("\\x.R", None), ("\\\\server\\x.R", None),
])
def test_a_sourced_path_is_normalised_within_the_folder_or_refused(path, normal):
    assert sc._normal(path) == normal


def test_a_file_sourced_twice_does_not_end_the_search():
    files = {"s.R": 'source("R/b.R")\nsource("R/a.R")\nsource("R/a.R")\n', "R/a.R": "1\n",
             "R/b.R": 'source("R/c.R")\n', "R/c.R": "3\n", "R/unused.R": "4\n"}
    assert code(files, "s.R") == sc.StepCode(["R/a.R", "R/b.R", "R/c.R", "s.R"], False)
