"""A step's code: the files of its folder that it can read, for reuse and for its snapshot.

One rule serves every backend (the local fingerprint and the per-step
snapshots uploaded to Azure ML): a step's code is

* its script;
* the R files it ``source()``s / ``sys.source()``s, found statically and
  followed transitively (a literal path, ``file.path("R", "x.R")`` or
  ``here::here("R", "x.R")`` of literals);
* when any such call cannot be resolved (a variable, ``lapply(files, source)``,
  a path that is not in the folder), every R file of the folder instead;
* the files named in ``r_step(files = )``;
* every file of the folder that is not an R file (data, models, config).

Never part of it: the entry scripts of the *other* steps of the pipeline, and
R files that build or submit a pipeline (they call ``r_pipeline()`` /
``submit_r_pipeline()`` and are not sourced by the step) -- editing them must
not re-run a step that never reads them.

The scan is a small R tokenizer (strings, raw strings, comments, backticks),
not R's parser: this runs in the stdlib-only Python that submits jobs, and a
false "cannot resolve" only costs precision, never correctness.
"""
from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Optional, Sequence

R_FILE_RE = re.compile(r"\.[Rr]$")
SOURCE_FUNS = {"source", "sys.source"}
PATH_FUNS = {"file.path", "here", "here::here"}
BUILDER_FUNS = {"r_pipeline", "submit_r_pipeline", "amlr::r_pipeline", "amlr::submit_r_pipeline"}

