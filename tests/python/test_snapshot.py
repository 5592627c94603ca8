"""Snapshots and ignore rules, on real folders (and cross-checked against git)."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Dict, Iterator, List, Optional, Union

import pytest

_PYROOT = str(Path(__file__).resolve().parents[2] / "inst" / "python")

from amlr import snapshot  # noqa: E402
from amlr.errors import AmlrError  # noqa: E402
from amlr.ignore import IgnoreRules, walk_included  # noqa: E402
from amlr.snapshot import (  # noqa: E402
    BOOTSTRAPPER_PATH,
    SNAPSHOT_AMLIGNORE,
    SnapshotDestinationNotEmpty,
    SnapshotLimitInvalid,
    SnapshotReservedName,
    SnapshotSourceMissing,
    SnapshotTooLarge,
    build_snapshot,
    content_hash,
    hash_path,
    list_files,
    stage_snapshot,
)

Tree = Dict[str, Union[str, bytes]]
POSIX = os.name == "posix"


def make_tree(root: Path, files: Tree, order: Optional[List[str]] = None) -> Path:
    for rel in order or list(files):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        data = files[rel]
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return root


def included(root: Path, files: Tree) -> List[str]:
    return list_files(str(make_tree(root, files)))


@pytest.fixture
def boot(tmp_path: Path) -> Path:
    path = tmp_path / "bootstrapper.py"
    path.write_text("print('boot')\n")
    return path


# --------------------------------------------------------------------------
# built-in exclusions


def test_builtin_exclusions(tmp_path: Path) -> None:
    got = included(tmp_path / "src", {
        "main.R": "1",
        ".git/HEAD": "ref",
        "vendored/.git/config": "x",
        "vendored/code.R": "x",
        ".Rproj.user/shared/x": "x",
        "renv/library/R-4.3/pkg/DESCRIPTION": "x",
        "renv/activate.R": "x",
        "renv.lock": "{}",
        "sub/renv/library/kept.txt": "x",  # only the root's renv/library is special
        ".Rhistory": "x", ".RData": "x", ".Renviron": "x", ".env": "x",
        "deep/er/.Rhistory": "x", "deep/er/.RData": "x", "deep/er/.Renviron": "x", "deep/er/.env": "x",
        "deep/er/.env.example": "x",
        "deep/er/data.RData.bak": "x",
    })
    assert got == [
        "deep/er/.env.example", "deep/er/data.RData.bak", "main.R", "renv.lock",
        "renv/activate.R", "sub/renv/library/kept.txt", "vendored/code.R",
    ]


def test_builtin_exclusions_cannot_be_reincluded(tmp_path: Path) -> None:
    got = included(tmp_path / "src", {
        ".amlignore": "!.env\n!.git/\n!.Rproj.user/\n!renv/library/\n!.RData\n",
        ".env": "x", ".RData": "x", ".git/HEAD": "x", ".Rproj.user/x": "x",
        "renv/library/x": "x", "a.R": "x",
    })
    assert got == ["a.R"]


def test_ignore_files_are_not_part_of_the_snapshot(tmp_path: Path) -> None:
    got = included(tmp_path / "src", {
        ".amlignore": "*.csv\n", ".gitignore": "*.txt\n", "sub/.gitignore": "x\n",
        "a.R": "", "a.csv": "", "a.txt": "",
    })
    assert got == ["a.R", "a.txt"]


def test_missing_source(tmp_path: Path, boot: Path) -> None:
    for call in (list_files, content_hash,
                 lambda p: build_snapshot(p, str(tmp_path / "d"), bootstrapper_path=str(boot))):
        with pytest.raises(SnapshotSourceMissing) as err:
            call(str(tmp_path / "nope"))
        assert err.value.kind == "snapshot_source_missing"
        assert isinstance(err.value, AmlrError)
        assert "nope" in str(err.value)
    with pytest.raises(SnapshotSourceMissing, match="not a folder"):
        list_files(str(boot))


# --------------------------------------------------------------------------
# ignore files


def test_amlignore_preferred_over_gitignore(tmp_path: Path) -> None:
    got = included(tmp_path / "src", {
        ".amlignore": "*.csv\n",
        ".gitignore": "*.R\n",          # not read: the folder has an .amlignore
        "a.R": "", "a.csv": "",
        "sub/.gitignore": "*.txt\n",    # used: sub has no .amlignore
        "sub/b.txt": "", "sub/b.R": "", "sub/b.csv": "",
    })
    assert got == ["a.R", "sub/b.R"]


def test_nested_ignore_files_relative_and_deeper_wins(tmp_path: Path) -> None:
    got = included(tmp_path / "src", {
        ".amlignore": "*.csv\n/top.txt\nsub/anchored.txt\n",
        "top.txt": "", "sub/top.txt": "", "anchored.txt": "", "sub/anchored.txt": "",
        "sub/.amlignore": "!keep.csv\n/local.txt\n",
        "sub/keep.csv": "", "sub/drop.csv": "", "sub/local.txt": "", "local.txt": "",
        "sub/inner/local.txt": "", "sub/inner/keep.csv": "",
        "other/keep.csv": "",
    })
    assert got == ["anchored.txt", "local.txt", "sub/inner/keep.csv", "sub/inner/local.txt",
                   "sub/keep.csv", "sub/top.txt"]


def test_negation_and_last_match_wins(tmp_path: Path) -> None:
    got = included(tmp_path / "src", {
        ".amlignore": "*.log\n!important.log\n*.tmp\n!*.tmp\n*.tmp\n",
        "a.log": "", "important.log": "", "x/important.log": "", "a.tmp": "", "a.R": "",
    })
    assert got == ["a.R", "important.log", "x/important.log"]


def test_directory_only_patterns(tmp_path: Path) -> None:
    got = included(tmp_path / "src", {
        ".amlignore": "out/\ncache/\n",
        "out/x.rds": "", "sub/out/y.rds": "", "docs/out": "a file named out",
        "cache": "file", "a.R": "",
    })
    assert got == ["a.R", "cache", "docs/out"]


def test_anchored_patterns(tmp_path: Path) -> None:
    got = included(tmp_path / "src", {
        ".amlignore": "/root.txt\ndoc/frotz/\nany.txt\n",
        "root.txt": "", "sub/root.txt": "",
        "doc/frotz/a": "", "a/doc/frotz/b": "",
        "any.txt": "", "deep/x/any.txt": "",
    })
    assert got == ["a/doc/frotz/b", "sub/root.txt"]


def test_double_star(tmp_path: Path) -> None:
    got = included(tmp_path / "src", {
        ".amlignore": "**/tmp\nabc/**\na/**/z.txt\n**/logs/*.log\nfoo**bar\n",
        "tmp": "", "x/tmp/f": "", "x/y/tmp": "",
        "abc/1": "", "abc/d/2": "", "xabc/3": "",
        "a/z.txt": "", "a/b/z.txt": "", "a/b/c/z.txt": "", "b/a/z.txt": "",
        "logs/a.log": "", "q/logs/b.log": "", "logs/sub/c.log": "",
        "fooXbar": "", "foo/bar": "", "keep.R": "",
    })
    assert got == ["b/a/z.txt", "foo/bar", "keep.R", "logs/sub/c.log", "xabc/3"]


def test_cannot_reinclude_under_excluded_dir(tmp_path: Path) -> None:
    got = included(tmp_path / "src", {
        ".amlignore": "data/\n!data/keep.csv\nstuff/**\n!stuff/ok.txt\n",
        "data/keep.csv": "", "data/drop.csv": "",
        "stuff/ok.txt": "", "stuff/no.txt": "", "stuff/d/ok.txt": "",
        # a deeper ignore file inside an excluded folder is never read either
        "data/.amlignore": "!*\n",
    })
    assert got == ["stuff/ok.txt"]


def test_reinclude_files_with_star_dirs(tmp_path: Path) -> None:
    got = included(tmp_path / "src", {
        ".amlignore": "*\n!*/\n!*.R\n",
        "a.R": "", "a.csv": "", "x/b.R": "", "x/y/c.R": "", "x/y/c.txt": "",
    })
    assert got == ["a.R", "x/b.R", "x/y/c.R"]


@pytest.mark.parametrize("line, path, is_dir, expected", [
    ("# comment", "# comment", False, None),
    ("\\#hash", "#hash", False, True),
    ("\\!bang", "!bang", False, True),
    ("trail   ", "trail", False, True),
    ("trail\\ ", "trail ", False, True),
    ("trail\\ ", "trail", False, None),
    ("a?c", "abc", False, True),
    ("a?c", "a/c", False, None),
    ("file[0-9].txt", "file7.txt", False, True),
    ("file[!0-9].txt", "file7.txt", False, None),
    ("file[^0-9].txt", "fileA.txt", False, True),
    ("[]]x", "]x", False, True),
    ("[[:digit:]]x", "5x", False, True),
    ("[[:upper:]]*", "Readme", False, True),
    ("[[:upper:]]*", "readme", False, None),
    ("x[a-c", "x[a-c", False, None),  # unclosed class: git never matches
    ("back\\", "back\\", False, None),  # dangling backslash: never matches
    ("*.txt", "a/b/c.txt", False, True),
    ("a/*.txt", "a/b/c.txt", False, None),
    ("!*.txt", "c.txt", False, False),
    ("dir/", "dir", False, None),
    ("dir/", "dir", True, True),
    ("/", "x", True, None),
    ("crlf\r", "crlf", False, True),
])
def test_pattern_lines(line: str, path: str, is_dir: bool, expected) -> None:
    assert IgnoreRules.from_text(line).match(path, is_dir) is expected


def test_bom_is_skipped() -> None:
    assert IgnoreRules.from_text("\ufeff*.csv\n").is_ignored("a.csv", False)


# --------------------------------------------------------------------------
# cross-check with git


GIT_CASES = {
    "basics": {
        ".gitignore": "# comment\n\n*.log\n!important.log\n/build/\ndoc/frotz/\n"
                      "\\#lit\n\\!bang\ntrail\\ \n*.bak   \nfile[0-9].txt\nfile[!0-9].md\n?.q\n",
        "a.log": "", "important.log": "", "x/important.log": "", "x/y.log": "",
        "build/out": "", "src/build/out": "", "doc/frotz/a": "", "a/doc/frotz/b": "",
        "#lit": "", "!bang": "", "trail ": "", "trail": "", "x.bak": "", "x.bak   ": "",
        "file1.txt": "", "filex.txt": "", "file1.md": "", "filex.md": "",
        "a.q": "", "ab.q": "", "keep.R": "",
    },
    "double_star": {
        ".gitignore": "**/tmp\nabc/**\na/**/z\n**/logs/*.log\nfoo**bar\n**/deep/**/leaf\n",
        "tmp": "", "x/tmp/f": "", "x/y/tmp": "", "abc/1": "", "abc/d/2": "", "xabc/3": "",
        "a/z": "", "a/b/z": "", "a/b/c/z": "", "b/a/z": "",
        "logs/a.log": "", "q/logs/b.log": "", "logs/sub/c.log": "",
        "fooXbar": "", "foo/bar": "", "deep/leaf": "", "p/deep/q/r/leaf": "", "deep/leaf2": "",
    },
    "negation_and_dirs": {
        ".gitignore": "data/\n!data/keep.csv\nstuff/**\n!stuff/ok.txt\n*\n!*/\n!*.R\n!*.txt\n"
                      "!.gitignore\nsub/x/\n",
        "data/keep.csv": "", "data/a.R": "", "stuff/ok.txt": "", "stuff/no.txt": "",
        "stuff/d/ok.txt": "", "a.R": "", "a.csv": "", "sub/x/b.R": "", "x/b.R": "", "x/y.csv": "",
    },
    "nested": {
        ".gitignore": "*.csv\n/top.txt\nsub/anchored.txt\nlocal/\n",
        "top.txt": "", "sub/top.txt": "", "anchored.txt": "", "sub/anchored.txt": "",
        "sub/.gitignore": "!keep.csv\n/local.txt\n!local/\n*.rds\n",
        "sub/keep.csv": "", "sub/drop.csv": "", "sub/local.txt": "", "local.txt": "",
        "sub/inner/local.txt": "", "sub/inner/keep.csv": "", "sub/local/f": "", "local/f": "",
        "sub/inner/.gitignore": "!*.rds\n", "sub/inner/m.rds": "", "sub/m.rds": "",
        "classes.R": "", "[x].R": "", "sub/[[:alpha:]]": "",
    },
    "no_reinclude": {
        ".gitignore": "data/\n!data/keep.csv\nstuff/**\n!stuff/ok.txt\nbuild\n!build/x\n"
                      "gen/*\n!gen/keep/\ngen/keep/*.o\n",
        "data/keep.csv": "", "data/drop.csv": "", "stuff/ok.txt": "", "stuff/no.txt": "",
        "stuff/d/ok.txt": "", "build/x": "", "gen/a": "", "gen/keep/b.c": "", "gen/keep/b.o": "",
        "gen/other/c": "",
    },
    "classes": {
        ".gitignore": "[[:upper:]]*\n[a-c]?.dat\n[]]b\n[!a-z]x\nq[[:digit:][:space:]]\n"
                      "r[z-a]\ns[a-]\n",
        "Readme": "", "readme": "", "ax.dat": "", "dx.dat": "", "]b": "", "1x": "", "ax": "",
        "q1": "", "q ": "", "qa": "", "rz": "", "s-": "", "sa": "", "sb": "",
    },
}


def _git_env(tmp_path: Path) -> Dict[str, str]:
    env = dict(os.environ)
    env.update(HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"),
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    return env


def _git_untracked(repo: Path, env: Dict[str, str]) -> List[str]:
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--others", "--exclude-standard"],
                         check=True, env=env, capture_output=True).stdout
    return sorted(p for p in out.decode().split("\0") if p)


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
@pytest.mark.parametrize("case", sorted(GIT_CASES))
def test_matches_git(tmp_path: Path, case: str) -> None:
    repo = make_tree(tmp_path / "repo", GIT_CASES[case])
    expected = _git_untracked(repo, _git_env(tmp_path))
    ours = walk_included(str(repo), skip=lambda rel, is_dir: rel == ".git")
    assert ours == expected
    # list_files drops the ignore files themselves, nothing else
    assert list_files(str(repo)) == [p for p in expected if not p.endswith(".gitignore")]


# --------------------------------------------------------------------------
# symlinks


@pytest.mark.skipif(not POSIX, reason="symlinks")
def test_symlinks(tmp_path: Path) -> None:
    outside = make_tree(tmp_path / "outside", {"big.bin": "x", "f.txt": "outside content"})
    src = make_tree(tmp_path / "src", {"a.R": "", "real/b.R": "b"})
    (src / "linked_file.txt").symlink_to(outside / "f.txt")
    (src / "out_dir").symlink_to(outside, target_is_directory=True)
    (src / "in_dir").symlink_to(src / "real", target_is_directory=True)
    (src / "real" / "loop").symlink_to(src, target_is_directory=True)
    (src / "dangling").symlink_to(tmp_path / "nope")
    (src / "inner_link.txt").symlink_to(src / "a.R")
    # A link out of the folder is never followed (it could point at ~/.ssh/id_rsa), and that is said.
    said: list = []
    assert list_files(str(src), warn=said.append) == ["a.R", "in_dir/b.R", "inner_link.txt", "real/b.R"]
    assert len(said) == 1 and "linked_file.txt" in said[0] and "out_dir" in said[0] and "outside" in said[0]
    dest = tmp_path / "dest"
    build_snapshot(str(src), str(dest), bootstrapper_path=str(make_tree(tmp_path, {"b.py": ""}) / "b.py"),
                   warn=said.append)
    assert not (dest / "linked_file.txt").exists()
    copied = dest / "inner_link.txt"
    assert not copied.is_symlink()


# --------------------------------------------------------------------------
# hashing


FILES: Tree = {"main.R": "print(1)\n", "R/utils.R": "f <- function() 1\n", "data/x.csv": "a,b\n1,2\n",
               ".amlignore": "*.log\n", "debug.log": "noise"}


def test_hash_is_stable_across_order_mtime_and_location(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "one" / "src", FILES)
    b = make_tree(tmp_path / "elsewhere" / "deeper" / "project", FILES, order=sorted(FILES, reverse=True))
    old = time.time() - 86400 * 30
    for path in b.rglob("*"):
        os.utime(path, (old, old))
    (b / "debug.log").write_text("different noise, but excluded")
    assert content_hash(str(a)) == content_hash(str(b))
    assert len(content_hash(str(a))) == 64


def test_hash_changes_with_content_name_and_exec_bit(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", FILES)
    base = content_hash(str(src))
    (src / "main.R").write_text("print(2)\n")
    changed = content_hash(str(src))
    assert changed != base
    (src / "main.R").write_text("print(1)\n")
    assert content_hash(str(src)) == base
    (src / "main.R").rename(src / "run.R")
    assert content_hash(str(src)) != base
    (src / "run.R").rename(src / "main.R")
    (src / "new.R").write_text("")
    assert content_hash(str(src)) != base
    (src / "new.R").unlink()
    assert content_hash(str(src)) == base
    if POSIX:
        (src / "main.R").chmod(0o755)
        assert content_hash(str(src)) != base


def test_extra_entries_change_the_hash(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", FILES)
    plain = content_hash(str(src))
    one = content_hash(str(src), extra={BOOTSTRAPPER_PATH: b"v1"})
    two = content_hash(str(src), extra={BOOTSTRAPPER_PATH: b"v2"})
    assert len({plain, one, two}) == 3


def test_build_hash_matches_content_hash_and_bootstrapper_counts(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", FILES)
    boot = make_tree(tmp_path, {"boot1.py": "v1", "boot2.py": "v2"})
    s1 = build_snapshot(str(src), str(tmp_path / "d1"), bootstrapper_path=str(boot / "boot1.py"))
    s2 = build_snapshot(str(src), str(tmp_path / "d2"), bootstrapper_path=str(boot / "boot2.py"))
    assert s1.hash == content_hash(str(src), extra={BOOTSTRAPPER_PATH: b"v1"})
    assert s2.hash == content_hash(str(src), extra={BOOTSTRAPPER_PATH: b"v2"})
    assert s1.hash != s2.hash


def test_hash_path_file_and_dir(tmp_path: Path) -> None:
    data = make_tree(tmp_path / "data", {"a.csv": "1", "sub/b.csv": "2", ".gitignore": "*.csv\n",
                                         ".git/x": "git", ".env": "e"})
    moved = make_tree(tmp_path / "copy" / "data", {".env": "e", ".git/x": "git", "sub/b.csv": "2",
                                                   ".gitignore": "*.csv\n", "a.csv": "1"})
    h = hash_path(str(data))
    assert h == hash_path(str(moved))
    (data / ".env").write_text("E")  # no exclusions: every file counts
    assert hash_path(str(data)) != h
    f = hash_path(str(data / "a.csv"))
    assert f == hash_path(str(moved / "a.csv"))
    (moved / "renamed.csv").write_text("1")
    assert hash_path(str(moved / "renamed.csv")) == f  # a file's fingerprint is its content
    (data / "a.csv").write_text("changed")
    assert hash_path(str(data / "a.csv")) != f
    with pytest.raises(SnapshotSourceMissing) as err:
        hash_path(str(tmp_path / "absent"))
    assert err.value.message == f"The path '{tmp_path / 'absent'}' does not exist."


# --------------------------------------------------------------------------
# building


def test_build_snapshot_layout(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", {
        "main.R": "print(1)\n", "R/u.R": "1", ".amlignore": "*.log\n", "sub/.gitignore": "x\n",
        "debug.log": "", ".env": "SECRET=1", ".git/HEAD": "",
    })
    dest = tmp_path / "runs" / "snap"
    snap = build_snapshot(str(src), str(dest), bootstrapper_path=str(boot))
    got = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    assert got == [".amlignore", "R/u.R", BOOTSTRAPPER_PATH, "main.R"]
    assert (dest / ".amlignore").read_text() == SNAPSHOT_AMLIGNORE
    assert SNAPSHOT_AMLIGNORE.startswith("# written by amlr: exclusions were applied")
    assert (dest / BOOTSTRAPPER_PATH).read_bytes() == boot.read_bytes()
    assert (dest / "main.R").read_text() == "print(1)\n"
    assert snap.path == str(dest) and snap.files == 2 and snap.total_bytes == 10
    assert snap.largest == [("main.R", 9), ("R/u.R", 1)]


def test_build_into_existing_empty_dir_but_not_a_full_one(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.R": "1"})
    (tmp_path / "empty").mkdir()
    build_snapshot(str(src), str(tmp_path / "empty"), bootstrapper_path=str(boot))
    with pytest.raises(SnapshotDestinationNotEmpty) as err:
        build_snapshot(str(src), str(tmp_path / "empty"), bootstrapper_path=str(boot))
    assert err.value.message == (f"The snapshot folder '{tmp_path / 'empty'}' is not empty; amlr builds snapshots "
                                 "into a new folder.")


@pytest.mark.skipif(not POSIX, reason="exec bit")
def test_exec_bit_preserved(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", {"run.sh": "#!/bin/sh\n", "plain.R": ""})
    (src / "run.sh").chmod(0o755)
    dest = tmp_path / "dest"
    build_snapshot(str(src), str(dest), bootstrapper_path=str(boot))
    assert os.access(dest / "run.sh", os.X_OK)
    assert not os.access(dest / "plain.R", os.X_OK)


def test_reserved_name(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.R": "", "_amlr/mine.R": ""})
    with pytest.raises(SnapshotReservedName, match="Rename that folder") as err:
        build_snapshot(str(src), str(tmp_path / "d"), bootstrapper_path=str(boot))
    assert err.value.kind == "snapshot_reserved_name"
    assert "_amlr" in str(err.value)
    assert not (tmp_path / "d").exists()
    # excluded by the user: no clash
    (src / ".amlignore").write_text("_amlr/\n")
    build_snapshot(str(src), str(tmp_path / "d"), bootstrapper_path=str(boot))


# --------------------------------------------------------------------------
# size guard


SIZED: Tree = {"big.csv": b"x" * 5000, "mid.rds": b"x" * 3000, "a.R": b"x" * 10,
               "b.R": b"x" * 20, "c.R": b"x" * 30, "d.R": b"x" * 40, "tiny.R": b"x"}


def test_size_warns(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", SIZED)
    messages: List[str] = []
    snap = build_snapshot(str(src), str(tmp_path / "d"), bootstrapper_path=str(boot),
                          warn_bytes=1000, max_bytes=100000, warn=messages.append)
    assert len(messages) == 1
    msg = messages[0]
    assert "7.9 KB" in msg and "big.csv (4.9 KB)" in msg and "mid.rds (2.9 KB)" in msg
    assert "d.R (40 B)" in msg and "tiny.R" not in msg and ".amlignore" in msg
    assert snap.total_bytes == 8101
    assert [p for p, _ in snap.largest] == ["big.csv", "mid.rds", "d.R", "c.R", "b.R"]


def test_size_warns_via_warnings_by_default(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", SIZED)
    with pytest.warns(UserWarning, match=r"big\.csv"):
        build_snapshot(str(src), str(tmp_path / "d"), bootstrapper_path=str(boot), warn_bytes=1000)


def test_size_fails_before_copying(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", SIZED)
    messages: List[str] = []
    with pytest.raises(SnapshotTooLarge) as err:
        build_snapshot(str(src), str(tmp_path / "d"), bootstrapper_path=str(boot),
                       warn_bytes=1000, max_bytes=4096, warn=messages.append)
    e = err.value
    assert e.kind == "snapshot_too_large" and isinstance(e, AmlrError)
    msg = str(e)
    assert "7.9 KB" in msg and "4.0 KB" in msg
    for name in ("big.csv (4.9 KB)", "mid.rds (2.9 KB)", "d.R (40 B)", "c.R (30 B)", "b.R (20 B)"):
        assert name in msg
    assert "tiny.R" not in msg
    assert ".amlignore" in msg and "datastore" in msg
    assert e.total_bytes == 8101 and e.limit_bytes == 4096 and e.largest[0] == ("big.csv", 5000)
    assert messages == []
    assert not (tmp_path / "d").exists()


def test_size_limits_from_env(tmp_path: Path, boot: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src = make_tree(tmp_path / "src", SIZED)
    messages: List[str] = []
    monkeypatch.setenv("AMLR_SNAPSHOT_WARN_MB", "0.001")  # ~1 KB
    build_snapshot(str(src), str(tmp_path / "d1"), bootstrapper_path=str(boot), warn=messages.append)
    assert len(messages) == 1
    monkeypatch.setenv("AMLR_SNAPSHOT_MAX_MB", "0.004")  # ~4 KB
    with pytest.raises(SnapshotTooLarge, match=r"big\.csv"):
        build_snapshot(str(src), str(tmp_path / "d2"), bootstrapper_path=str(boot), warn=messages.append)
    # explicit arguments beat the environment
    build_snapshot(str(src), str(tmp_path / "d3"), bootstrapper_path=str(boot),
                   warn_bytes=10**6, max_bytes=10**6, warn=messages.append)
    assert len(messages) == 1
    monkeypatch.setenv("AMLR_SNAPSHOT_MAX_MB", "lots")
    with pytest.raises(SnapshotLimitInvalid, match="AMLR_SNAPSHOT_MAX_MB"):
        build_snapshot(str(src), str(tmp_path / "d4"), bootstrapper_path=str(boot))


def test_default_limits_do_not_trigger_on_small_sources(tmp_path: Path, boot: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AMLR_SNAPSHOT_WARN_MB", raising=False)
    monkeypatch.delenv("AMLR_SNAPSHOT_MAX_MB", raising=False)
    messages: List[str] = []
    src = make_tree(tmp_path / "src", SIZED)
    build_snapshot(str(src), str(tmp_path / "d"), bootstrapper_path=str(boot), warn=messages.append)
    assert messages == []
    assert snapshot.resolve_limit(None, "AMLR_SNAPSHOT_MAX_MB", 300) == 300 * 1024 * 1024


def test_virtualenvs_and_amlr_homes_are_never_packaged(tmp_path):
    """A script in a busy folder (a temp dir, a home folder) must not snapshot its own runs."""
    from amlr import snapshot as snap_mod

    (tmp_path / "job.R").write_text("cat(1)\n")
    venv = tmp_path / "venv" / "lib"
    venv.mkdir(parents=True)
    (tmp_path / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (venv / "big.py").write_text("x = 1\n")
    home = tmp_path / "amlr-home"
    (home / "runs" / "r1").mkdir(parents=True)
    (home / "registry.sqlite").write_bytes(b"SQLite format 3\0")
    (home / "runs" / "r1" / "spec.json").write_text("{}")
    other = tmp_path / "elsewhere"
    other.mkdir()
    (other / "data.bin").write_bytes(b"\0" * 10)
    assert snap_mod.list_files(str(tmp_path)) == ["elsewhere/data.bin", "job.R"]
    assert snap_mod.list_files(str(tmp_path), exclude=[str(other)]) == ["job.R"]
    # Paths outside the source folder are irrelevant to it.
    assert snap_mod.list_files(str(other), exclude=[str(tmp_path)]) == ["data.bin"]


@pytest.mark.skipif(not POSIX, reason="exec bit")
def test_a_blob_store_links_unchanged_files_once_across_snapshots(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.R": "cat(1)\n", "data/x.csv": "1,2\n", "run.sh": "#!/bin/sh\n"})
    os.chmod(src / "run.sh", 0o755)
    store = tmp_path / "store"
    first = snapshot.build_snapshot(str(src), str(tmp_path / "s1"), bootstrapper_path=str(boot), store=str(store))
    second = snapshot.build_snapshot(str(src), str(tmp_path / "s2"), bootstrapper_path=str(boot), store=str(store))
    plain = snapshot.build_snapshot(str(src), str(tmp_path / "s3"), bootstrapper_path=str(boot))
    assert first.hash == second.hash == plain.hash  # the store changes where bytes live, not what is shipped
    assert first.records == plain.records
    digests = {rel: digest for rel, digest, _ in first.records}
    blobs = sorted(str(p.relative_to(store)) for p in store.rglob("*") if p.is_file())
    assert blobs == sorted(f"{d[:2]}/{d[2:]}" + ("-x" if rel == "run.sh" else "") for rel, d in digests.items())
    for rel in ("a.R", "data/x.csv", "run.sh"):
        blob = store / digests[rel][:2] / (digests[rel][2:] + ("-x" if rel == "run.sh" else ""))
        a, b = os.stat(tmp_path / "s1" / rel), os.stat(tmp_path / "s2" / rel)
        assert a.st_ino == b.st_ino == os.stat(blob).st_ino  # one copy on disk
        assert (tmp_path / "s2" / rel).read_bytes() == (src / rel).read_bytes()
        assert os.stat(tmp_path / "s3" / rel).st_ino != a.st_ino
    assert os.access(tmp_path / "s2" / "run.sh", os.X_OK)
    assert not list(store.rglob("*.tmp"))


def test_snapshot_too_large_carries_its_numbers(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.R": "1\n", "big.bin": "x" * 3000})
    with pytest.raises(snapshot.SnapshotTooLarge) as err:
        snapshot.build_snapshot(str(src), str(tmp_path / "s"), bootstrapper_path=str(boot), max_bytes=1000,
                                warn_bytes=500)
    assert err.value.data == {"total_bytes": 3002, "limit_bytes": 1000, "largest": [["big.bin", 3000], ["a.R", 2]]}
    assert not (tmp_path / "s").exists()


def test_reserved_names_are_checked_by_top_folder(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.R": "1\n", "_amlr/steps/x.json": "{}"})
    with pytest.raises(AmlrError) as err:
        snapshot.content_hash(str(src), extra={"_amlr/steps/a/b.json": b"{}"})
    assert err.value.kind == "snapshot_reserved_name"
    assert "contains '_amlr'" in err.value.message


def test_hash_path_ignores_ignore_files(tmp_path: Path) -> None:
    """An input folder is hashed whole: a .gitignore inside data does not hide a changed file."""
    data = make_tree(tmp_path / "data", {"a.csv": "1\n", "b.csv": "2\n", ".gitignore": "b.csv\n",
                                          ".amlignore": "a.csv\n"})
    before = snapshot.hash_path(str(data))
    (data / "b.csv").write_text("changed\n")
    middle = snapshot.hash_path(str(data))
    (data / "a.csv").write_text("changed\n")
    assert len({before, middle, snapshot.hash_path(str(data))}) == 3


def test_key_files_are_left_out_and_named_unless_shipped_on_purpose(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.R": "1\n", "id_rsa": "KEY", "certs/server.pem": "PEM", "ok.csv": "1\n"})
    told: List[str] = []
    assert snapshot.list_files(str(src), warn=told.append) == ["a.R", "ok.csv"]
    assert len(told) == 1 and "certs/server.pem" in told[0] and "id_rsa" in told[0]
    assert told[0].startswith(f"Left out of the snapshot of '{src}' as key or credential files:")
    with pytest.warns(UserWarning, match="id_rsa"):  # the default warning of build_snapshot
        snapshot.build_snapshot(str(src), str(tmp_path / "s"), bootstrapper_path=str(boot))
    assert not (tmp_path / "s" / "id_rsa").exists()
    (src / ".amlignore").write_text("!id_rsa\n")
    told.clear()
    assert snapshot.list_files(str(src), warn=told.append) == ["a.R", "id_rsa", "ok.csv"]
    assert any("id_rsa" in t for t in told)


def test_a_too_large_snapshot_names_its_folder(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.R": "1\n", "big.bin": "x" * 3000})
    with pytest.raises(snapshot.SnapshotTooLarge) as err:
        snapshot.build_snapshot(str(src), str(tmp_path / "s"), bootstrapper_path=str(boot), max_bytes=1000)
    assert str(src) in err.value.message and "big.bin" in err.value.message


# --------------------------------------------------------------------------
# pinned formats and exact messages


@pytest.mark.skipif(not POSIX, reason="exec bit")
def test_the_snapshot_hash_format_is_pinned(tmp_path: Path) -> None:
    """Snapshots are stored and reused under their hash: the v1 format must not drift.

    sha256 over ``amlr-snapshot-v1\\0`` and, per file sorted by path, ``path \\0
    sha256(content) \\0 x|- \\n``; extra entries (the bootstrapper) are never executable.
    """
    src = make_tree(tmp_path / "src", {"main.R": "print(1)\n", "R/u.R": "u <- 1\n", "run.sh": "#!/bin/sh\n"})
    (src / "run.sh").chmod(0o755)
    extra = {BOOTSTRAPPER_PATH: b"boot\n"}
    spelled = hashlib.sha256(b"amlr-snapshot-v1\0")
    for rel, data, mark in sorted([("main.R", b"print(1)\n", b"-"), ("R/u.R", b"u <- 1\n", b"-"),
                                   ("run.sh", b"#!/bin/sh\n", b"x"), (BOOTSTRAPPER_PATH, b"boot\n", b"-")]):
        spelled.update(rel.encode() + b"\0" + hashlib.sha256(data).hexdigest().encode() + b"\0" + mark + b"\n")
    pinned = "8012db36a95247d596b0b4a1a14e2edf6c04da9b2aa30cc7d53997b13c5e33a4"
    assert spelled.hexdigest() == pinned
    assert content_hash(str(src), extra=extra) == pinned
    boot = tmp_path / "boot.py"
    boot.write_bytes(b"boot\n")
    assert build_snapshot(str(src), str(tmp_path / "d"), bootstrapper_path=str(boot)).hash == pinned
    assert content_hash(str(src)) == "1f340617c6cdaa9c09f7549f0d1c21c95d3e88349a57570e6c840cc2e7f1605b"


def test_a_missing_or_non_folder_source_is_named_exactly(tmp_path: Path) -> None:
    missing, a_file = tmp_path / "nope", tmp_path / "job.R"
    a_file.write_text("1\n")
    advice = "Check the step's source_dir (by default the folder of its script)."
    with pytest.raises(SnapshotSourceMissing) as err:
        list_files(str(missing))
    assert err.value.message == f"The source folder '{missing}' does not exist. {advice}"
    with pytest.raises(SnapshotSourceMissing) as err:
        list_files(str(a_file))
    assert err.value.message == f"The source folder '{a_file}' is not a folder. {advice}"


def test_the_credential_warning_lists_twenty_names_then_counts(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.R": "1\n", "id_rsa": "KEY", ".amlignore": "*.csv\nout/\n", "x.csv": "1",
                                       "out/y.R": "2"})
    told: List[str] = []
    assert list_files(str(src), warn=told.append) == ["a.R"]  # only the key file is named, not what .amlignore drops
    assert told == [f"Left out of the snapshot of '{src}' as key or credential files: id_rsa. To ship one on "
                    "purpose, add a line `!<name>` to .amlignore in that folder (better: pass secrets to the job "
                    "another way)."]
    make_tree(src, {f"k{i:02d}.pem": "PEM" for i in range(22)})
    told.clear()
    list_files(str(src), warn=told.append)
    names = ", ".join(["id_rsa"] + [f"k{i:02d}.pem" for i in range(19)])
    assert len(told) == 1 and f"files: {names} and 3 more. To ship" in told[0]


def test_a_credential_folder_named_back_in_is_warned_about_as_a_folder(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.R": "1\n", ".ssh/config": "Host x\n", ".aws/credentials": "k\n",
                                       ".amlignore": "!.ssh/\n"})
    told: List[str] = []
    assert list_files(str(src), warn=told.append) == [".ssh/config", "a.R"]
    assert told[0] == f"Left out of the snapshot of '{src}' as key or credential files: .aws/. To ship one on " \
                      "purpose, add a line `!<name>` to .amlignore in that folder (better: pass secrets to the job " \
                      "another way)."
    assert told[1] == f"Shipping key or credential files in the snapshot of '{src}' because an ignore file names " \
                      "them back in: .ssh/. Anyone who can read the job's snapshot can read them."


# --------------------------------------------------------------------------
# the blob store and its digest cache


def _second_file_system(near: Path) -> Optional[str]:
    """A writable folder on another file system than ``near`` (/dev/shm on Linux), if there is one."""
    shm = "/dev/shm"
    if os.path.isdir(shm) and os.access(shm, os.W_OK) and os.stat(shm).st_dev != os.stat(near).st_dev:
        return shm
    return None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics (/dev/shm)")
def test_a_store_on_another_file_system_is_copied_from_not_linked(tmp_path: Path, boot: Path) -> None:
    """A hard link cannot cross file systems: the snapshot gets a copy of the blob instead."""
    other = _second_file_system(tmp_path)
    assert other is not None, "no second file system (/dev/shm) to put the store on"
    src = make_tree(tmp_path / "src", {"a.R": "cat(1)\n", "data/x.csv": "1,2\n", "run.sh": "#!/bin/sh\n"})
    os.chmod(src / "run.sh", 0o755)
    top = tempfile.mkdtemp(prefix="amlr-test-store-", dir=other)
    try:
        store = os.path.join(top, "objects")
        plain = build_snapshot(str(src), str(tmp_path / "plain"), bootstrapper_path=str(boot))
        for name in ("s1", "s2"):  # the first build stores the blobs, the second finds them stored
            snap = build_snapshot(str(src), str(tmp_path / name), bootstrapper_path=str(boot), store=store)
            assert snap.hash == plain.hash and snap.records == plain.records
            for rel, digest, executable in snap.records:
                copied = tmp_path / name / rel
                blob = os.path.join(store, digest[:2], digest[2:] + ("-x" if executable else ""))
                assert copied.read_bytes() == (src / rel).read_bytes() == Path(blob).read_bytes()
                assert os.stat(copied).st_nlink == 1 and os.stat(blob).st_nlink == 1
                assert os.access(copied, os.X_OK) is (rel == "run.sh")
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_the_digest_cache_keeps_settled_files_only(tmp_path: Path, boot: Path) -> None:
    """Files changed in the last seconds are not cached (their next change may keep the mtime)."""
    src = make_tree(tmp_path / "src", {"a.R": "cat(1)\n", "data/x.csv": "1,2\n"})
    store = tmp_path / "home" / "objects"
    cache = tmp_path / "home" / snapshot.DIGEST_CACHE
    build_snapshot(str(src), str(tmp_path / "s1"), bootstrapper_path=str(boot), store=str(store))
    assert not cache.exists()  # every file is new: nothing to keep, nothing written
    old = time.time() - 3600
    for rel in ("a.R", "data/x.csv"):
        os.utime(src / rel, (old, old))
    snap = build_snapshot(str(src), str(tmp_path / "s2"), bootstrapper_path=str(boot), store=str(store))
    entries = json.loads(cache.read_text(encoding="utf-8"))
    expected = {}
    for rel, digest, _ in snap.records:
        st = os.stat(src / rel)
        expected[str(src / rel)] = [st.st_size, st.st_mtime_ns, st.st_ino, digest]
        assert digest == hashlib.sha256((src / rel).read_bytes()).hexdigest()
    assert entries == expected
    assert not list(cache.parent.glob("*.tmp"))
    # Like git's index, a settled file is trusted by (size, mtime, inode): the cached digest is used.
    st = os.stat(src / "a.R")
    with open(src / "a.R", "r+b") as fh:
        fh.write(b"cat(2)\n")
    os.utime(src / "a.R", ns=(st.st_atime_ns, st.st_mtime_ns))
    again = build_snapshot(str(src), str(tmp_path / "s3"), bootstrapper_path=str(boot), store=str(store))
    assert again.records == snap.records
    # A damaged cache is a cache lost, not an error: it is rebuilt.
    cache.write_text("{not json", encoding="utf-8")
    os.utime(src / "a.R", (old - 10, old - 10))
    fresh = build_snapshot(str(src), str(tmp_path / "s4"), bootstrapper_path=str(boot), store=str(store))
    assert {r: d for r, d, _ in fresh.records}["a.R"] == hashlib.sha256(b"cat(2)\n").hexdigest()
    assert json.loads(cache.read_text(encoding="utf-8"))[str(src / "a.R")][3] == \
        hashlib.sha256(b"cat(2)\n").hexdigest()


@pytest.mark.parametrize("n, shown", [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.0 KB"), (1536, "1.5 KB"), (300 * 1024 ** 2, "300.0 MB"),
    (5 * 1024 ** 3, "5.0 GB"), (2 * 1024 ** 4, "2.0 TB"), (1024 ** 5, "1024.0 TB"),
])
def test_human_size(n: int, shown: str) -> None:
    assert snapshot.human_size(n) == shown


def test_the_size_limits_are_exclusive_and_the_messages_whole(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.bin": b"x" * 3000, "b.R": b"x" * 72})  # 3072 B = 3.0 KB
    messages: List[str] = []
    build_snapshot(str(src), str(tmp_path / "at"), bootstrapper_path=str(boot), warn_bytes=3072, max_bytes=3072,
                   warn=messages.append)
    assert messages == []  # at the limit is not above it
    build_snapshot(str(src), str(tmp_path / "warn"), bootstrapper_path=str(boot), warn_bytes=3071,
                   max_bytes=3072, warn=messages.append)
    advice = ("Add them to .amlignore in that folder, or move the data to a datastore and pass it to the step "
              "as an input.")
    assert messages == [f"The snapshot of '{src}' is 3.0 KB (warning above 3.0 KB; AMLR_SNAPSHOT_WARN_MB changes "
                        f"this). Largest files: a.bin (2.9 KB), b.R (72 B). {advice}"]
    with pytest.raises(SnapshotTooLarge) as err:
        build_snapshot(str(src), str(tmp_path / "over"), bootstrapper_path=str(boot), max_bytes=3071)
    assert err.value.message == (
        f"The snapshot of '{src}' is 3.0 KB, over the limit of 3.0 KB (Azure ML refuses snapshots above 300 MB; "
        f"AMLR_SNAPSHOT_MAX_MB sets amlr's limit). Largest files: a.bin (2.9 KB), b.R (72 B). {advice}")


def test_build_snapshot_leaves_out_the_excluded_folders(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.R": "1\n", "home/runs/r1/log.txt": "x", "homework/b.R": "2\n"})
    snap = build_snapshot(str(src), str(tmp_path / "d"), bootstrapper_path=str(boot), exclude=[str(src / "home")])
    assert [rel for rel, _, _ in snap.records] == ["a.R", "homework/b.R"]
    assert not (tmp_path / "d" / "home").exists()


def test_blobs_that_share_a_fan_out_folder_are_all_stored(tmp_path: Path, boot: Path) -> None:
    """The store files a blob under the first two hex digits of its digest; many blobs share one."""
    by_prefix: Dict[str, List[str]] = {}
    i = 0
    while not any(len(v) == 3 for v in by_prefix.values()):
        text = f"x <- {i}\n"
        by_prefix.setdefault(hashlib.sha256(text.encode()).hexdigest()[:2], []).append(text)
        i += 1
    texts = next(v for v in by_prefix.values() if len(v) == 3)
    src = make_tree(tmp_path / "src", {f"f{k}.R": t for k, t in enumerate(texts)})
    store = tmp_path / "objects"
    snap = build_snapshot(str(src), str(tmp_path / "d"), bootstrapper_path=str(boot), store=str(store))
    assert len({digest[:2] for _, digest, _ in snap.records}) == 1
    for rel, digest, _ in snap.records:
        assert (store / digest[:2] / digest[2:]).read_text() == (src / rel).read_text() == \
            (tmp_path / "d" / rel).read_text()


@contextlib.contextmanager
def _permissions_bind() -> Iterator[None]:
    """Root reads anything: drop this process's effective ids to ``nobody`` for the block (and back)."""
    if not (hasattr(os, "geteuid") and os.geteuid() == 0):
        yield
        return
    os.setegid(65534)
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux process semantics (file permissions)")
def test_an_unreadable_file_or_folder_is_named_with_its_source_folder() -> None:
    top = Path(tempfile.mkdtemp(prefix="amlr-test-unreadable-"))
    try:
        src = make_tree(top / "src", {"a.R": "1\n", "secret.R": "2\n", "locked/x.R": "3\n"})
        boot = make_tree(top, {"boot.py": "print(1)\n"}) / "boot.py"
        for path in [top, *top.rglob("*")]:
            os.chmod(path, 0o777 if path == top else 0o755 if path.is_dir() else 0o644)
        os.chmod(src / "locked", 0)
        with _permissions_bind(), pytest.raises(snapshot.SourceUnreadable) as err:
            list_files(str(src))
        assert err.value.message == (
            f"The folder '{src / 'locked'}' in the source folder '{src}' cannot be read (Permission denied). "
            "Make it readable (chmod), or leave it out with a line in .amlignore.")
        os.chmod(src / "locked", 0o755)
        unreadable = (f"The file 'secret.R' in the source folder '{src}' cannot be read (permission denied), so the "
                      "snapshot cannot include it. Make it readable (chmod u+r), or leave it out with a line "
                      "`secret.R` in .amlignore.")
        old = time.time() - 3600
        for rel in ("a.R", "secret.R", "locked/x.R"):
            os.utime(src / rel, (old, old))
        store = top / "home" / "objects"
        with _permissions_bind():
            (top / "home").mkdir()
            cached = build_snapshot(str(src), str(top / "s0"), bootstrapper_path=str(boot), store=str(store))
        digest = {rel: d for rel, d, _ in cached.records}["secret.R"]
        os.remove(store / digest[:2] / digest[2:])  # cleaned from the store, still in the digest cache
        os.chmod(src / "secret.R", 0)
        for name, kw in (("s1", {}), ("s2", {"store": str(store)})):
            with _permissions_bind(), pytest.raises(snapshot.SourceUnreadable) as err:
                build_snapshot(str(src), str(top / name), bootstrapper_path=str(boot), **kw)
            assert err.value.message == unreadable
        with open(top / "home" / snapshot.DIGEST_CACHE, encoding="utf-8") as fh:
            del_entry = json.load(fh)
        del_entry.pop(str(src / "secret.R"))  # not cached: the digest needs the content
        with open(top / "home" / snapshot.DIGEST_CACHE, "w", encoding="utf-8") as fh:
            json.dump(del_entry, fh)
        with _permissions_bind(), pytest.raises(snapshot.SourceUnreadable) as err:
            build_snapshot(str(src), str(top / "s3"), bootstrapper_path=str(boot), store=str(store))
        assert err.value.message == unreadable
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_staged_snapshot_is_named_by_its_hash_and_leaves_no_staging(tmp_path: Path, boot: Path) -> None:
    src = make_tree(tmp_path / "src", {"a.R": "1\n", "data/x.csv": "1,2\n"})
    snaps = tmp_path / "run" / "snapshots"  # made when missing
    first = snapshot.stage_snapshot(str(src), str(snaps), bootstrapper_path=str(boot))
    again = snapshot.stage_snapshot(str(src), str(snaps), bootstrapper_path=str(boot))
    assert first.path == again.path == str(snaps / first.hash[:12])
    assert (Path(first.path) / "data" / "x.csv").read_text() == "1,2\n"
    (src / "a.R").write_text("2\n")
    changed = snapshot.stage_snapshot(str(src), str(snaps), bootstrapper_path=str(boot))
    assert changed.path == str(snaps / changed.hash[:12]) != first.path
    # the second staging of an unchanged folder is dropped: only the named snapshots remain
    assert sorted(p.name for p in snaps.iterdir()) == sorted({first.hash[:12], changed.hash[:12]})


