"""Job environments: what image a step runs in, and a content hash that names it.

R's ``r_environment()`` sends a plain dict (see :func:`resolve_environment`);
this module turns it into a :class:`ResolvedEnvironment` that every backend
uses the same way:

* a prebuilt ``image`` (optionally in a private registry), or
* a Dockerfile (amlr's own ``docker/Dockerfile`` by default) plus build
  arguments, notably ``CRAN_PACKAGES``, that Azure ML builds.

The ``identity`` is a sha256 over everything that decides the image's content
-- Dockerfile text, build arguments and package list (sorted), the files the
Dockerfile copies, the image reference and the registry address and user --
and never the password. The environment is named and versioned after it, so
Azure ML reuses an image it already built and a changed package list builds a
new one.

Registry passwords never enter a spec, a ResolvedEnvironment or a build
context: the spec carries the *name* of an environment variable and
:func:`registry_password` reads it at the last moment.

Azure ML builds a context without build arguments, so
:func:`write_build_context` bakes them into the context's Dockerfile as
``ARG`` defaults; ``docker build`` on that folder gives the same image.

The image needs amlr's R package (``step_input()``, ``step_output()``,
``log_metric()``). The Dockerfile copies it from :data:`AMLR_PACKAGE_FILE`,
which the build context gets from, in order: ``$AMLR_SOURCE`` (a source
tarball or folder), the source tree this module lives in (a checkout), or the
installed package this module lives in (a binary package, which R installs
across R 4.x versions).

Bridge methods: ``environment_resolve`` (what R shows), ``environment_context``
(``export_environment()``) and ``environment_source_files`` (the files a
snapshot of a folder holds, for ``r_dependencies()``).
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
from dataclasses import dataclass, field
from glob import glob
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from .dockerlint import Instruction, parse_dockerfile
from .errors import BuildContextError, InvalidEnvironment

__all__ = [
    "AMLR_PACKAGE_FILE",
    "CRAN_PACKAGES_ARG",
    "DEFAULT_PASSWORD_ENV",
    "AmlrPackage",
    "BuildContextError",
    "InvalidEnvironment",
    "ResolvedEnvironment",
    "amlr_package",
    "baked_dockerfile",
    "default_dockerfile_path",
    "registry_password",
    "resolve_environment",
    "write_build_context",
]

DEFAULT_PASSWORD_ENV = "AMLR_REGISTRY_PASSWORD"
CRAN_PACKAGES_ARG = "CRAN_PACKAGES"
AMLR_PACKAGE_FILE = "amlr_package.tar.gz"
"""The name under which a build context carries amlr's R package; the Dockerfile COPYs it."""
AMLR_SOURCE_ENV = "AMLR_SOURCE"
NAME_PREFIX = "amlr-r-"
VERSION_CHARS = 12

_SPEC_KEYS = ("image", "registry", "dockerfile", "cran_packages", "name", "auto")
_CRAN_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$")
_ENV_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")
_ENV_VAR_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IMAGE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@+-]*$")
_REGISTRY_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.-]*(:[0-9]+)?$")
_TAR_MTIME = 315532800  # 1980-01-01: fixed, so the same package gives the same bytes
_HASH_HEADER = "amlr-environment-v1"


@dataclass(frozen=True)
class ResolvedEnvironment:
    name: str
    version: str
    identity: str
    image: Optional[str]
    registry_address: Optional[str]
    registry_username: Optional[str]
    registry_password_env: Optional[str]
    dockerfile_text: Optional[str]
    context_dir: Optional[str]
    build_args: Dict[str, str]
    cran_packages: Tuple[str, ...]
    dockerfile_path: Optional[str] = None
    context_files: Tuple[Tuple[str, str], ...] = field(default=(), repr=False)
    """(path relative to the context, sha256) of every file the Dockerfile copies."""

    @property
    def builds_image(self) -> bool:
        """True when Azure ML must build the image from a Dockerfile."""
        return self.dockerfile_text is not None

    def to_json(self) -> Dict[str, Any]:
        """What R shows; names of secrets only, never their values."""
        return {
            "name": self.name,
            "version": self.version,
            "identity": self.identity,
            "image": self.image,
            "registry": None if self.registry_address is None else {
                "address": self.registry_address,
                "username": self.registry_username,
                "password_env": self.registry_password_env,
                "password_set": registry_password(self) is not None,
            },
            "dockerfile": self.dockerfile_path,
            "context_dir": self.context_dir,
            "build_args": dict(self.build_args),
            "cran_packages": list(self.cran_packages),
            "context_files": [path for path, _ in self.context_files],
        }


