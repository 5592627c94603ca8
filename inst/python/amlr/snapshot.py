"""Job snapshots: the files of a step's ``source_dir`` plus the bootstrapper.

What goes in: every file under ``source_dir`` except

* what the per-folder ``.amlignore`` (else ``.gitignore``) files exclude
  (gitignore semantics, see :mod:`amlr.ignore`);
* always, whatever the ignore files say: ``.git`` (at any depth, folder or
  file), the root's ``.Rproj.user/`` and ``renv/library/``, and files named
  ``.Rhistory``, ``.RData``, ``.Renviron`` or ``.env`` at any depth;
* the ignore files themselves (``.amlignore``/``.gitignore``, any depth): their
  work is done when the snapshot is made, and Azure ML must not re-filter.

* key and credential files (private keys, ``*.pem``/``*.key``/``*.p12``/``*.pfx``,
  ``.netrc``, ``.pgpass``, ``.git-credentials``, ``credentials.json``/``secrets.json``,
  ``.ssh/``, ``.aws/``, ``.azure/``, ``.kube/``, ``.docker/config.json``, ...; see
  :data:`amlr.ignore.CREDENTIAL_PATTERNS_TEXT`), with a warning naming them,
  unless an ignore file names one back in with ``!``.

Symlinks are followed only when they resolve inside the folder (by content);
one that points outside is left out, with a warning. An unreadable file or
folder is an error naming it. The bootstrapper goes to the reserved ``_amlr/bootstrapper.py``
and a comment-only ``.amlignore`` is written at the snapshot root.

A snapshot's hash is a sha256 over the sorted (relative path, sha256 of the
content, executable bit) of its files, so it does not depend on file order,
mtimes or where the folder lives.
"""
from __future__ import annotations

import hashlib
import json
import time
import os
import shutil
import stat
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, List, Mapping, Optional, Tuple

from .errors import (ScriptExcluded, SnapshotDestinationNotEmpty, SnapshotLimitInvalid,
    SnapshotReservedName, SnapshotSourceMissing, SnapshotTooLarge, SourceUnreadable)
from .ignore import IGNORE_FILE_NAMES, UnreadableFolder, walk_included

RESERVED_DIR = "_amlr"
BOOTSTRAPPER_PATH = RESERVED_DIR + "/bootstrapper.py"
"""Where the bootstrapper lands inside every snapshot."""
SNAPSHOT_AMLIGNORE = "# written by amlr: exclusions were applied when this snapshot was made\n"

ALWAYS_EXCLUDED_ROOT_DIRS: Tuple[str, ...] = (".Rproj.user", "renv/library")
ALWAYS_EXCLUDED_NAMES: Tuple[str, ...] = (".Rhistory", ".RData", ".Renviron", ".env")

MB = 1024 * 1024
DEFAULT_WARN_MB = 100.0
DEFAULT_MAX_MB = 300.0
"""Azure ML refuses snapshots above 300 MB."""
WARN_ENV = "AMLR_SNAPSHOT_WARN_MB"
MAX_ENV = "AMLR_SNAPSHOT_MAX_MB"
LARGEST_COUNT = 5

_HASH_HEADER = b"amlr-snapshot-v1\0"
_CHUNK = 1024 * 1024


@dataclass
class Snapshot:
    """A built snapshot. ``files``/``total_bytes``/``largest`` describe the
    files taken from ``source_dir`` (not the bootstrapper)."""

    path: str
    hash: str
    files: int
    total_bytes: int
    largest: List[Tuple[str, int]] = field(default_factory=list)
    # (path, digest, executable) of the source files, as hashed while copying:
    # callers that fingerprint parts of the folder need not read it again.
    records: List["Record"] = field(default_factory=list, repr=False)


@dataclass(frozen=True)
class _Entry:
    rel: str
    abspath: str
    size: int
    executable: bool
    mtime_ns: int = 0
    ino: int = 0


Record = Tuple[str, str, bool]
"""(relative path, sha256 hex of the content, executable bit)."""


# --------------------------------------------------------------------------
# what goes in