_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<comment>\#[^\n]*)
  | (?P<raw>[rR]["'](?P<dash>-*)(?P<open>[\(\[\{]))
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<bt>`[^`]*`)
  | (?P<ident>(?:[A-Za-z.][A-Za-z0-9._]*)(?:::[A-Za-z.][A-Za-z0-9._]*)?)
  | (?P<num>[0-9][0-9.eExXa-fA-FLi]*)
  | (?P<op>.)
    """,
    re.VERBOSE | re.DOTALL,
)
_CLOSE = {"(": ")", "[": "]", "{": "}"}
_ESCAPES = {"n": "\n", "t": "\t", "\\": "\\", '"': '"', "'": "'", "/": "/"}


@dataclass(frozen=True)
class Token:
    kind: str  # ident | str | op | num
    text: str


def tokens(code: str) -> list[Token]:
    """R tokens without whitespace and comments; string tokens carry their value."""
    out: list[Token] = []
    pos = 0
    while pos < len(code):
        m = _TOKEN_RE.match(code, pos)
        if m is None:  # pragma: no cover - the op branch matches any character
            break
        if m.group("raw"):
            close = _CLOSE[m.group("open")] + m.group("dash") + m.group(0)[1]
            end = code.find(close, m.end())
            end = len(code) if end < 0 else end
            out.append(Token("str", code[m.end():end]))
            pos = end + len(close)
            continue
        if m.group("str"):
            body = m.group("str")[1:-1]
            out.append(Token("str", re.sub(r"\\(.)", lambda e: _ESCAPES.get(e.group(1), e.group(1)), body)))
        elif m.group("ident"):
            out.append(Token("ident", m.group("ident")))
        elif m.group("bt"):
            out.append(Token("ident", m.group("bt")[1:-1]))
        elif m.group("num"):
            out.append(Token("num", m.group("num")))
        elif m.group("op"):
            out.append(Token("op", m.group("op")))
        pos = m.end()
    return out


def _call_args(toks: Sequence[Token], open_index: int) -> tuple[list[list[Token]], int]:
    """The comma-separated arguments of the call whose "(" is at ``open_index``; index after ")"."""
    args: list[list[Token]] = [[]]
    depth = 0
    i = open_index + 1
    while i < len(toks):
        t = toks[i]
        if t.kind == "op" and t.text in "([{":
            depth += 1
        elif t.kind == "op" and t.text in ")]}":
            if depth == 0:
                return ([] if args == [[]] else args), i + 1
            depth -= 1
        elif t.kind == "op" and t.text == "," and depth == 0:
            args.append([])
            i += 1
            continue
        args[-1].append(t)
        i += 1
    return args, i


def _literal_path(arg: list[Token]) -> Optional[str]:
    """The path an argument spells with literals only, else None."""
    if len(arg) >= 2 and arg[0].kind == "ident" and arg[1].text == "=" and arg[0].text in ("file", "exprs"):
        arg = arg[2:]
    if len(arg) == 1 and arg[0].kind == "str":
        return arg[0].text
    if len(arg) >= 3 and arg[0].kind == "ident" and arg[0].text in PATH_FUNS and arg[1].text == "(":
        inner, end = _call_args(arg, 1)
        if end == len(arg) and inner and all(len(a) == 1 and a[0].kind == "str" for a in inner):
            return "/".join(a[0].text for a in inner)
    return None


@dataclass
class Scan:
    sourced: list[str]
    """Literal paths given to source()/sys.source(), as written."""
    unresolved: bool
    """A source()/sys.source() this scan cannot follow."""
    builds_pipeline: bool
    """Calls r_pipeline() or submit_r_pipeline()."""


def scan(code: str) -> Scan:
    toks = tokens(code)
    sourced: list[str] = []
    unresolved = False
    builds = False
    for i, t in enumerate(toks):
        if t.kind != "ident":
            continue
        name = t.text.split("::")[-1] if t.text.startswith("base::") else t.text
        prev = toks[i - 1].text if i else ""
        nxt = toks[i + 1] if i + 1 < len(toks) else None
        if prev in ("$", "@"):
            continue  # x$source is a field, not the function
        if t.text in BUILDER_FUNS and nxt is not None and nxt.text == "(":
            builds = True
        if name not in SOURCE_FUNS:
            continue
        if nxt is not None and nxt.text == "=" and prev in ("(", ","):
            continue  # an argument named `source`
        if nxt is None or nxt.text != "(":
            unresolved = True  # source passed as a function (lapply(files, source))
            continue
        args, _ = _call_args(toks, i + 1)
        path = _literal_path(args[0]) if args else None
        if path is None:
            unresolved = True
        else:
            sourced.append(path)
    return Scan(sourced, unresolved, builds)


def _normal(rel: str) -> Optional[str]:
    """A POSIX path relative to the folder root, or None when it leaves the folder or is absolute."""
    rel = rel.replace("\\", "/")
    if rel.startswith("/") or re.match(r"^[A-Za-z]:", rel) or rel.startswith("~"):
        return None
    norm = posixpath.normpath(rel)
    if norm == ".." or norm.startswith("../"):
        return None
    return norm


@dataclass
class StepCode:
    files: list[str]
    """The folder's files (relative POSIX paths) that make up the step's code."""
    conservative: bool
    """True when an unresolved source() call made every R file count."""
    reason: Optional[str] = None


def step_code(script: str, all_files: Iterable[str], read: Callable[[str], str], *,
              other_scripts: Iterable[str] = (), extra_files: Iterable[str] = ()) -> StepCode:
    """The files of the folder that are the step's code (see the module docstring).

    ``all_files``: the snapshot's files (relative POSIX paths); ``read(rel)``
    returns a file's text; ``other_scripts``: the other steps' entry scripts.
    """
    files = sorted(set(all_files))
    present = set(files)
    others = {s for s in other_scripts if s != script}
    r_files = [f for f in files if R_FILE_RE.search(f)]
    wanted: set[str] = {f for f in files if not R_FILE_RE.search(f)}
    wanted.update(f for f in extra_files if f in present)
    wanted.update(f for f in present for e in extra_files if f.startswith(e.rstrip("/") + "/"))
    seen: set[str] = set()
    queue = [script]
    reason: Optional[str] = None
    while queue:
        rel = queue.pop()
        if rel in seen:
            continue
        seen.add(rel)
        if rel not in present:
            continue
        try:
            found = scan(read(rel))
        except (OSError, UnicodeDecodeError):
            reason = reason or f"{rel} could not be read as text"
            continue
        if found.unresolved:
            reason = reason or f"{rel} calls source() with a path that is not a literal"
        for path in found.sourced:
            norm = _normal(path)
            if norm is None or norm not in present:
                reason = reason or f"{rel} sources {path!r}, which is not a file of the folder"
                continue
            queue.append(norm)
    if reason is not None:
        builders = {f for f in r_files if f not in seen and _builds(f, read)}
        wanted.update(f for f in r_files if f not in others and f not in builders)
        wanted.add(script)
        return StepCode(sorted(wanted), True, reason)
    wanted.update(seen & present)
    return StepCode(sorted(wanted), False)


def _builds(rel: str, read: Callable[[str], str]) -> bool:
    try:
        return scan(read(rel)).builds_pipeline
    except (OSError, UnicodeDecodeError):
        return False


def iter_r_files(files: Iterable[str]) -> Iterator[str]:
    return (f for f in files if R_FILE_RE.search(f))