@dataclass(frozen=True)
class AmlrPackage:
    """Where amlr's R package comes from for the image: a source tree/tarball or an installed copy."""

    kind: str  # "source_dir" | "tarball" | "installed"
    path: str
    files: Tuple[Tuple[str, str], ...]  # (path inside the package, absolute path); empty for "tarball"

    def fingerprint(self) -> str:
        h = hashlib.sha256(b"amlr-package-v1\0" + self.kind.encode() + b"\0")
        if self.kind == "tarball":
            h.update(_file_sha256(self.path).encode())
            return h.hexdigest()
        files = self.files
        if self.kind == "installed" and _has_remote_sha(dict(files).get("DESCRIPTION")):
            # Installed from git (remotes, pak): the commit names the code, and every reinstall of it
            # (which rewrites the lazy-load database byte-differently) reuses the same image.
            files = tuple((rel, path) for rel, path in files if rel == "DESCRIPTION")
        for rel, path in files:
            h.update(rel.encode() + b"\0" + _package_file_sha256(rel, path).encode() + b"\0")
        return h.hexdigest()


# --- resolving a spec ---------------------------------------------------------------------------


def resolve_environment(spec: Optional[Mapping[str, Any]], *,
                        default_dockerfile: Optional[str] = None) -> ResolvedEnvironment:
    """Validate an ``r_environment()`` spec and compute its identity.

    ``spec`` ``None`` (or empty) means amlr's default image: ``default_dockerfile``
    if given, else the ``docker/Dockerfile`` shipped with amlr.
    """
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(_SPEC_KEYS))
    if unknown:
        raise InvalidEnvironment(
            f"Unknown environment field(s) {', '.join(map(repr, unknown))}; build the environment with r_environment().",
            field="environment." + unknown[0])
    packages = _packages(spec.get("cran_packages"))
    if _truthy(spec.get("auto")):
        # R resolves cran_packages = "auto" before sending; an unresolved marker means it did not.
        raise InvalidEnvironment(
            "cran_packages = \"auto\" reached Python unresolved; it is resolved by R when the pipeline is "
            "submitted or exported (resolve_environment_spec()).", field="environment.cran_packages")
    image = _optional_str(spec.get("image"), "image")
    dockerfile = _optional_str(spec.get("dockerfile"), "dockerfile")
    name = _optional_str(spec.get("name"), "name")
    registry = _registry(spec.get("registry"))
    if image is not None and dockerfile is not None:
        raise InvalidEnvironment("Give either `image` or `dockerfile`, not both.", field="environment.image")
    if image is not None:
        if not _IMAGE_RE.match(image):
            raise InvalidEnvironment(f"`image` {image!r} is not an image reference like "
                                     "`myacr.azurecr.io/amlr-r:4.4.1`.", field="environment.image")
        if packages:
            raise InvalidEnvironment(
                "`cran_packages` need an image build, but `image` names a prebuilt image. Install the packages "
                "in that image (docker/README.md), or drop `image` to build amlr's Dockerfile with them.",
                field="environment.cran_packages")
    if name is not None and (not _ENV_NAME_RE.match(name) or name.lower().startswith("azureml")):
        raise InvalidEnvironment(
            f"Environment name {name!r} is not allowed: use letters, digits, `-`, `_` and `.` (at most 255), "
            "starting with a letter or digit, and not the reserved `AzureML` prefix.", field="environment.name")

    dockerfile_text = context_dir = dockerfile_path = None
    build_args: Dict[str, str] = {}
    context_files: Tuple[Tuple[str, str], ...] = ()
    if image is None:
        dockerfile_path = os.path.abspath(dockerfile or default_dockerfile or default_dockerfile_path())
        dockerfile_text = _read_dockerfile(dockerfile_path)
        context_dir = os.path.dirname(dockerfile_path)
        instructions = parse_dockerfile(dockerfile_text)
        if packages:
            if CRAN_PACKAGES_ARG not in _declared_args(instructions):
                raise InvalidEnvironment(
                    f"The Dockerfile {dockerfile_path} does not declare `ARG {CRAN_PACKAGES_ARG}`, so "
                    "`cran_packages` would be ignored. Add `ARG CRAN_PACKAGES=\"\"` and install them "
                    "(see amlr's docker/Dockerfile), or drop `cran_packages`.", field="environment.cran_packages")
            build_args[CRAN_PACKAGES_ARG] = " ".join(packages)
        context_files = _context_fingerprints(instructions, context_dir)

    identity = _identity(image=image, registry=registry, dockerfile_text=dockerfile_text,
                         build_args=build_args, packages=packages, context_files=context_files)
    version = identity[:VERSION_CHARS]
    return ResolvedEnvironment(
        name=name or NAME_PREFIX + version,
        version=version,
        identity=identity,
        image=image,
        registry_address=registry[0] if registry else None,
        registry_username=registry[1] if registry else None,
        registry_password_env=registry[2] if registry else None,
        dockerfile_text=dockerfile_text,
        context_dir=context_dir,
        build_args=build_args,
        cran_packages=packages,
        dockerfile_path=dockerfile_path,
        context_files=context_files,
    )