def is_always_excluded(relpath: str, is_dir: bool) -> bool:
    """The built-in exclusions, which ignore files cannot re-include."""
    name = relpath.rsplit("/", 1)[-1]
    if name == ".git":
        return True
    if is_dir:
        return relpath in ALWAYS_EXCLUDED_ROOT_DIRS
    return name in ALWAYS_EXCLUDED_NAMES or name in IGNORE_FILE_NAMES


# Folders that are never a step's code, whatever they are called: a Python
# virtual environment, an amlr home (its registry and run folders, which
# would otherwise snapshot themselves when a script lives above AMLR_HOME),
# and the snapshot/environment folders export_pipeline() writes.
FOREIGN_MARKERS = ("pyvenv.cfg", "registry.sqlite", ".amlr-export")


def _skipper(source_dir: str, exclude: Iterable[str]) -> Callable[[str, bool], bool]:
    root = os.path.realpath(source_dir)
    excluded = set()
    for path in exclude:
        real = os.path.realpath(path)
        if real != root and real.startswith(root + os.sep):
            excluded.add(os.path.relpath(real, root).replace(os.sep, "/"))

    def skip(rel: str, is_dir: bool) -> bool:
        if is_always_excluded(rel, is_dir) or rel in excluded:
            return True
        if is_dir:
            folder = os.path.join(source_dir, *rel.split("/"))
            return any(os.path.isfile(os.path.join(folder, marker)) for marker in FOREIGN_MARKERS)
        return False

    return skip


def list_files(source_dir: str, exclude: Iterable[str] = (),
               warn: Optional[Callable[[str], None]] = None) -> List[str]:
    """Sorted POSIX paths, relative to ``source_dir``, of the files that go in.

    ``exclude``: absolute paths left out as well (e.g. the amlr home). Key and
    credential files and symlinks out of the folder are left out; ``warn``
    (if given) is told which, in one message.
    """
    _require_dir(source_dir)
    left_out: dict[str, list[str]] = {"credential": [], "symlink": [], "credential_included": []}
    try:
        rels = walk_included(source_dir, skip=_skipper(source_dir, exclude), credentials=True,
                             report=lambda rel, why: left_out[why].append(rel))
    except UnreadableFolder as exc:
        raise SourceUnreadable(
            f"The folder '{exc.filename}' in the source folder '{source_dir}' cannot be read ({exc.strerror}). "
            "Make it readable (chmod), or leave it out with a line in .amlignore.") from None
    if warn is not None:
        if left_out["credential"]:
            warn(f"Left out of the snapshot of '{source_dir}' as key or credential files: "
                 f"{_name_list(left_out['credential'])}. To ship one on purpose, add a line `!<name>` "
                 "to .amlignore in that folder (better: pass secrets to the job another way).")
        if left_out["credential_included"]:
            warn(f"Shipping key or credential files in the snapshot of '{source_dir}' because an ignore file "
                 f"names them back in: {_name_list(left_out['credential_included'])}. Anyone who can read the "
                 "job's snapshot can read them.")
        if left_out["symlink"]:
            warn(f"Left out of the snapshot of '{source_dir}': symlinks that point outside the folder "
                 f"({_name_list(left_out['symlink'])}). Copy the files into the folder to include them.")
    return rels


def _name_list(rels: List[str], limit: int = 20) -> str:
    shown = ", ".join(rels[:limit])
    return shown + (f" and {len(rels) - limit} more" if len(rels) > limit else "")


def require_scripts(steps: Iterable[Any], files: Optional[Mapping[str, Iterable[str]]] = None) -> None:
    """Every step's script is in its snapshot; else say which ignore rule to fix.

    ``files``: source folder (real path) -> the snapshot's relative paths, when
    known already; otherwise the folder is listed.
    """
    listed: dict[str, set] = {k: set(v) for k, v in (files or {}).items()}
    for step in steps:
        src = os.path.realpath(step.source_dir)
        if src not in listed:
            listed[src] = set(list_files(src))
        script = step.script.replace(os.sep, "/")
        if script.startswith("./"):
            script = script[2:]
        if script not in listed[src]:
            raise ScriptExcluded(
                f"The script '{step.script}' of step `{step.name}` is left out of its snapshot of '{step.source_dir}' "
                "by an ignore rule (.amlignore, else .gitignore, in that folder or above the script), so the job "
                f"could not run it. Add a line `!{script}` to .amlignore in '{step.source_dir}', or remove the rule "
                "that matches it.", field=f"steps[{step.name}].script")