def test_a_script_left_out_by_an_ignore_rule_is_refused_with_the_rule_to_add(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src", {"main.R": "1\n", "R/prep.R": "2\n", ".amlignore": "R/\n"})
    ok = SimpleNamespace(name="train", source_dir=str(src), script="./main.R")
    snapshot.require_scripts([ok])
    bad = SimpleNamespace(name="prep", source_dir=str(src), script="R/prep.R")
    with pytest.raises(snapshot.ScriptExcluded) as err:
        snapshot.require_scripts([ok, bad], {os.path.realpath(src): ["main.R"]})
    assert err.value.kind == "script_excluded" and err.value.field == "steps[prep].script"
    assert err.value.message == (
        f"The script 'R/prep.R' of step `prep` is left out of its snapshot of '{src}' by an ignore rule "
        "(.amlignore, else .gitignore, in that folder or above the script), so the job could not run it. Add a "
        f"line `!R/prep.R` to .amlignore in '{src}', or remove the rule that matches it.")


def test_a_step_writing_to_its_snapshot_does_not_change_the_store_or_the_next_snapshot(tmp_path):
    """A step runs in its snapshot, whose files are hard links to the store's blobs: writing to one
    writes to the blob. Such a blob is not trusted again; the next snapshot gets the source's content."""
    src = make_tree(tmp_path / "src", {"data.txt": "original\n", "main.R": "1\n"})
    boot = make_tree(tmp_path, {"b.py": ""}) / "b.py"
    store = str(tmp_path / "objects")
    first = stage_snapshot(str(src), str(tmp_path / "run1"), bootstrapper_path=str(boot), store=store)
    with open(os.path.join(first.path, "data.txt"), "w") as fh:  # what R's writeLines("data.txt") does
        fh.write("changed by the step\n")
    second = stage_snapshot(str(src), str(tmp_path / "run2"), bootstrapper_path=str(boot), store=store)
    assert second.hash == first.hash  # the same source
    assert (Path(second.path) / "data.txt").read_text() == "original\n"
    assert (Path(first.path) / "data.txt").read_text() == "changed by the step\n"  # the first run keeps its own
    blobs = [p for p in Path(store).rglob("*") if p.is_file()]
    assert sorted(p.read_text() for p in blobs) == ["1\n", "original\n"]
    assert all(p.stat().st_mtime_ns == snapshot.SEALED_MTIME_NS for p in blobs)
    import zipfile  # a sealed file still goes into a ZIP (which cannot hold times before 1980)

    with zipfile.ZipFile(tmp_path / "code.zip", "w") as zf:
        zf.write(os.path.join(second.path, "data.txt"), "data.txt")
    third = stage_snapshot(str(src), str(tmp_path / "run3"), bootstrapper_path=str(boot), store=store)
    assert os.path.samefile(os.path.join(third.path, "data.txt"), os.path.join(second.path, "data.txt"))