def registry_password(env: ResolvedEnvironment) -> Optional[str]:
    """The registry password, read from its environment variable now (None if unset or empty)."""
    if not env.registry_password_env:
        return None
    return os.environ.get(env.registry_password_env) or None


def default_dockerfile_path() -> str:
    """amlr's own Dockerfile: ``<pkg>/docker`` when installed, ``docker/`` in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parents[1] / "docker" / "Dockerfile", here.parents[2] / "docker" / "Dockerfile"):
        if candidate.is_file():
            return str(candidate)
    raise BuildContextError(
        f"amlr's default Dockerfile is missing (looked in {here.parents[1] / 'docker'}). Reinstall amlr, or "
        "give r_environment(dockerfile = ...) or r_environment(image = ...).")


def _identity(*, image: Optional[str], registry: Optional[Tuple[str, str, str]], dockerfile_text: Optional[str],
              build_args: Mapping[str, str], packages: Sequence[str],
              context_files: Sequence[Tuple[str, str]]) -> str:
    payload = {
        "dockerfile": dockerfile_text,
        "build_args": sorted(build_args.items()),
        "cran_packages": sorted(packages),
        "context_files": sorted(context_files),
        "image": image,
        "registry": [registry[0], registry[1]] if registry else None,  # address and user, never the password
    }
    text = _HASH_HEADER + "\0" + json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _truthy(value: Any) -> bool:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value is True


def _optional_str(value: Any, key: str) -> Optional[str]:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if value is None or value == {} or value == []:
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidEnvironment(f"`{key}` must be a single non-empty string.", field="environment." + key)
    return value.strip()


def _packages(value: Any) -> Tuple[str, ...]:
    if value is None or value == {}:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidEnvironment("`cran_packages` must be a character vector of package names.",
                                 field="environment.cran_packages")
    if value == ["auto"]:
        raise InvalidEnvironment(
            "cran_packages = \"auto\" reached Python unresolved; R resolves it when the pipeline is submitted.",
            field="environment.cran_packages")
    bad = [v for v in value if not _CRAN_NAME_RE.match(v)]
    if bad:
        raise InvalidEnvironment(f"Not CRAN package names: {', '.join(map(repr, bad))}.",
                                 field="environment.cran_packages")
    return tuple(sorted(set(value)))


def _registry(value: Any) -> Optional[Tuple[str, str, str]]:
    if value is None or value == {} or value == []:
        return None
    if not isinstance(value, dict):
        raise InvalidEnvironment("`registry` must come from registry_credentials().", field="environment.registry")
    if "password" in value:
        raise InvalidEnvironment(
            "The registry spec carries a password; amlr sends only the name of the environment variable "
            "that holds it. Use registry_credentials(), which sets it.", field="environment.registry.password")
    address = _optional_str(value.get("address"), "registry.address")
    username = _optional_str(value.get("username"), "registry.username")
    password_env = _optional_str(value.get("password_env"), "registry.password_env") or DEFAULT_PASSWORD_ENV
    if address is None or not _REGISTRY_RE.match(address):
        raise InvalidEnvironment("`registry$address` must be a registry host such as `myacr.azurecr.io`.",
                                 field="environment.registry.address")
    if username is None:
        raise InvalidEnvironment("`registry$username` is missing.", field="environment.registry.username")
    if not _ENV_VAR_RE.match(password_env):
        raise InvalidEnvironment(f"`registry$password_env` {password_env!r} is not an environment variable name.",
                                 field="environment.registry.password_env")
    return address, username, password_env


def _read_dockerfile(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except FileNotFoundError:
        raise InvalidEnvironment(f"Dockerfile {path} does not exist.", field="environment.dockerfile") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidEnvironment(f"Cannot read Dockerfile {path}: {exc}.", field="environment.dockerfile") from None


def _declared_args(instructions: Iterable[Instruction]) -> List[str]:
    names = []
    for ins in instructions:
        if ins.keyword == "ARG":
            for word in ins.text.split():
                names.append(word.split("=", 1)[0])
    return names


# --- what the Dockerfile copies -----------------------------------------------------------------


def _copy_sources(instructions: Iterable[Instruction]) -> List[Tuple[str, int]]:
    """Local sources of COPY/ADD (not ``--from`` stages, not URLs), with their line numbers."""
    out: List[Tuple[str, int]] = []
    for ins in instructions:
        if ins.keyword not in ("COPY", "ADD"):
            continue
        flags, rest, _ = ins.flags_and_rest()
        if any(f.startswith("--from") for f in flags):
            continue
        try:
            words = json.loads(rest) if rest.lstrip().startswith("[") else rest.split()
        except ValueError:
            words = rest.split()
        for src in words[:-1]:
            if re.match(r"^[a-z][a-z0-9+.-]*://", src, re.I) or src.startswith("<<"):
                continue
            out.append((src, ins.line))
    return out


def _expand_source(src: str, context_dir: str) -> List[str]:
    """Context-relative file paths that a COPY source names (globs and folders expanded)."""
    rel = os.path.normpath(src.lstrip("/"))
    if rel == "." or rel.startswith(".."):
        if rel == ".":
            rel = ""
        else:
            raise BuildContextError(f"COPY source `{src}` points outside the build context {context_dir}.")
    matches = glob(os.path.join(context_dir, rel)) if any(c in rel for c in "*?[") else [os.path.join(context_dir, rel)]
    files: List[str] = []
    for match in matches:
        if os.path.isdir(match):
            for root, dirs, names in os.walk(match):
                dirs[:] = sorted(d for d in dirs if d != "__pycache__")
                files.extend(os.path.relpath(os.path.join(root, n), context_dir) for n in sorted(names))
        elif os.path.isfile(match):
            files.append(os.path.relpath(match, context_dir))
    return sorted({f.replace(os.sep, "/") for f in files})


def _context_fingerprints(instructions: List[Instruction], context_dir: str) -> Tuple[Tuple[str, str], ...]:
    out: Dict[str, str] = {}
    for src, line in _copy_sources(instructions):
        if _is_amlr_package(src) and not os.path.exists(os.path.join(context_dir, AMLR_PACKAGE_FILE)):
            out[AMLR_PACKAGE_FILE] = amlr_package().fingerprint()
            continue
        files = _expand_source(src, context_dir)
        if not files:
            raise BuildContextError(
                f"The Dockerfile copies `{src}` (line {line}), which is not in its folder {context_dir}. Put it "
                "there or remove the COPY.", data={"source": src, "line": line})
        for rel in files:
            out[rel] = _file_sha256(os.path.join(context_dir, rel))
    return tuple(sorted(out.items()))


def _is_amlr_package(src: str) -> bool:
    return os.path.normpath(src.lstrip("/")) == AMLR_PACKAGE_FILE


# --- amlr's R package for the image -------------------------------------------------------------


def amlr_package() -> AmlrPackage:
    """Find amlr's R package to put in the image (``$AMLR_SOURCE``, else this checkout, else this install)."""
    override = os.environ.get(AMLR_SOURCE_ENV, "").strip()
    if override:
        path = os.path.abspath(os.path.expanduser(override))
        if os.path.isfile(path) and path.endswith((".tar.gz", ".tgz")):
            return AmlrPackage("tarball", path, ())
        if os.path.isdir(path) and _is_amlr_description(os.path.join(path, "DESCRIPTION")):
            return AmlrPackage("source_dir", path, _source_package_files(path))
        raise BuildContextError(
            f"${AMLR_SOURCE_ENV} is {override!r}, which is neither an amlr source tarball (.tar.gz) nor an "
            "amlr source folder (with DESCRIPTION and R/).")
    here = Path(__file__).resolve().parent
    checkout = here.parents[2]
    if here.parents[1].name == "inst" and _is_amlr_description(str(checkout / "DESCRIPTION")) \
            and (checkout / "R").is_dir():
        return AmlrPackage("source_dir", str(checkout), _source_package_files(str(checkout)))
    installed = here.parents[1]
    if _is_amlr_description(str(installed / "DESCRIPTION")) and (installed / "Meta").is_dir():
        return AmlrPackage("installed", str(installed), _installed_package_files(str(installed)))
    raise BuildContextError(
        "Cannot find amlr's R package to install in the image. Set AMLR_SOURCE to an amlr source tarball "
        "(R CMD build) or source folder.")


