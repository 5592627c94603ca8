"""The local asset store: versioned, content-addressed data assets and models.

Azure ML keeps registered data and models as named, immutable versions; this is
the same idea on this machine, under ``AMLR_HOME/store``, so a pipeline that
reads ``aml_data("accidents")`` runs locally too.

Layout (the record files are the truth; SQLite is an index rebuilt from them)::

    store/objects/<hash>/          the content, once per distinct content
    store/records/<kind>/<name>/<version>.json   one record per version
    store/index.sqlite             (kind, name, version) -> record, for fast lookup

Registering hashes the content, stages a copy next to ``objects/`` and renames
it into place (a reader never sees half an object), then allocates the version
inside one ``BEGIN IMMEDIATE`` transaction: two processes registering the same
name at once get distinct versions, or the same version when the content is
identical. A version is immutable: registering different content under an
existing version is an error.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import sqlite3
import stat
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator, Optional

from . import snapshot, sqlitedb
from .errors import AssetNotFound, AssetVersionExists, InvalidAssetName, SourceUnreadable, StoreDamaged

KINDS = ("data", "model")
# Azure ML asset names (data assets, models): letters, digits, `-`, `_`, `.`,
# starting with a letter or digit, at most 255 characters. Stricter than some
# SDK paths accept, so a name that works locally also works on Azure ML.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,254}")
NAME_RULE = (
    "Azure ML asset names use letters, digits, `-`, `_` and `.`, start with a letter or digit, "
    "and have at most 255 characters"
)
VERSION_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,49}")
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS assets (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    version TEXT NOT NULL,
    vnum INTEGER,
    content_hash TEXT,
    created REAL NOT NULL,
    record TEXT NOT NULL,
    PRIMARY KEY (kind, name, version)
);
CREATE INDEX IF NOT EXISTS assets_hash ON assets (kind, name, content_hash);
"""


def check_name(name: Any, what: str = "data asset") -> str:
    if isinstance(name, list) and len(name) == 1:
        name = name[0]
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):  # fullmatch: `$` would let a trailing newline in
        suggestion = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(name)).strip("-_.")[:255] or "my-asset"
        raise InvalidAssetName(
            f"`{name}` is not a valid {what} name: {NAME_RULE}. Try \"{suggestion}\".",
            field="name",
        )
    return name


def check_version(version: Any) -> Optional[str]:
    """``None`` (next integer), or an explicit version as a string."""
    if isinstance(version, list) and len(version) == 1:
        version = version[0]
    if version is None:
        return None
    if isinstance(version, bool):
        raise InvalidAssetName("`version` must be a whole number or a string such as \"2\".", field="version")
    if isinstance(version, (int, float)):
        if version != int(version) or version < 1:
            raise InvalidAssetName(f"`version` {version} is not allowed: use a positive whole number.", field="version")
        version = str(int(version))
    if (not isinstance(version, str) or not VERSION_RE.fullmatch(version) or version == "latest"
            or (version.isdigit() and int(version) < 1)):
        raise InvalidAssetName(
            f"`version` `{version}` is not allowed: use a positive whole number, or letters, digits, `-`, `_` and "
            "`.` (\"latest\" is reserved for the newest version).",
            field="version",
        )
    return version


def tree_records(root: str) -> list[tuple[str, str, bool]]:
    """(relative path, sha256, executable) of every file under ``root``, links followed as the copy follows them.

    The hash must cover exactly what ``shutil.copytree(symlinks=False)`` copies,
    so linked folders are walked too; a link back to a folder above it would
    make both endless, so it is an error.
    """
    out: list[tuple[str, str, bool]] = []

    def walk(folder: str, rel: str, ancestors: tuple[str, ...]) -> None:
        real = os.path.realpath(folder)
        if real in ancestors:
            raise SourceUnreadable(
                f"`{folder}` links back to a folder that contains it, so copying it would never end. Remove the "
                "link or register a folder without it.", field="path")
        try:
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            raise SourceUnreadable(f"`{folder}` could not be read ({exc}); nothing was registered.",
                                   field="path") from None
        for entry in entries:
            sub = f"{rel}/{entry.name}" if rel else entry.name
            try:
                if entry.is_dir(follow_symlinks=True):
                    walk(entry.path, sub, ancestors + (real,))
                    continue
                st = os.stat(entry.path)
                out.append((sub, snapshot.file_digest(entry.path), bool(st.st_mode & stat.S_IXUSR)))
            except OSError as exc:
                raise SourceUnreadable(
                    f"`{entry.path}` could not be read, so nothing was registered ({exc}). Fix or remove it "
                    "(a broken link, a file without read permission) and register again.", field="path") from None

    walk(root, "", ())
    return out