def _require_dir(path: str) -> None:
    if not os.path.isdir(path):
        what = "is not a folder" if os.path.exists(path) else "does not exist"
        raise SnapshotSourceMissing(
            f"The source folder '{path}' {what}. Check the step's source_dir "
            "(by default the folder of its script)."
        )


def _entries(root: str, rels: Iterable[str]) -> List[_Entry]:
    out = []
    for rel in rels:
        path = _dest_path(root, rel)
        st = os.stat(path)
        out.append(_Entry(rel, path, st.st_size, _is_executable(st.st_mode), st.st_mtime_ns, st.st_ino))
    return out


def _unreadable(root: str, rel: str) -> "SourceUnreadable":
    return SourceUnreadable(
        f"The file '{rel}' in the source folder '{root}' cannot be read (permission denied), so the "
        "snapshot cannot include it. Make it readable (chmod u+r), or leave it out with a line "
        f"`{rel}` in .amlignore.")


class DigestCache:
    """sha256 of source files keyed by (path, size, mtime, inode), kept between submits (like git's index).

    An unchanged folder resubmitted is then hashed without reading a byte. A
    file changed within the last seconds is never cached: its next change
    might keep the same mtime.
    """

    RACY_SECONDS = 2.0

    def __init__(self, path: Optional[str]):
        self.path = path
        self.entries: dict = {}
        self.dirty = False
        if path and os.path.exists(path):
            try:
                with open(path, encoding="utf-8") as fh:
                    self.entries = json.load(fh)
            except (OSError, ValueError):
                self.entries = {}

    def digest(self, entry: "_Entry", root: str) -> str:
        key = [entry.size, entry.mtime_ns, entry.ino]
        cached = self.entries.get(entry.abspath)
        if cached is not None and cached[:3] == key:
            return cached[3]
        try:
            digest = file_digest(entry.abspath)
        except PermissionError:
            raise _unreadable(root, entry.rel) from None
        if entry.mtime_ns < (time.time() - self.RACY_SECONDS) * 1e9:
            self.entries[entry.abspath] = [*key, digest]
            self.dirty = True
        return digest

    def save(self) -> None:
        if not (self.path and self.dirty):
            return
        tmp = f"{self.path}.{os.getpid()}.tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(self.entries, fh, separators=(",", ":"))
            os.replace(tmp, self.path)
        except OSError:
            pass  # a cache: losing it costs time, never correctness
        self.dirty = False


def _is_executable(mode: int) -> bool:
    return os.name != "nt" and bool(mode & stat.S_IXUSR)


# --------------------------------------------------------------------------
# hashing