def _is_amlr_description(path: str) -> bool:
    try:
        with open(path, encoding="utf-8") as fh:
            return any(line.strip() == "Package: amlr" for line in fh)
    except OSError:
        return False


def _source_package_files(root: str) -> Tuple[Tuple[str, str], ...]:
    """What R CMD INSTALL needs to install amlr's R code: DESCRIPTION, NAMESPACE, LICENSE, R/."""
    rels = [n for n in ("DESCRIPTION", "NAMESPACE", "LICENSE") if os.path.isfile(os.path.join(root, n))]
    r_dir = os.path.join(root, "R")
    rels += ["R/" + n for n in sorted(os.listdir(r_dir)) if re.search(r"\.([RrSsq]|rda|rdata)$", n, re.I)]
    return tuple((rel, os.path.join(root, rel)) for rel in rels)


def _installed_package_files(root: str) -> Tuple[Tuple[str, str], ...]:
    """An installed (binary) amlr minus its Python and Docker folders, which the job does not need."""
    out = []
    for dirpath, dirs, names in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
        if rel_dir == ".":
            dirs[:] = sorted(d for d in dirs if d not in ("python", "docker", "examples"))
        else:
            dirs.sort()
        for n in sorted(names):
            rel = n if rel_dir == "." else f"{rel_dir}/{n}"
            out.append((rel, os.path.join(dirpath, n)))
    return tuple(sorted(out))