def content_hash(path: str) -> tuple[str, str]:
    """(hash, type): ``uri_folder`` for a folder, ``uri_file`` for a file (whose name counts)."""
    if os.path.isdir(path):
        tree = snapshot.fingerprint(tree_records(path))
        return "d" + hashlib.sha256(("folder:" + tree).encode()).hexdigest()[:40], "uri_folder"
    if os.path.isfile(path):
        digest = snapshot.hash_path(path)
        key = "file:" + os.path.basename(path) + ":" + digest
        return "f" + hashlib.sha256(key.encode()).hexdigest()[:40], "uri_file"
    raise AssetNotFound(f"`{path}` does not exist; give the path of a file or a folder to register.", field="path")


@dataclass
class Asset:
    """One version of a data asset or a model, as stored in its record file."""

    kind: str
    name: str
    version: str
    type: str  # uri_folder | uri_file | custom_model
    content_hash: Optional[str]
    path: Optional[str]  # where the content lives on this machine (None: only on Azure ML)
    created: float
    description: Optional[str] = None
    tags: dict[str, str] = field(default_factory=dict)
    source: Optional[str] = None  # what was registered (a local path, a run output)
    backend: str = "local"
    azure_id: Optional[str] = None
    lineage: Optional[dict[str, Any]] = None
    existing: bool = False  # set on return: this version was there already

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _vnum(version: str) -> Optional[int]:
    return int(version) if version.isdigit() else None


