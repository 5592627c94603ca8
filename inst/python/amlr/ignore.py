"""gitignore-style exclusion rules, stdlib only.

Semantics follow git's ``gitignore(5)``:

* blank lines and lines starting with ``#`` are skipped; trailing spaces are
  dropped unless escaped with ``\\``; ``\\`` escapes any character (``\\#``,
  ``\\!``, ``\\ ``); a trailing CR and a leading UTF-8 BOM are dropped;
* ``!`` negates (re-includes); the last matching pattern wins;
* a trailing ``/`` makes a pattern match directories only;
* a pattern with a ``/`` at its start or middle is anchored to the folder of its
  ignore file; otherwise it matches a file or folder name at any depth;
* ``*`` and ``?`` never match ``/``; ``[...]`` classes support ranges, ``!``/``^``
  negation and ``[:alpha:]``-style classes; ``**`` as a leading ``**/``, a trailing
  ``/**`` or a middle ``/**/`` spans folders, any other ``**`` is a ``*``;
* as in git, names and patterns are compared as UTF-8 bytes (``?`` matches one
  byte, so not an ``é``), and a pattern's literal start is compared before the
  rest is matched, so a ``**`` right after it (``src**/x``) spans folders too;
* once a folder is excluded nothing below it is looked at, so nothing below it
  can be re-included.

Ignore files are per folder: a folder's ``.amlignore`` (or, only when the folder
has none, its ``.gitignore``) applies to that folder and below, with patterns
relative to that folder; rules from deeper files come later, so they win.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from typing import Callable, FrozenSet, Iterator, List, Optional, Sequence, Tuple

IGNORE_FILE_NAMES: Tuple[str, ...] = (".amlignore", ".gitignore")
"""Looked up in this order in each folder; only the first one found is used."""

SkipFn = Callable[[str, bool], bool]
"""``skip(relpath, is_dir)``: True leaves the entry (and, for a folder, all below) out."""

_NEVER = re.compile(r"(?!)")

_POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "\\x21-\\x7e",
    "lower": "a-z",
    "print": "\\x20-\\x7e",
    "punct": "\\x21-\\x2f\\x3a-\\x40\\x5b-\\x60\\x7b-\\x7e",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9a-fA-F",
}


class _InvalidPattern(Exception):
    """A pattern git would never match (dangling ``\\``, unclosed ``[``...)."""


# --------------------------------------------------------------------------
# patterns


@dataclass(frozen=True)
class Pattern:
    """One parsed line of an ignore file."""

    text: str
    """The line as written (after trimming), for messages."""
    base: str
    """Folder of the ignore file, relative to the walk root ("" = the root)."""
    regex: "re.Pattern[str]"
    negated: bool = False
    dir_only: bool = False
    anchored: bool = False

    def matches(self, relpath: str, is_dir: bool) -> bool:
        """Does this pattern match ``relpath`` (POSIX, relative to the walk root)?"""
        if self.dir_only and not is_dir:
            return False
        if self.base:
            prefix = self.base + "/"
            if not relpath.startswith(prefix):
                return False
            relpath = relpath[len(prefix):]
        target = relpath if self.anchored else relpath.rsplit("/", 1)[-1]
        return self.regex.fullmatch(_octets(target)) is not None


def _octets(text: str) -> str:
    """``text`` as its UTF-8 bytes, one character per byte: git's wildmatch compares bytes."""
    if text.isascii():
        return text
    try:
        return text.encode("utf-8", "surrogateescape").decode("latin-1")
    except UnicodeEncodeError:  # a lone surrogate that no file name decodes to
        return text.encode("utf-8", "surrogatepass").decode("latin-1")


def parse_line(line: str, base: str = "") -> Optional[Pattern]:
    """Parse one ignore-file line; ``None`` for blanks and comments."""
    text = _trim_trailing_spaces(line[:-1] if line.endswith("\r") else line)
    if not text or text.startswith("#"):
        return None
    negated = text.startswith("!")
    body = text[1:] if negated else text
    dir_only = body.endswith("/")
    if dir_only:
        body = body[:-1]
    anchored = "/" in body
    if body.startswith("/"):
        body = body[1:]
    if not body:
        return None
    return Pattern(text=text, base=base, regex=translate(_octets(body)), negated=negated,
                   dir_only=dir_only, anchored=anchored)


def parse_text(text: str, base: str = "") -> List[Pattern]:
    """Parse the content of an ignore file whose folder is ``base``."""
    if text.startswith("\ufeff"):
        text = text[1:]
    parsed = (parse_line(line, base) for line in text.split("\n"))
    return [p for p in parsed if p is not None]


def _trim_trailing_spaces(line: str) -> str:
    """git's trim_trailing_spaces(): drop unescaped trailing spaces."""
    last_space: Optional[int] = None
    i = 0
    while i < len(line):
        c = line[i]
        if c == " ":
            if last_space is None:
                last_space = i
        else:
            last_space = None
            if c == "\\":
                i += 1
        i += 1
    return line if last_space is None else line[:last_space]


# --------------------------------------------------------------------------
# wildmatch -> regex


def translate(pattern: str) -> "re.Pattern[str]":
    """Compile a gitignore glob (slashes already handled) to a regex for fullmatch."""
    try:
        return re.compile(_translate(pattern), re.DOTALL)
    except (_InvalidPattern, re.error):
        return _NEVER


def _translate(pat: str) -> str:
    out: List[str] = []
    # git compares the literal start (up to the first wildcard) on its own and
    # matches the rest as a pattern of its own: a "**" there starts a pattern.
    prefix = next((k for k, ch in enumerate(pat) if ch in "*?[\\"), len(pat))
    i = 0
    while i < len(pat):
        c = pat[i]
        if c == "\\":
            if i + 1 >= len(pat):
                raise _InvalidPattern(pat)
            out.append(re.escape(pat[i + 1]))
            i += 2
        elif c == "*":
            piece, i = _stars(pat, i, i == prefix)
            out.append(piece)
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            piece, i = _bracket(pat, i)
            out.append(piece)
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def _stars(pat: str, start: int, first: bool = False) -> Tuple[str, int]:
    """A run of ``*`` at ``start``: a globstar when it is a whole path component.

    ``first``: the run is the pattern's first wildcard (git then matches it as
    the start of a pattern, whatever precedes it). A globstar before ``\\/``
    spans folders but, unlike one before ``/``, needs that slash.
    """
    end = start
    while end < len(pat) and pat[end] == "*":
        end += 1
    if end - start >= 2 and (first or start == 0 or pat[start - 1] == "/"):
        if end == len(pat) or pat.startswith("\\/", end):
            return ".*", end
        if pat[end] == "/":
            return "(?:.*/)?", end + 1
    return "[^/]*", end


def _bracket(pat: str, start: int) -> Tuple[str, int]:
    """A ``[...]`` class at ``start``, as wildmatch reads it; never matches ``/``."""
    j = start + 1
    negated = j < len(pat) and pat[j] in "!^"
    if negated:
        j += 1
    items: List[str] = []
    prev: Optional[str] = None
    first = True
    while True:
        if j >= len(pat):
            raise _InvalidPattern(pat)
        c = pat[j]
        if c == "]" and not first:
            j += 1
            break
        first = False
        if c == "\\":
            lit, j = _escaped(pat, j)
            items.append(re.escape(lit))
            prev = lit
        elif c == "-" and prev is not None and j + 1 < len(pat) and pat[j + 1] != "]":
            hi, j = _range_end(pat, j + 1)
            if prev <= hi:
                items.append(f"{re.escape(prev)}-{re.escape(hi)}")
            prev = None
        elif c == "[" and pat.startswith("[:", j):
            item, j, prev = _posix_class(pat, j)
            items.append(item)
        else:
            items.append(re.escape(c))
            prev = c
            j += 1
    body = "".join(items)
    if negated:
        return f"[^/{body}]", j
    return (f"(?!/)[{body}]" if body else "(?!)"), j


def _escaped(pat: str, j: int) -> Tuple[str, int]:
    """``\\x`` at ``j`` inside a class: returns ``x`` and the index after it."""
    if j + 1 >= len(pat):
        raise _InvalidPattern(pat)
    return pat[j + 1], j + 2


def _range_end(pat: str, j: int) -> Tuple[str, int]:
    if pat[j] == "\\":
        return _escaped(pat, j)
    return pat[j], j + 1


def _posix_class(pat: str, j: int) -> Tuple[str, int, Optional[str]]:
    """``[:name:]`` at ``j`` -> (regex, next index, range start).

    As in wildmatch, a ``[:`` whose first ``]`` is not preceded by ``:`` is a
    literal ``[`` (which may start a range).
    """
    close = pat.find("]", j + 2)
    if close == -1:
        raise _InvalidPattern(pat)
    if close - 1 < j + 2 or pat[close - 1] != ":":
        return "\\[", j + 1, "["
    name = pat[j + 2:close - 1]
    if name not in _POSIX_CLASSES:
        raise _InvalidPattern(pat)
    return _POSIX_CLASSES[name], close + 1, None


# --------------------------------------------------------------------------
# rules


@dataclass(frozen=True)
class IgnoreRules:
    """An ordered, immutable list of patterns; the last match wins."""

    patterns: Tuple[Pattern, ...] = ()

    @classmethod
    def from_text(cls, text: str, base: str = "") -> "IgnoreRules":
        return cls(tuple(parse_text(text, base)))

    def extended(self, more: Sequence[Pattern]) -> "IgnoreRules":
        """These rules followed by ``more`` (which therefore take precedence)."""
        return IgnoreRules(self.patterns + tuple(more)) if more else self

    def match(self, relpath: str, is_dir: bool) -> Optional[bool]:
        """True: excluded, False: re-included by ``!``, None: no pattern matches.

        Only ``relpath`` itself is tested; whether a parent folder is excluded is
        the walker's business (see :func:`walk_included`).
        """
        for pattern in reversed(self.patterns):
            if pattern.matches(relpath, is_dir):
                return not pattern.negated
        return None

    def is_ignored(self, relpath: str, is_dir: bool) -> bool:
        return self.match(relpath, is_dir) is True

    @functools.cached_property
    def _prefilter(self) -> "tuple[Optional[re.Pattern[str]], Tuple[Pattern, ...]]":
        return _prefilter(self.patterns)

    def last_match(self, relpath: str, is_dir: bool) -> Optional[Pattern]:
        """The pattern that decides ``relpath`` (the last one matching), or None."""
        quick, others = self._prefilter
        if quick is not None and not quick.fullmatch(_octets(relpath.rsplit("/", 1)[-1])) \
                and not any(p.matches(relpath, is_dir) for p in others):
            return None  # the usual case, decided by one regex instead of one per pattern
        for pattern in reversed(self.patterns):
            if pattern.matches(relpath, is_dir):
                return pattern
        return None


def _prefilter(patterns: Tuple[Pattern, ...]) -> "tuple[Optional[re.Pattern[str]], Tuple[Pattern, ...]]":
    """One regex for every pattern that tests a file's name alone, and the patterns that test more.

    A name none of them can match is decided (no match) without walking the
    list: with the built-in credential patterns that list is long, and it is
    asked once per file of the folder.
    """
    simple = [p for p in patterns if not p.anchored and not p.base and p.regex.flags == re.DOTALL | re.UNICODE]
    others = tuple(p for p in patterns if p not in simple)
    if not simple:
        return None, others
    return re.compile("|".join(f"(?:{p.regex.pattern})" for p in simple), re.DOTALL), others


def read_ignore_file(folder: str) -> Optional[Tuple[str, str]]:
    """``(file name, text)`` of the folder's ignore file, ``.amlignore`` first."""
    for name in IGNORE_FILE_NAMES:
        path = os.path.join(folder, name)
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                return name, fh.read().decode("utf-8", "surrogateescape")
    return None


def folder_patterns(folder: str, rel: str) -> List[Pattern]:
    """Patterns of the ignore file in ``folder`` (``rel`` to the walk root)."""
    found = read_ignore_file(folder)
    return parse_text(found[1], rel) if found else []


# --------------------------------------------------------------------------
# walking


# Key and credential files: left out of snapshots unless an ignore file names
# them back in with ``!pattern`` (these rules come first, so a later ``!`` wins).
CREDENTIAL_PATTERNS_TEXT = """
id_rsa
id_dsa
id_ecdsa
id_ed25519
id_ecdsa_sk
id_ed25519_sk
*.pem
*.key
*.p12
*.pfx
*.jks
*.keystore
*.ppk
.netrc
_netrc
.pgpass
.git-credentials
.npmrc
.pypirc
credentials.json
credentials
secrets.json
secret.json
client_secret*.json
service-account*.json
*.tfstate
.ssh/
.aws/
.azure/
.kube/
.gnupg/
.gcloud/
**/.docker/config.json
**/.config/gcloud/
"""
CREDENTIAL_RULES = IgnoreRules.from_text(CREDENTIAL_PATTERNS_TEXT)
_CREDENTIAL_IDS = frozenset(id(p) for p in CREDENTIAL_RULES.patterns)

ReportFn = Callable[[str, str], None]
"""``report(relpath, why)``: called for each entry left out for safety ("credential", "symlink")."""


@dataclass(frozen=True)
class _Walk:
    root_real: str
    skip: Optional[SkipFn]
    use_ignore_files: bool
    report: Optional[ReportFn] = None


def walk_included(root: str, *, skip: Optional[SkipFn] = None,
                  use_ignore_files: bool = True, credentials: bool = False,
                  report: Optional[ReportFn] = None) -> List[str]:
    """Sorted POSIX paths (relative to ``root``) of the files not excluded.

    A symlink is followed only when it resolves inside ``root`` (and, for a
    folder, not to a folder being walked already: no cycles); one pointing
    outside is left out and reported (``"symlink"``); dangling links and
    special files are left out. ``credentials``: leave out key and credential
    files too (:data:`CREDENTIAL_PATTERNS_TEXT`), each reported
    (``"credential"``), unless an ignore file re-includes it with ``!``.
    """
    root_real = os.path.realpath(root)
    ctx = _Walk(root_real, skip, use_ignore_files, report)
    start = CREDENTIAL_RULES if credentials else IgnoreRules()
    found = _walk(ctx, root, "", start, frozenset({root_real}), root_real)
    return sorted(found)


def _walk(ctx: _Walk, folder: str, rel: str, rules: IgnoreRules,
          active: FrozenSet[str], folder_real: str) -> Iterator[str]:
    if ctx.use_ignore_files:
        rules = rules.extended(folder_patterns(folder, rel))
    for entry in _scan(folder):
        child = f"{rel}/{entry.name}" if rel else entry.name
        kind = _entry_kind(entry, folder_real, ctx.root_real, active)
        if kind is None:
            if ctx.report is not None and entry.is_symlink() and os.path.exists(entry.path) \
                    and not _is_within(os.path.realpath(entry.path), ctx.root_real):
                ctx.report(child, "symlink")
            continue
        is_dir, real = kind
        if ctx.skip is not None and ctx.skip(child, is_dir):
            continue
        hit = rules.last_match(child, is_dir)
        if hit is not None and not hit.negated:
            if ctx.report is not None and id(hit) in _CREDENTIAL_IDS:
                ctx.report(child + ("/" if is_dir else ""), "credential")
            continue
        if hit is not None and ctx.report is not None and CREDENTIAL_RULES.is_ignored(child, is_dir):
            ctx.report(child + ("/" if is_dir else ""), "credential_included")
        if is_dir:
            yield from _walk(ctx, entry.path, child, rules, active | {real}, real)
        else:
            yield child


class UnreadableFolder(OSError):
    """A folder of the walk that cannot be listed."""


def _scan(folder: str) -> List["os.DirEntry[str]"]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except PermissionError as exc:
        raise UnreadableFolder(exc.errno, exc.strerror, folder) from None


def _entry_kind(entry: "os.DirEntry[str]", folder_real: str, root_real: str,
                active: FrozenSet[str]) -> Optional[Tuple[bool, str]]:
    """``(is_dir, real path of a folder)`` for entries to consider, else None."""
    if entry.is_symlink():
        return _symlink_kind(entry.path, root_real, active)
    if entry.is_dir(follow_symlinks=False):
        return True, os.path.join(folder_real, entry.name)
    if entry.is_file(follow_symlinks=False):
        return False, ""
    return None


def _symlink_kind(path: str, root_real: str, active: FrozenSet[str]) -> Optional[Tuple[bool, str]]:
    real = os.path.realpath(path)
    if not _is_within(real, root_real):
        return None  # never follow a link out of the folder: it could be anything (~/.ssh/id_rsa)
    if os.path.isdir(path):
        if real in active:
            return None
        return True, real
    if os.path.isfile(path):
        return False, ""
    return None


def _is_within(path: str, root: str) -> bool:
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives on Windows
        return False