def file_digest(path: str) -> str:
    """sha256 hex of a file's content."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def fingerprint(records: Iterable[Record]) -> str:
    """sha256 hex over records sorted by path; unambiguous (paths hold no NUL)."""
    h = hashlib.sha256(_HASH_HEADER)
    for rel, digest, executable in sorted(records):
        h.update(rel.encode("utf-8", "surrogateescape"))
        h.update(b"\0" + digest.encode("ascii") + b"\0" + (b"x" if executable else b"-") + b"\n")
    return h.hexdigest()


def _extra_records(extra: Optional[Mapping[str, bytes]]) -> List[Record]:
    return [(name, hashlib.sha256(data).hexdigest(), False) for name, data in (extra or {}).items()]


def _check_reserved(source_dir: str, rels: Iterable[str], extra_names: Iterable[str]) -> None:
    """Extra entries own their top folder: no source file may live there."""
    tops = {name.split("/", 1)[0] for name in extra_names}
    for rel in rels:
        top = rel.split("/", 1)[0]
        if top in tops:
            raise SnapshotReservedName(
                f"'{source_dir}' contains '{top}', a name amlr reserves inside the job "
                f"snapshot (for its bootstrapper, {BOOTSTRAPPER_PATH}). Rename that "
                "folder, or exclude it in .amlignore."
            )


def content_hash(source_dir: str, extra: Optional[Mapping[str, bytes]] = None,
                 exclude: Iterable[str] = ()) -> str:
    """Hash of what :func:`list_files` includes plus ``extra`` (name -> bytes)."""
    rels = list_files(source_dir, exclude)
    _check_reserved(source_dir, rels, (extra or {}).keys())
    records = [(e.rel, file_digest(e.abspath), e.executable) for e in _entries(source_dir, rels)]
    return fingerprint(records + _extra_records(extra))


def hash_path(path: str) -> str:
    """Content fingerprint of a file or a folder (every file, no exclusions).

    A folder hashes like a snapshot of it; a file hashes as a single entry
    named ``.``, so only its content and executable bit count, not its name.
    """
    if os.path.isfile(path):
        st = os.stat(path)
        return fingerprint([(".", file_digest(path), _is_executable(st.st_mode))])
    if not os.path.isdir(path):
        raise SnapshotSourceMissing(f"The path '{path}' does not exist.")
    rels = walk_included(path, use_ignore_files=False)
    return fingerprint((e.rel, file_digest(e.abspath), e.executable) for e in _entries(path, rels))


# --------------------------------------------------------------------------
# size guard


def human_size(n: float) -> str:
    """``1536`` -> ``'1.5 KB'`` (binary units, as Azure ML counts)."""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024:
            return f"{int(size)} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"


def resolve_limit(explicit: Optional[float], env_name: str, default_mb: float) -> float:
    """Bytes: the argument if given, else ``$env_name`` (in MB), else the default."""
    if explicit is not None:
        return float(explicit)
    raw = os.environ.get(env_name, "").strip()
    if not raw:
        return default_mb * MB
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0:
        raise SnapshotLimitInvalid(
            f"{env_name}='{raw}' is not a size in MB. Set it to a number such as 250, or unset it."
        )
    return value * MB


def _largest(entries: List[_Entry]) -> List[Tuple[str, int]]:
    ranked = sorted(entries, key=lambda e: (-e.size, e.rel))
    return [(e.rel, e.size) for e in ranked[:LARGEST_COUNT]]


def _describe_largest(largest: List[Tuple[str, int]]) -> str:
    return ", ".join(f"{rel} ({human_size(size)})" for rel, size in largest)


def _check_size(source_dir: str, total: int, largest: List[Tuple[str, int]],
                warn_bytes: float, max_bytes: float, warn: Callable[[str], None]) -> None:
    advice = ("Add them to .amlignore in that folder, or move the data to a datastore "
              "and pass it to the step as an input.")
    if total > max_bytes:
        raise SnapshotTooLarge(
            f"The snapshot of '{source_dir}' is {human_size(total)}, over the limit of "
            f"{human_size(max_bytes)} (Azure ML refuses snapshots above 300 MB; "
            f"{MAX_ENV} sets amlr's limit). Largest files: {_describe_largest(largest)}. {advice}",
            total_bytes=total, limit_bytes=int(max_bytes), largest=largest,
        )
    if total > warn_bytes:
        warn(
            f"The snapshot of '{source_dir}' is {human_size(total)} (warning above "
            f"{human_size(warn_bytes)}; {WARN_ENV} changes this). Largest files: "
            f"{_describe_largest(largest)}. {advice}"
        )


def _default_warn(message: str) -> None:
    warnings.warn(message, stacklevel=3)


# --------------------------------------------------------------------------
# building


def _prepare_dest(dest_dir: str) -> None:
    if os.path.isdir(dest_dir) and os.listdir(dest_dir):
        raise SnapshotDestinationNotEmpty(
            f"The snapshot folder '{dest_dir}' is not empty; amlr builds snapshots into a new folder."
        )
    os.makedirs(dest_dir, exist_ok=True)


def _copy_with_digest(src: str, dst: str) -> str:
    """Copy content (following symlinks) and metadata; sha256 of what was copied."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    h = hashlib.sha256()
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        for chunk in iter(lambda: fin.read(_CHUNK), b""):
            h.update(chunk)
            fout.write(chunk)
    shutil.copystat(src, dst)
    return h.hexdigest()