@dataclass
class Store:
    home: str

    @property
    def root(self) -> str:
        return os.path.join(self.home, "store")

    @property
    def index_path(self) -> str:
        return os.path.join(self.root, "index.sqlite")

    def objects_dir(self) -> str:
        return os.path.join(self.root, "objects")

    def record_path(self, kind: str, name: str, version: str) -> str:
        return os.path.join(self.root, "records", kind, name, f"{version}.json")

    # -- the index ----------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        os.makedirs(self.root, exist_ok=True)
        try:
            con = sqlitedb.connect(self.index_path)
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc
        try:
            sqlitedb.ensure_schema(con, _SCHEMA, SCHEMA_VERSION)
        except sqlite3.DatabaseError as exc:
            con.close()
            raise self._damaged(exc) from exc
        return con

    def _damaged(self, exc: BaseException) -> StoreDamaged:
        return StoreDamaged(
            f"The asset store index `{self.index_path}` is damaged ({exc}). The records under "
            f"`{os.path.join(self.root, 'records')}` are intact: rebuild the index with amlr::rebuild_store() "
            "(the damaged file is kept next to it).",
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
            except BaseException:
                con.execute("ROLLBACK")
                raise
            con.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc
        finally:
            con.close()

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        con = self._connect()
        try:
            yield con
        except sqlite3.DatabaseError as exc:
            raise self._damaged(exc) from exc
        finally:
            con.close()

    # -- content ------------------------------------------------------------------

    def _place_object(self, path: str, digest: str) -> str:
        """Copy ``path`` into ``objects/<digest>`` (stage, then rename); the object folder."""
        target = os.path.join(self.objects_dir(), digest)
        if os.path.isdir(target):
            return target
        os.makedirs(self.objects_dir(), exist_ok=True)
        staging = os.path.join(self.objects_dir(), f".staging-{digest}-{os.getpid()}-{os.urandom(4).hex()}")
        try:
            try:
                if os.path.isdir(path):
                    shutil.copytree(path, staging, symlinks=False)
                else:
                    os.makedirs(staging)
                    shutil.copy2(path, os.path.join(staging, os.path.basename(path)))
            except (OSError, shutil.Error) as exc:
                culprit, reason = _copy_failure(exc, path)
                raise SourceUnreadable(
                    f"`{culprit}` could not be read, so nothing was registered ({reason}). Fix or remove it "
                    "(a broken link, a file without read permission) and register again.",
                    field="path",
                ) from None
            _make_read_only(staging)
            try:
                os.rename(staging, target)
            except OSError:
                if not os.path.isdir(target):  # not "someone placed the same content first"
                    raise
        finally:
            if os.path.exists(staging):
                _remove_tree(staging)
        return target

    # -- register -----------------------------------------------------------------

    def register(self, kind: str, path: str, name: str, *, version: Any = None, description: Optional[str] = None,
                 tags: Optional[dict[str, str]] = None, source: Optional[str] = None,
                 lineage: Optional[dict[str, Any]] = None) -> Asset:
        """Register the file or folder ``path`` as ``name``; see the module docstring."""
        assert kind in KINDS
        name = check_name(name, "model" if kind == "model" else "data asset")
        explicit = check_version(version)
        path = os.path.abspath(os.path.expanduser(path))
        root = os.path.realpath(self.root)
        if os.path.isdir(path) and os.path.commonpath([root, os.path.realpath(path)]) == os.path.realpath(path):
            raise SourceUnreadable(
                f"`{path}` contains amlr's store `{self.root}`; registering it would copy the store into itself. "
                "Register a folder outside AMLR_HOME.", field="path")
        digest, type_ = content_hash(path)
        obj = self._place_object(path, digest)
        local_path = obj if type_ == "uri_folder" else os.path.join(obj, os.path.basename(path))
        with self._transaction() as con:
            if explicit is not None:
                row = con.execute("SELECT record FROM assets WHERE kind = ? AND name = ? AND version = ?",
                                  (kind, name, explicit)).fetchone()
                if row is not None:
                    found = _asset(row["record"])
                    if found.content_hash == digest:
                        found.existing = True
                        return found
                    raise AssetVersionExists(
                        f"{_label(kind)} `{name}` version {explicit} already exists with other content, and a version "
                        f"never changes. Leave `version` unset to register version {self._next(con, kind, name)}, "
                        "or choose a new version.",
                        field="version",
                    )
                chosen = explicit
            else:
                row = con.execute(
                    "SELECT record FROM assets WHERE kind = ? AND name = ? AND content_hash = ?"
                    " ORDER BY created DESC LIMIT 1",
                    (kind, name, digest),
                ).fetchone()
                if row is not None:
                    found = _asset(row["record"])
                    found.existing = True
                    return found
                chosen = str(self._next(con, kind, name))
            asset = Asset(kind=kind, name=name, version=chosen, type=type_ if kind == "data" else "custom_model",
                          content_hash=digest, path=local_path, created=time.time(), description=description,
                          tags=dict(tags or {}), source=source, lineage=lineage)
            self._commit(con, asset)
        return asset

    def add_record(self, asset: Asset) -> Asset:
        """Record an asset that lives elsewhere (an Azure ML model or data asset)."""
        check_name(asset.name, "model" if asset.kind == "model" else "data asset")
        with self._transaction() as con:
            if asset.version in (None, ""):
                asset.version = str(self._next(con, asset.kind, asset.name))
            exists = con.execute("SELECT 1 FROM assets WHERE kind = ? AND name = ? AND version = ?",
                                 (asset.kind, asset.name, asset.version)).fetchone()
            if exists is not None:
                raise AssetVersionExists(
                    f"{_label(asset.kind)} `{asset.name}` version {asset.version} is already recorded; choose a new "
                    "version or leave it unset.",
                    field="version",
                )
            self._commit(con, asset)
        return asset

    def _next(self, con: sqlite3.Connection, kind: str, name: str) -> int:
        row = con.execute("SELECT MAX(vnum) AS n FROM assets WHERE kind = ? AND name = ?", (kind, name)).fetchone()
        return int(row["n"] or 0) + 1

    def _commit(self, con: sqlite3.Connection, asset: Asset) -> None:
        """Record file first (atomically), then the index row, inside the caller's transaction."""
        record = json.dumps({k: v for k, v in asset.to_json().items() if k != "existing"})
        target = self.record_path(asset.kind, asset.name, asset.version)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        tmp = f"{target}.{os.getpid()}-{os.urandom(4).hex()}.tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(record + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            con.execute(
                "INSERT INTO assets (kind, name, version, vnum, content_hash, created, record) VALUES (?,?,?,?,?,?,?)",
                (asset.kind, asset.name, asset.version, _vnum(asset.version), asset.content_hash, asset.created,
                 record),
            )
            os.replace(tmp, target)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)

    # -- read -----------------------------------------------------------------------

    def get(self, kind: str, name: str, version: Any = "latest", *, check_content: bool = True) -> Asset:
        name = check_name(name, "model" if kind == "model" else "data asset")
        if isinstance(version, list) and len(version) == 1:
            version = version[0]
        version = "latest" if version in (None, "", "latest") else check_version(version)
        with self._read() as con:
            if version == "latest":
                row = con.execute(
                    "SELECT record FROM assets WHERE kind = ? AND name = ? ORDER BY vnum IS NULL, vnum DESC, created DESC"
                    " LIMIT 1", (kind, name)).fetchone()
            else:
                row = con.execute("SELECT record FROM assets WHERE kind = ? AND name = ? AND version = ?",
                                  (kind, name, version)).fetchone()
            versions = [r["version"] for r in con.execute(
                "SELECT version FROM assets WHERE kind = ? AND name = ? ORDER BY vnum, created", (kind, name))]
        if row is None:
            fix = ("register it first with " + ("register_data()" if kind == "data" else "register_model()")
                   + (", or download it from Azure ML with download_data()" if kind == "data" else ""))
            if versions:
                raise AssetNotFound(
                    f"{_label(kind)} `{name}` has no version {version} in {self.root} (its versions: "
                    f"{', '.join(versions)}); use one of those or \"latest\".",
                    field="version",
                )
            raise AssetNotFound(f"There is no {_label(kind).lower()} `{name}` in {self.root}; {fix}.", field="name")
        asset = _asset(row["record"])
        if check_content and asset.backend == "local" and asset.path and not os.path.exists(asset.path):
            raise StoreDamaged(
                f"{_label(kind)} `{name}` version {asset.version} is recorded but its content `{asset.path}` is "
                f"missing. Register the original content again (register_data(path, \"{name}\")) to restore it.",
            )
        return asset

    def list(self, kind: str, name: Optional[str] = None) -> list[Asset]:
        sql = "SELECT record FROM assets WHERE kind = ?"
        params: list[Any] = [kind]
        if name:
            sql += " AND name = ?"
            params.append(name)
        sql += " ORDER BY name, vnum IS NULL, vnum, created"
        with self._read() as con:
            rows = con.execute(sql, params).fetchall()
        return [_asset(r["record"]) for r in rows]

    def verify(self, kind: str, name: str, version: str) -> bool:
        """Re-hash a version's content: False when it was changed after registering."""
        asset = self.get(kind, name, version)
        if not asset.path or not asset.content_hash:
            return True
        return content_hash(asset.path)[0] == asset.content_hash

    # -- repair ---------------------------------------------------------------------

    def rebuild(self) -> dict[str, Any]:
        """A new index from the record files; the old index is kept as ``index.sqlite.damaged-<time>``."""
        kept = None
        if os.path.exists(self.index_path):
            kept = f"{self.index_path}.damaged-{time.strftime('%Y%m%d%H%M%S')}"
            os.replace(self.index_path, kept)
            for suffix in ("-wal", "-shm"):
                if os.path.exists(self.index_path + suffix):
                    os.replace(self.index_path + suffix, kept + suffix)
        records_dir = os.path.join(self.root, "records")
        count, skipped = 0, []
        if os.path.isdir(self.objects_dir()):  # copies a killed registration left behind
            for name in os.listdir(self.objects_dir()):
                if name.startswith(".staging-"):
                    _remove_tree(os.path.join(self.objects_dir(), name))
        with self._transaction() as con:
            for dirpath, _, files in os.walk(records_dir):
                for fname in sorted(files):
                    if not fname.endswith(".json"):
                        continue
                    full = os.path.join(dirpath, fname)
                    try:
                        with open(full, encoding="utf-8") as fh:
                            text = fh.read().strip()
                        asset = _asset(text)
                        con.execute(
                            "INSERT OR REPLACE INTO assets (kind, name, version, vnum, content_hash, created, record)"
                            " VALUES (?,?,?,?,?,?,?)",
                            (asset.kind, asset.name, asset.version, _vnum(asset.version), asset.content_hash,
                             asset.created, text),
                        )
                        count += 1
                    except (ValueError, TypeError, KeyError):
                        skipped.append(full)
        return {"records": count, "skipped": skipped, "kept": kept}


