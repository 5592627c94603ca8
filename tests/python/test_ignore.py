"""gitignore patterns (amlr.ignore) against what git itself does, on real files.

Every row is an ignore file, the files next to it and the ones git leaves out
(``git ls-files --others --exclude-standard``, git 2.39). The test builds all
rows as folders of one real repository and checks amlr's walk and, where git
is installed, git itself against the table, so the table cannot drift from git.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Tuple

from amlr.ignore import IgnoreRules, walk_included

Case = Tuple[str, List[str], List[str]]

# (ignore file text, files, the files git ignores)
CASES: List[Case] = [
    # bracket expressions: ranges, negation, ']' and '-' as literals, POSIX classes, malformed classes
    ('[a-c]x\n', ['ax', 'bx', 'cx', 'dx', 'Ax', '-x'], ['ax', 'bx', 'cx']),
    ('[!a-c]x\n', ['ax', 'dx', 'Ax', '-x', 'éx'], ['dx', 'Ax', '-x']),
    ('[^a-c]x\n', ['ax', 'dx', '-x'], ['dx', '-x']),
    ('[]]x\n', [']x', 'ax', 'x'], [']x']),
    ('[!]]x\n', [']x', 'ax'], ['ax']),
    ('[]-a]x\n', [']x', '_x', 'ax', 'bx', '-x'], [']x', '_x', 'ax']),
    ('[a-]x\n', ['ax', '-x', 'bx'], ['ax', '-x']),
    ('[-a]x\n', ['ax', '-x', 'bx'], ['ax', '-x']),
    ('[--0]x\n', ['-x', '.x', '0x', '1x', ',x'], ['-x', '.x', '0x']),
    ('[z-a]x\n', ['zx', 'ax', 'mx'], ['zx']),
    ('[a-c-e]x\n', ['ax', 'cx', 'dx', '-x', 'ex'], ['ax', 'cx', '-x', 'ex']),
    ('[\\]]x\n', [']x', '\\x', 'ax'], [']x']),
    ('[\\\\]x\n', ['\\x', ']x'], ['\\x']),
    ('[a\\-c]x\n', ['ax', '-x', 'cx', 'bx'], ['ax', '-x', 'cx']),
    ('[a-\\c]x\n', ['ax', 'bx', 'cx', 'dx'], ['ax', 'bx', 'cx']),
    ('[\\a-c]x\n', ['ax', 'bx', '\\x', 'dx'], ['ax', 'bx']),
    ('[[:alpha:]]x\n', ['ax', 'Zx', '1x', '_x'], ['ax', 'Zx']),
    ('[[:digit:][:upper:]]x\n', ['1x', 'Ax', 'ax'], ['1x', 'Ax']),
    ('[![:alnum:]]x\n', ['ax', '1x', '_x', '-x'], ['_x', '-x']),
    ('[[:alnum:]]x\n', ['ax', 'Zx', '5x', '_x'], ['ax', 'Zx', '5x']),
    ('[[:space:]]x\n', [' x', '\tx', 'ax'], [' x', '\tx']),
    ('[[:blank:]]x\n', [' x', '\tx', '\x0bx', 'ax'], [' x', '\tx']),
    ('[[:punct:]]x\n', ['!x', '_x', '~x', '@x', '[x', 'ax', '0x'], ['!x', '_x', '~x', '@x', '[x']),
    ('[[:xdigit:]]x\n', ['fx', 'Fx', '9x', 'gx'], ['fx', 'Fx', '9x']),
    ('[[:lower:]]x\n', ['ax', 'Ax', '1x'], ['ax']),
    ('[[:upper:]]x\n', ['ax', 'Ax', '1x'], ['Ax']),
    ('[[:print:]]x\n', [' x', 'ax', '\x01x'], [' x', 'ax']),
    ('[[:graph:]]x\n', [' x', 'ax', '~x'], ['ax', '~x']),
    ('[[:cntrl:]]x\n', ['\x01x', '\x7fx', 'ax'], ['\x01x', '\x7fx']),
    ('[[:foo:]]x\n', ['fx', '[x', ':x'], []),
    ('[[:alpha:]x\n', ['ax', 'xx'], []),
    ('[[:alpha]]x\n', ['a]x', '[]x', ':]x', 'ax', 'b]x'], ['a]x', '[]x', ':]x']),
    ('[[:]]x\n', ['[]x', ':]x', ']x'], ['[]x', ':]x']),
    ('[[::]]x\n', [':]x', '[]x', 'x', '::]x'], []),
    ('[[:a]]x\n', ['a]x', '[]x', ':]x'], ['a]x', '[]x', ':]x']),
    ('[[]x\n', ['[x', 'x'], ['[x']),
    ('[[-a]x\n', ['[x', '\\x', ']x', '^x', 'ax', 'bx'], ['[x', '\\x', ']x', '^x', 'ax']),
    ('[a-[:alpha:]]x\n', ['a]x', ':]x', 'l]x', 'b]x', 'ax'], ['a]x', ':]x', 'l]x']),
    ('x[a-c\n', ['x[a-c', 'xa'], []),
    ('x[\n', ['x[', 'x'], []),
    ('x[a-\n', ['x[a-', 'xa', 'x-'], []),
    ('[\n', ['[', 'a'], []),
    ('[!]\n', ['!', 'a'], []),
    # escapes
    ('\\[a]x\n', ['[a]x', 'ax'], ['[a]x']),
    ('x\\*\n', ['x*', 'xa'], ['x*']),
    ('x\\?\n', ['x?', 'xa'], ['x?']),
    ('x\\\n', ['x\\', 'x'], []),
    ('\\a\\b\n', ['ab', '\\a\\b'], ['ab']),
    ('\\#c\n#c\n', ['#c', 'c'], ['#c']),
    ('\\!b\n', ['!b', 'b'], ['!b']),
    # names and patterns are compared as UTF-8 bytes: '?' is one byte, an 'é' is two
    ('caf?.R\n', ['café.R', 'cafe.R'], ['cafe.R']),
    ('caf??.R\n', ['café.R', 'cafe.R'], ['café.R']),
    ('[é]\n', ['é', 'e'], []),
    ('[é][é]\n', ['é', 'e'], ['é']),
    ('[!a][!a]\n', ['é', 'ab', 'bb'], ['é', 'bb']),
    ('é*\n', ['éa', 'ea'], ['éa']),
    # trailing spaces (unless escaped), tabs, leading spaces, CR, BOM
    ('sp  \n', ['sp', 'sp ', 'sp  '], ['sp']),
    ('sp\\ \n', ['sp', 'sp ', 'sp  '], ['sp ']),
    ('sp\\  \n', ['sp', 'sp ', 'sp  '], ['sp ']),
    ('sp \\ \n', ['sp', 'sp ', 'sp  '], ['sp  ']),
    ('sp\\\\ \n', ['sp', 'sp\\', 'sp\\ '], ['sp\\']),
    ('sp\t\n', ['sp', 'sp\t'], ['sp\t']),
    (' lead\n', ['lead', ' lead'], [' lead']),
    ('cr\r\n', ['cr', 'cr\r'], ['cr']),
    ('cr\r\r\n', ['cr', 'cr\r'], ['cr\r']),
    ('\ufeffbom\n', ['bom', '\ufeffbom'], ['bom']),
    ('x\n\ufeffbom\n', ['bom', '\ufeffbom', 'x'], ['\ufeffbom', 'x']),
    ('   \n \\ \n', [' ', 'a'], []),
    # negation: the last match wins; nothing below an excluded folder comes back
    ('*.log\n!keep.log\n', ['a.log', 'keep.log', 'a.txt'], ['a.log']),
    ('!keep.log\n*.log\n', ['a.log', 'keep.log', 'a.txt'], ['a.log', 'keep.log']),
    ('n*\n!n1\nn1\n', ['n1', 'n2', 'm'], ['n1', 'n2']),
    ('!\n', ['!', 'a'], []),
    ('!!b\n', ['!b', 'b'], []),
    ('dir/\n!dir/f\n', ['dir/f', 'dir/g', 'f'], ['dir/f', 'dir/g']),
    ('dir/*\n!dir/f\n', ['dir/f', 'dir/g', 'dir/h/f'], ['dir/g', 'dir/h/f']),
    ('d\n!d/\n', ['d/f', 'e/d'], ['e/d']),
    # '**': leading, trailing, middle, after the literal start, before an escaped '/'
    ('**/d\n', ['d/f', 'e/d/f', 'e/f/d', 'dd/f'], ['d/f', 'e/d/f', 'e/f/d']),
    ('d/**\n', ['d/f', 'd/e/f', 'dd/f'], ['d/f', 'd/e/f']),
    ('d/**/f\n', ['d/f', 'd/e/f', 'd/e/g/f', 'x/d/f', 'd/fx'], ['d/f', 'd/e/f', 'd/e/g/f']),
    ('d**/f\n', ['df', 'd/f', 'd/e/f', 'dx/f', 'dx/y/f', 'e/d/f'], ['df', 'd/f', 'd/e/f', 'dx/f', 'dx/y/f']),
    ('e/d**/f\n', ['e/df', 'e/d/f', 'e/d/x/f'], ['e/df', 'e/d/f', 'e/d/x/f']),
    ('d/**\\/f\n', ['d/f', 'd/e/f', 'd/e/g/f'], ['d/e/f', 'd/e/g/f']),
    ('**\\/f\n', ['f', 'e/f', 'e/g/f'], ['e/f', 'e/g/f']),
    ('***/f\n', ['f', 'e/f', 'e/g/f'], ['f', 'e/f', 'e/g/f']),
    ('d/***\n', ['d/f', 'd/e/f'], ['d/f', 'd/e/f']),
    ('d/**x\n', ['d/ax', 'd/e/x', 'd/x'], ['d/ax', 'd/x']),
    ('d/x**\n', ['d/xa', 'd/x/e', 'd/y'], ['d/xa', 'd/x/e']),
    ('a**b\n', ['ab', 'axb', 'e/axb', 'a/b'], ['ab', 'axb', 'e/axb']),
    ('**\n', ['a', 'e/f'], ['a', 'e/f']),
    ('d/**/\n', ['d/e/f', 'd/f'], ['d/e/f']),
    ('/**/f\n', ['f', 'e/f', 'g'], ['f', 'e/f']),
    ('*/**/f\n', ['f', 'e/f', 'e/g/f'], ['e/f', 'e/g/f']),
    ('?*/f\n', ['f', 'e/f', 'ee/f', 'e/g/f'], ['e/f', 'ee/f']),
    ('[de]**/f\n', ['df', 'd/f', 'd/e/f'], ['d/f']),
    ('?**/x\n', ['ax', 'a/x', 'ab/x', 'a/b/x', 'x'], ['a/x', 'ab/x']),
    # a newline is a character of a name like any other
    ('a**\n', ['a\nb', 'ab', 'b'], ['a\nb', 'ab']),
    ('n/**\n', ['n/a\nb', 'n/c'], ['n/a\nb', 'n/c']),
    ('?\n', ['\n', 'ab'], ['\n']),
    # anchoring (a '/' at the start or in the middle) and folder-only patterns
    ('e/f\n', ['e/f', 'x/e/f'], ['e/f']),
    ('/f\n', ['f', 'e/f'], ['f']),
    ('f/\n', ['f', 'x/f/g'], ['x/f/g']),
    ('/x/\n', ['x/g', 'e/x/g'], ['x/g']),
    ('*/f\n', ['e/f', 'e/g/f', 'f'], ['e/f']),
    ('?\n', ['a', 'e/b', 'ab', 'é'], ['a', 'e/b']),
    ('e/?\n', ['e/a', 'e/ab', 'e/g/a'], ['e/a', 'e/g/a']),
    ('e/*\n', ['e/a', 'e/g/a', 'f'], ['e/a', 'e/g/a']),
]

_WINDOWS_UNFIT = set('\\:*?"<>|') | {chr(c) for c in range(32)}


def _cases() -> List[Case]:
    """The rows whose file names this platform can create."""
    if os.name != "nt":
        return CASES
    return [c for c in CASES
            if not any(set(f) & _WINDOWS_UNFIT or f.endswith((" ", ".")) for f in c[1])]


def _in_memory(text: str, files: List[str]) -> List[str]:
    """The files a walk would leave out: the file or one of its folders is excluded."""
    rules = IgnoreRules.from_text(text)
    out = []
    for rel in files:
        parts = rel.split("/")
        if any(rules.is_ignored("/".join(parts[:i]), i < len(parts)) for i in range(1, len(parts) + 1)):
            out.append(rel)
    return out


def _build(repo: Path, cases: List[Case]) -> Dict[str, Tuple[str, List[str]]]:
    folders = {}
    for k, (text, files, _) in enumerate(cases):
        folder = repo / f"c{k:03d}"
        for rel in files:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            (folder / rel).write_bytes(b"")
        (folder / ".gitignore").write_bytes(text.encode("utf-8"))
        folders[folder.name] = (text, files)
    return folders


def _git_included(repo: Path, tmp_path: Path) -> List[str]:
    env = dict(os.environ, HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "xdg"),
               GIT_CONFIG_NOSYSTEM="1", GIT_CONFIG_GLOBAL=os.devnull)
    subprocess.run(["git", "init", "-q", str(repo)], check=True, env=env)
    out = subprocess.run(["git", "-C", str(repo), "ls-files", "-z", "--others", "--exclude-standard"],
                         check=True, env=env, capture_output=True).stdout
    return [p for p in out.decode("utf-8", "surrogateescape").split("\0") if p]


def test_ignore_rules_read_each_pattern_as_git_does() -> None:
    cases = _cases()
    got = {text: _in_memory(text, files) for text, files, _ in cases}
    assert got == {text: ignored for text, _, ignored in cases}


def test_a_walk_leaves_out_what_git_leaves_out(tmp_path: Path) -> None:
    cases = _cases()
    repo = tmp_path / "repo"
    folders = _build(repo, cases)
    expected = {text: ignored for text, _, ignored in cases}

    def ignored(included: List[str], prefix: str) -> Dict[str, List[str]]:
        kept = set(included)
        return {text: [f for f in files if prefix.format(name) + f not in kept]
                for name, (text, files) in folders.items()}

    # each row's folder as the root of a walk (its ignore file is the root's) ...
    alone = {name: walk_included(str(repo / name)) for name in folders}
    assert {text: [f for f in files if f not in alone[name]] for name, (text, files) in folders.items()} == expected
    # ... and all of them below one root (each ignore file applies to its folder)
    whole = walk_included(str(repo), skip=lambda rel, is_dir: rel == ".git")
    assert ignored(whole, "{}/") == expected
    if shutil.which("git") is not None:
        assert ignored(_git_included(repo, tmp_path), "{}/") == expected


def test_names_and_patterns_that_are_not_utf8_are_compared_as_bytes(tmp_path: Path) -> None:
    """A Latin-1 ignore file and Latin-1 file names (any bytes but NUL and / are a name on POSIX)."""
    if os.name == "nt" or sys.platform == "darwin":  # these file systems insist on Unicode names
        return
    repo = tmp_path / "repo"
    repo.mkdir()
    names = [b"caf\xe9.R", b"caf\xc3\xa9.R", b"cafe.R", b"na\xefve.csv", b"x\xff"]
    for name in names:
        (repo / os.fsdecode(name)).write_bytes(b"")
    (repo / ".gitignore").write_bytes(b"caf\xe9.R\nna?ve.csv\nx[\xfe-\xff]\n")
    kept = sorted(os.fsencode(p) for p in walk_included(str(repo), skip=lambda rel, is_dir: rel == ".git"))
    assert kept == sorted([b".gitignore", b"caf\xc3\xa9.R", b"cafe.R"])
    if shutil.which("git") is not None:
        assert sorted(os.fsencode(p) for p in _git_included(repo, tmp_path)) == kept


def test_rules_from_text_apply_below_their_base_folder() -> None:
    rules = IgnoreRules.from_text("x\n/y\n", base="sub")
    assert [rules.match(p, False) for p in ("x", "y", "sub/x", "sub/y", "sub/deep/x", "sub/deep/y", "subx/x")] == \
        [None, None, True, True, True, None, None]


def test_a_lone_surrogate_in_a_name_or_pattern_is_matched_not_an_error() -> None:
    """No file name decodes to one, but a caller's string may hold it: it is compared as its UTF-8 bytes."""
    rules = IgnoreRules.from_text("a\ud800?\n")
    assert rules.match("a\ud800b", False) is True
    assert rules.match("a\ud800", False) is None
    assert rules.match("ab", False) is None


def test_a_walk_without_a_report_still_leaves_out_credentials(tmp_path: Path) -> None:
    for rel, text in {"a.R": "1", "id_rsa": "K", "keep/id_ed25519": "K", "x.pem": "P", ".amlignore": "!keep/*\n"}.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert walk_included(str(tmp_path), credentials=True) == [".amlignore", "a.R", "keep/id_ed25519"]
    assert walk_included(str(tmp_path)) == [".amlignore", "a.R", "id_rsa", "keep/id_ed25519", "x.pem"]