def _dest_path(dest_dir: str, rel: str) -> str:
    if os.sep == "/":  # the common case, without os.path.join's per-part work (50,000 files add up)
        return dest_dir + "/" + rel
    return os.path.join(dest_dir, *rel.split("/"))


def _write_bytes(path: str, data: bytes) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)


DIGEST_CACHE = "snapshot-digests.json"
"""Next to the store (not in it: the store's clean-up removes what has one link)."""


def _blob_path(store: str, digest: str, executable: bool) -> str:
    return f"{store}{os.sep}{digest[:2]}{os.sep}{digest[2:]}{'-x' if executable else ''}"


SEALED_MTIME_NS = 946_684_800 * 10**9
"""Every stored blob's modification time (2000-01-01 00:00 UTC: after 1980, which ZIP files cannot go
below). A step runs in its snapshot, whose files are hard links to the blobs: a step that writes to
one of them writes to the blob and so changes its mtime. A blob whose mtime is not this is no longer
the content it is named after, and is stored again."""


def _sealed_blob(store: str, digest: str, executable: bool) -> str:
    """The blob's path if it holds the content it is named after; FileNotFoundError if not (or absent)."""
    blob = _blob_path(store, digest, executable)
    if os.stat(blob).st_mtime_ns != SEALED_MTIME_NS:  # FileNotFoundError when absent
        raise FileNotFoundError(blob)
    return blob


def _store_blob(entry: _Entry, root: str, store: str, digest: str) -> str:
    """Copy ``entry`` into the store under its digest (sealed); the digest of what was copied.

    A blob already there under that name -- one a step wrote to -- is replaced:
    the snapshots linked to the old one keep what they had.
    """
    blob = _blob_path(store, digest, entry.executable)
    os.makedirs(os.path.dirname(blob), exist_ok=True)
    tmp = f"{blob}.{os.getpid()}-{os.urandom(4).hex()}.tmp"
    try:
        try:
            copied = _copy_with_digest(entry.abspath, tmp)
        except PermissionError:
            raise _unreadable(root, entry.rel) from None
        os.utime(tmp, ns=(SEALED_MTIME_NS, SEALED_MTIME_NS))
        os.replace(tmp, _blob_path(store, copied, entry.executable))  # changed while read: stored as it was read
        return copied
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _materialize(entries: List[_Entry], root: str, dest_dir: str, store: Optional[str],
                 cache: DigestCache) -> List[Record]:
    """Put every entry under ``dest_dir``; with a ``store``, hash first and hard-link from content-addressed blobs.

    An unchanged file is then not even read (its digest is cached) and is
    stored once, however many runs and steps use it. Where hard links are not
    possible (another file system) the file is copied.
    """
    made: set = set()
    records: List[Record] = []
    for e in entries:
        dest = _dest_path(dest_dir, e.rel)
        parent = os.path.dirname(dest)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        if store is None:
            try:
                digest = _copy_with_digest(e.abspath, dest)
            except PermissionError:
                raise _unreadable(root, e.rel) from None
        else:
            digest = cache.digest(e, root)
            try:
                _link_or_copy(_sealed_blob(store, digest, e.executable), dest)
            except FileNotFoundError:  # not stored yet, or a step wrote to it
                digest = _store_blob(e, root, store, digest)
                _link_or_copy(_blob_path(store, digest, e.executable), dest)
        records.append((e.rel, digest, e.executable))
    return records


def _link_or_copy(blob: str, dest: str) -> None:
    """Hard-link ``blob`` to ``dest``; copy it where a link is not possible (another file system)."""
    try:
        os.link(blob, dest)
    except FileNotFoundError:
        raise
    except OSError:
        shutil.copy2(blob, dest)