def _asset(record: str) -> Asset:
    data = json.loads(record)
    data.pop("existing", None)
    return Asset(**data)


def _label(kind: str) -> str:
    return "Model" if kind == "model" else "Data asset"


def _copy_failure(exc: BaseException, path: str) -> tuple[str, str]:
    """The first file a copy tripped over, and why (``shutil.Error`` collects (src, dst, why) triples)."""
    if isinstance(exc, shutil.Error) and exc.args and isinstance(exc.args[0], list) and exc.args[0]:
        src, _dst, why = exc.args[0][0]
        return str(src), str(why)
    return str(getattr(exc, "filename", None) or path), str(exc)


def _make_read_only(root: str) -> None:
    """Registered content is immutable: drop write bits so a stray script cannot change it in place."""
    mask = ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH)
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            full = os.path.join(dirpath, f)
            if not os.path.islink(full):
                os.chmod(full, os.stat(full).st_mode & mask)


def _remove_tree(path: str) -> None:
    def allow(func: Any, p: str, _exc: Any) -> None:
        os.chmod(os.path.dirname(p), 0o700)
        if os.path.isdir(p) and not os.path.islink(p):
            os.chmod(p, 0o700)
        else:
            os.chmod(p, 0o600)
        func(p)

    shutil.rmtree(path, onerror=allow)