def _has_remote_sha(description: Optional[str]) -> bool:
    if not description:
        return False
    with open(description, encoding="utf-8") as fh:
        return any(line.startswith("RemoteSha:") for line in fh)


def _package_file_sha256(rel: str, path: str) -> str:
    if rel == "DESCRIPTION":
        # The install date in `Built:`/`Packaged:` changes on every reinstall, not the code.
        with open(path, encoding="utf-8") as fh:
            kept = [line for line in fh if not line.startswith(("Built:", "Packaged:"))]
        return hashlib.sha256("".join(kept).encode("utf-8")).hexdigest()
    return _file_sha256(path)


def _write_package_tarball(pkg: AmlrPackage, dest: str) -> None:
    if pkg.kind == "tarball":
        shutil.copyfile(pkg.path, dest)
        return
    with open(dest, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs_added = set()
        for rel, path in pkg.files:
            parts = rel.split("/")[:-1]
            for k in range(len(parts)):
                d = "/".join(parts[: k + 1])
                if d not in dirs_added:
                    dirs_added.add(d)
                    tar.addfile(_tar_info("amlr/" + d, directory=True))
            with open(path, "rb") as fh:
                data = fh.read()
            tar.addfile(_tar_info("amlr/" + rel, size=len(data)), io.BytesIO(data))


def _tar_info(name: str, *, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mtime = _TAR_MTIME
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    if directory:
        info.type = tarfile.DIRTYPE
        info.mode = 0o755
    else:
        info.size = size
        info.mode = 0o644
    return info


# --- build contexts -----------------------------------------------------------------------------


def baked_dockerfile(env: ResolvedEnvironment) -> str:
    """The Dockerfile with ``build_args`` written in as ``ARG`` defaults (Azure ML passes no build args)."""
    if env.dockerfile_text is None:
        raise BuildContextError(f"Environment {env.name} uses the prebuilt image {env.image}; there is no "
                                "Dockerfile to build.")
    if not env.build_args:
        return env.dockerfile_text
    lines = env.dockerfile_text.splitlines(keepends=True)
    for ins in reversed(parse_dockerfile(env.dockerfile_text)):
        if ins.keyword != "ARG":
            continue
        words = ins.text.split()
        if not any(w.split("=", 1)[0] in env.build_args for w in words):
            continue
        new_words = []
        for w in words:
            key = w.split("=", 1)[0]
            new_words.append(f'{key}="{env.build_args[key]}"' if key in env.build_args else w)
        first, last = ins.line - 1, ins.offsets[-1][0] - 1
        ending = "\n" if lines[last].endswith("\n") else ""
        lines[first:last + 1] = [f"ARG {' '.join(new_words)}{ending}"]
    return "".join(lines)


def write_build_context(env: ResolvedEnvironment, dest_dir: str) -> str:
    """Materialise a Docker build context for ``env`` in ``dest_dir`` (created; must be empty).

    It holds ``Dockerfile`` (build args baked in) and exactly the files the
    Dockerfile copies, with amlr's R package as :data:`AMLR_PACKAGE_FILE` when
    asked for. Nothing secret goes in. Returns the folder's absolute path.
    """
    if env.dockerfile_text is None or env.context_dir is None:
        raise BuildContextError(f"Environment {env.name} uses the prebuilt image {env.image}; there is no "
                                "build context to write.")
    dest = os.path.abspath(dest_dir)
    if os.path.isdir(dest) and os.listdir(dest):
        raise BuildContextError(f"Build context folder {dest} is not empty; give a new or empty folder.")
    os.makedirs(dest, exist_ok=True)
    for rel, expected in env.context_files:
        target = os.path.join(dest, *rel.split("/"))
        os.makedirs(os.path.dirname(target), exist_ok=True)
        source = os.path.join(env.context_dir, *rel.split("/"))
        if rel == AMLR_PACKAGE_FILE and not os.path.exists(source):
            pkg = amlr_package()
            if pkg.fingerprint() != expected:
                raise BuildContextError("amlr's R package changed since the environment was resolved; resolve it "
                                        "again so its identity matches the image.")
            _write_package_tarball(pkg, target)
            continue
        shutil.copyfile(source, target)
        if _file_sha256(target) != expected:
            raise BuildContextError(f"{source} changed since the environment was resolved; resolve it again.")
    with open(os.path.join(dest, "Dockerfile"), "w", encoding="utf-8", newline="\n") as fh:
        fh.write(baked_dockerfile(env))
    return dest


def _file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