def build_snapshot(source_dir: str, dest_dir: str, *, bootstrapper_path: str,
                   warn_bytes: Optional[float] = None, max_bytes: Optional[float] = None,
                   warn: Optional[Callable[[str], None]] = None, exclude: Iterable[str] = (),
                   files: Optional[Iterable[str]] = None, extra: Optional[Mapping[str, bytes]] = None,
                   store: Optional[str] = None) -> Snapshot:
    """Copy the included files of ``source_dir`` and the bootstrapper to ``dest_dir``.

    ``dest_dir`` must be absent or empty. The size is checked before anything is
    copied: above ``warn_bytes`` (default ``$AMLR_SNAPSHOT_WARN_MB`` or 100 MB)
    ``warn`` is called (default :func:`warnings.warn`); above ``max_bytes``
    (default ``$AMLR_SNAPSHOT_MAX_MB`` or 300 MB) :class:`SnapshotTooLarge` is
    raised. The result's hash equals ``content_hash(source_dir, extra=
    {BOOTSTRAPPER_PATH: <bootstrapper bytes>})``.

    ``files``: only these (relative POSIX paths, from :func:`list_files`), e.g. one
    step's code; ``extra``: more entries (name -> bytes) under the reserved folder;
    ``store``: a content-addressed blob folder to hard-link files from.
    """
    rels = list_files(source_dir, exclude, warn=warn or _default_warn) if files is None else sorted(files)
    with open(bootstrapper_path, "rb") as fh:
        extras = {BOOTSTRAPPER_PATH: fh.read(), **(extra or {})}
    _check_reserved(source_dir, rels, extras)
    entries = _entries(source_dir, rels)
    total = sum(e.size for e in entries)
    largest = _largest(entries)
    _check_size(source_dir, total, largest, resolve_limit(warn_bytes, WARN_ENV, DEFAULT_WARN_MB),
                resolve_limit(max_bytes, MAX_ENV, DEFAULT_MAX_MB), warn or _default_warn)
    _prepare_dest(dest_dir)
    cache = DigestCache(os.path.join(os.path.dirname(store), DIGEST_CACHE) if store else None)
    records = _materialize(entries, source_dir, dest_dir, store, cache)
    cache.save()
    for name, data in extras.items():
        _write_bytes(_dest_path(dest_dir, name), data)
    _write_bytes(os.path.join(dest_dir, ".amlignore"), SNAPSHOT_AMLIGNORE.encode("utf-8"))
    return Snapshot(path=os.path.abspath(dest_dir), hash=fingerprint(records + _extra_records(extras)),
                    files=len(entries), total_bytes=total, largest=largest, records=records)


def stage_snapshot(source_dir: str, snapshots_dir: str, *, bootstrapper_path: str,
                   warn: Optional[Callable[[str], None]] = None, exclude: Iterable[str] = (),
                   files: Optional[Iterable[str]] = None, extra: Optional[Mapping[str, bytes]] = None,
                   store: Optional[str] = None) -> Snapshot:
    """Snapshot ``source_dir`` into ``snapshots_dir/<hash12>``, content-addressed.

    Steps that share a folder, and runs that package an unchanged folder, get
    the same snapshot; the copy is staged under a unique name first so a
    half-written snapshot never appears under its final name.
    """
    os.makedirs(snapshots_dir, exist_ok=True)
    # Not tempfile.mkdtemp: its 0700 mode would stick to an exported folder.
    staging = os.path.join(snapshots_dir, f".staging-{os.getpid()}-{os.urandom(4).hex()}")
    try:
        snap = build_snapshot(source_dir, staging, bootstrapper_path=bootstrapper_path, warn=warn, exclude=exclude,
                              files=files, extra=extra, store=store)
        final = os.path.join(snapshots_dir, snap.hash[:12])
        if not os.path.exists(final):
            os.replace(staging, final)
        snap.path = os.path.abspath(final)
        return snap
    finally:
        if os.path.exists(staging):
            shutil.rmtree(staging)
