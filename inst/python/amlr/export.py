"""``export_pipeline()``: an amlr pipeline as files that other tools run.

``format = "azureml_v2"`` writes an Azure ML v2 pipeline job YAML for
``az ml job create --file <path>``. Next to it go the steps' packaged code
(``<stem>_snapshots/<hash12>/``: the source folder plus the bootstrapper, as
every backend packages it) and, for environments that Azure ML builds, their
Docker build contexts (``<stem>_environments/<version>/``). Every path in the
YAML is relative to the YAML file, so the three can move together.

``format = "json"`` writes the validated amlr spec, paths relative to the file.

The same pipeline gives byte-identical files: folder names are content
hashes, port names are sorted, jobs follow the run order, and nothing records
a time or a machine. No secret is written: the YAML names images and build
contexts only, snapshots leave out ``.Renviron``/``.env``, build contexts
carry no credentials.

The job itself is planned by :mod:`amlr.backends.azureml_v2` (the same plan
its ``submit`` turns into azure-ai-ml objects); this module only lays it out
as files. YAML is written by a small emitter of our own, so exporting needs
no third-party package.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from typing import Any, Optional

from .backends.azureml_v2 import CommandNode, JobPlan, NodeEnvironment, NodeInput, stage
from . import snapshot
from .errors import BadRequest, DestinationUnusable, FileExists, InvalidSpec
from .limits import check_arg_sizes
from .spec import Pipeline, validate

FORMATS = ("azureml_v2", "json")
SCHEMA_URL = "https://azuremlschemas.azureedge.net/latest/pipelineJob.schema.json"
MARKER = ".amlr-export"
"""Written into the folders export makes, so overwrite deletes only folders amlr made."""
MARKER_TEXT = "written by amlr::export_pipeline(); replaced when the pipeline is exported again\n"


@dataclass
class ExportResult:
    path: str
    format: str
    files: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "files": list(self.files), "warnings": list(self.warnings)}


# -- a small, deterministic YAML emitter -----------------------------------------------------

_PLAIN_RE = re.compile(r"^[A-Za-z_/$.][^\x00-\x1f\x7f-\x9f\u2028\u2029\ufeff]*$")
# YAML 1.1 (PyYAML, azure-ai-ml's loader) reads these plain words as booleans or null.
_RESERVED_WORDS = {"y", "n", "yes", "no", "on", "off", "true", "false", "null", "~"}
_DOT_NUMBER_RE = re.compile(r"^\.([0-9]|inf$|nan$)", re.IGNORECASE)
_UNSAFE_RE = re.compile(r"[\x7f-\x9f\u2028\u2029\ufeff]")


def _plain_ok(text: str) -> bool:
    """Whether ``text`` reads back as the same string when written unquoted."""
    if not _PLAIN_RE.match(text) or text.lower() in _RESERVED_WORDS or _DOT_NUMBER_RE.match(text):
        return False
    return not (": " in text or " #" in text or text.endswith((":", " ")) or text == "<<")


def yaml_scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"cannot write {value!r} to YAML")
        return repr(value)
    if isinstance(value, str):
        if _plain_ok(value):
            return value
        # A JSON string is a valid YAML double-quoted scalar; escape what YAML would fold.
        return _UNSAFE_RE.sub(lambda m: "\\u%04x" % ord(m.group()), json.dumps(value, ensure_ascii=False))
    raise TypeError(f"cannot write {type(value).__name__} to YAML")


def _emit(node: Any, indent: int, lines: list[str]) -> None:
    pad = " " * indent
    if isinstance(node, dict):
        for key, value in node.items():
            head = f"{pad}{yaml_scalar(str(key))}:"
            if isinstance(value, (dict, list)) and value:
                lines.append(head)
                _emit(value, indent + 2, lines)
            else:
                lines.append(f"{head} {_inline(value)}")
        return
    for item in node:
        if isinstance(item, (dict, list)) and item:
            raise TypeError("nested collections in YAML lists are not needed by amlr's documents")
        lines.append(f"{pad}- {_inline(item)}")


def _inline(value: Any) -> str:
    if isinstance(value, dict):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return yaml_scalar(value)


def dump_yaml(document: dict[str, Any]) -> str:
    """Block-style YAML of nested dicts/lists/scalars, keys in the order given."""
    lines: list[str] = []
    _emit(document, 0, lines)
    return "\n".join(lines) + "\n"


# -- the v2 pipeline job document ------------------------------------------------------------


def relative_path(path: str, base_dir: str) -> str:
    """``path`` as the YAML spells it: POSIX, relative to ``base_dir``, starting with ``./`` or ``../``."""
    try:
        rel = os.path.relpath(path, base_dir)
    except ValueError:  # another drive (Windows): only an absolute path can say where
        return os.path.abspath(path).replace(os.sep, "/")
    rel = rel.replace(os.sep, "/")
    if rel == ".":
        return "./"
    return rel if rel.startswith("../") else "./" + rel


def _local_input_path(step: str, name: str, inp: NodeInput, base_dir: str) -> str:
    rel = relative_path(inp.path, base_dir)
    if ":" in rel or "@" in rel:
        # azure-ai-ml reads a relative path with ':' or '@' as a data asset reference.
        raise InvalidSpec(
            f"Input `{name}` of step `{step}` is `{inp.path}`; Azure ML would read its relative path `{rel}` "
            "as a data asset because it contains ':' or '@'. Rename the file or folder, or register it as a "
            "data asset and pass its `azureml://` URI.",
            field=f"steps[{step}].inputs.{name}",
        )
    return rel


def _input_document(node: CommandNode, name: str, inp: NodeInput, base_dir: str) -> Any:
    if inp.kind == "binding":
        return inp.path
    path = _local_input_path(node.name, name, inp, base_dir) if inp.kind == "local" else inp.path
    doc = {"type": inp.type, "path": path}
    if inp.mode:
        doc["mode"] = inp.mode
    return doc


def _environment_document(env: NodeEnvironment, base_dir: str) -> dict[str, Any]:
    # An inline environment is anonymous in Azure ML (its name would be ignored
    # with a warning); Azure ML names it by content hash, which reuses images.
    if env.image:
        return {"image": env.image}
    return {"build": {"path": relative_path(env.build_dir or "", base_dir)}}


def sweep_document(node: CommandNode, base_dir: str) -> dict[str, Any]:
    """An r_sweep() as a ``type: sweep`` node: its command an inline trial component with one input per parameter."""
    sw = node.sweep or {}
    trial: dict[str, Any] = {
        "type": "command",
        "code": relative_path(node.code, base_dir),
        "command": node.command,
        "environment": _environment_document(node.environment, base_dir),
        "is_deterministic": node.reuse,
        "inputs": {**{name: {"type": inp.type} for name, inp in node.inputs},
                   **{name: {"type": kind} for name, kind in sw["param_types"].items()}},
    }
    if node.env:
        trial["environment_variables"] = dict(node.env)
    registered = dict(node.registered)
    if node.outputs:
        trial["outputs"] = {name: {"type": "uri_folder"} for name in node.outputs}
    doc: dict[str, Any] = {"type": "sweep", "display_name": node.name, "trial": trial}
    if node.compute:
        doc["compute"] = node.compute
    if node.inputs:
        doc["inputs"] = {name: _input_document(node, name, inp, base_dir) for name, inp in node.inputs}
    if node.outputs:
        doc["outputs"] = {name: {"type": "uri_folder", **({"name": registered[name]} if name in registered else {})}
                          for name in node.outputs}
    for key in ("search_space", "objective", "sampling_algorithm", "limits", "early_termination"):
        if key in sw:
            doc[key] = sw[key]
    return doc


def node_document(node: CommandNode, base_dir: str) -> dict[str, Any]:
    """One step as a ``type: command`` job (an r_sweep(): a ``type: sweep`` job, :func:`sweep_document`).

    A step with ``allow_reuse = FALSE`` spells its command as an inline
    component, the only place a pipeline YAML accepts ``is_deterministic``.
    """
    body: dict[str, Any] = {
        "code": relative_path(node.code, base_dir),
        "command": node.command,
        "environment": _environment_document(node.environment, base_dir),
    }
    if node.env:
        body["environment_variables"] = dict(node.env)
    if node.sweep is not None:
        return sweep_document(node, base_dir)
    inputs = {name: _input_document(node, name, inp, base_dir) for name, inp in node.inputs}
    registered = dict(node.registered)
    outputs = {name: {"type": "uri_folder", **({"name": registered[name]} if name in registered else {})}
               for name in node.outputs}
    doc: dict[str, Any] = {"type": "command", "display_name": node.name}
    if node.reuse:
        doc.update(body)
    else:
        # No `name:` -- Azure ML replaces an inline component's name with azureml_anonymous anyway.
        component: dict[str, Any] = {"type": "command", **body, "is_deterministic": False}
        if node.inputs:
            component["inputs"] = {name: {"type": inp.type} for name, inp in node.inputs}
        if outputs:
            component["outputs"] = {name: {"type": "uri_folder"} for name in node.outputs}
        doc["component"] = component
    if node.compute:
        doc["compute"] = node.compute
    if inputs:
        doc["inputs"] = inputs
    if outputs:
        doc["outputs"] = outputs
    return doc


def pipeline_document(plan: JobPlan, base_dir: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"$schema": SCHEMA_URL, "type": "pipeline", "display_name": plan.display_name}
    if plan.description:
        doc["description"] = plan.description
    doc["experiment_name"] = plan.experiment_name
    doc["settings"] = {"default_compute": plan.default_compute}
    doc["jobs"] = {node.name: node_document(node, base_dir) for node in plan.nodes}
    return doc


def _header(path: str, pipeline: Pipeline, folders: list[str]) -> str:
    name = os.path.basename(path)
    lines = [
        f"# Azure ML v2 pipeline job for the amlr pipeline `{pipeline.name}`, written by amlr::export_pipeline().",
        f"# Run it with: az ml job create --file {name} --resource-group <group> --workspace-name <workspace>",
        f"# It needs the folder(s) next to it: {', '.join(folders)}.",
    ]
    return "\n".join(lines) + "\n"


# -- files ---------------------------------------------------------------------------------------


def sibling_folders(path: str) -> tuple[str, str]:
    """Where the snapshots and the build contexts of the YAML at ``path`` go."""
    stem = os.path.splitext(os.path.basename(path))[0]
    parent = os.path.dirname(path)
    return os.path.join(parent, f"{stem}_snapshots"), os.path.join(parent, f"{stem}_environments")


def _check_targets(path: str, folders: tuple[str, ...], overwrite: bool) -> None:
    existing = [p for p in (path, *folders) if os.path.lexists(p)]
    if existing and not overwrite:
        raise FileExists(
            f"`{existing[0]}` already exists; nothing was written. Pass overwrite = TRUE to replace "
            f"{'it' if len(existing) == 1 else 'them (' + ', '.join(existing) + ')'}, or choose another path."
        )
    if os.path.isdir(path):
        raise BadRequest(f"`{path}` is a folder; give the path of the file to write, e.g. `{path}/pipeline.yml`.")
    for folder in folders:
        if os.path.lexists(folder) and not os.path.isfile(os.path.join(folder, MARKER)):
            raise FileExists(
                f"`{folder}` exists but was not written by export_pipeline(), so amlr will not replace it. "
                "Move it away or export to another path."
            )


def _write_text(path: str, text: str) -> None:
    tmp = path + ".amlr-tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _listing(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    return [os.path.join(folder, name) for name in sorted(os.listdir(folder)) if name != MARKER]


def _relocated(plan: JobPlan, old_root: str, new_root: str) -> JobPlan:
    """The plan with the paths under ``old_root`` (staging) moved to ``new_root``."""
    def move(path: Optional[str]) -> Optional[str]:
        if path is None or os.path.commonpath([path, old_root]) != old_root:
            return path
        return os.path.join(new_root, os.path.relpath(path, old_root))

    nodes = tuple(
        dataclasses.replace(
            node,
            code=move(node.code) or node.code,
            environment=dataclasses.replace(node.environment, build_dir=move(node.environment.build_dir)),
        )
        for node in plan.nodes
    )
    return dataclasses.replace(plan, nodes=nodes)


def export_azureml_v2(pipeline: Pipeline, path: str, *, overwrite: bool = False) -> ExportResult:
    """Stage everything outside the destination, then move it into place.

    The destination is often the project folder that the steps package: were
    the previous export (or this one, half-written) still there, it would end
    up inside the new snapshots. So the previous export is moved aside first
    (and put back if this one fails) and the snapshots are built in a
    temporary folder.
    """
    base_dir = os.path.dirname(path)
    targets = (path, *sibling_folders(path))
    _check_targets(path, targets[1:], overwrite)
    with tempfile.TemporaryDirectory(prefix="amlr-export-") as staging:
        previous = os.path.join(staging, "previous")
        os.makedirs(previous)
        moved_aside = [(t, os.path.join(previous, os.path.basename(t))) for t in targets if os.path.lexists(t)]
        for target, aside in moved_aside:
            shutil.move(target, aside)
        placed: list[str] = []
        try:
            build = os.path.join(staging, "build")
            staged = [os.path.join(build, os.path.basename(folder)) for folder in targets[1:]]
            plan = stage(pipeline, snapshots_dir=staged[0], environments_dir=staged[1],
                         experiment_name=pipeline.name)
            document = pipeline_document(_relocated(plan, build, base_dir), base_dir)
            folders = []
            for source, folder in zip(staged, targets[1:]):
                if os.path.isdir(source):
                    _write_text(os.path.join(source, MARKER), MARKER_TEXT)
                    shutil.move(source, folder)
                    placed.append(folder)
                    folders.append(os.path.basename(folder) + "/")
            _write_text(path, _header(path, pipeline, folders) + dump_yaml(document))
        except BaseException:
            for folder in (*placed, path):
                if os.path.isdir(folder):
                    shutil.rmtree(folder, ignore_errors=True)
                elif os.path.lexists(folder):
                    os.remove(folder)
            for target, aside in moved_aside:
                shutil.move(aside, target)
            raise
    files = [path, *_listing(targets[1]), *_listing(targets[2])]
    return ExportResult(path=path, format="azureml_v2", files=files, warnings=list(plan.warnings))


def _relative_spec_path(path: Optional[str], base_dir: str) -> Optional[str]:
    if not path:
        return path
    try:
        return os.path.relpath(path, base_dir).replace(os.sep, "/")
    except ValueError:
        return path


def json_document(pipeline: Pipeline, base_dir: str) -> dict[str, Any]:
    """The validated spec with every local path relative to ``base_dir``."""
    doc = pipeline.to_json()
    for step in doc["steps"]:
        step["source_dir"] = _relative_spec_path(step["source_dir"], base_dir)
        for inp in step["inputs"].values():
            if inp.get("type") == "path":
                inp["path"] = _relative_spec_path(inp["path"], base_dir)
    for holder in (doc, *doc["steps"]):
        env = holder.get("environment")
        if isinstance(env, dict) and isinstance(env.get("dockerfile"), str) and os.path.isabs(env["dockerfile"]):
            holder["environment"] = {**env, "dockerfile": _relative_spec_path(env["dockerfile"], base_dir)}
    return doc


def export_json(pipeline: Pipeline, path: str, *, overwrite: bool = False) -> ExportResult:
    _check_targets(path, (), overwrite)
    text = json.dumps(json_document(pipeline, os.path.dirname(path)), indent=2, sort_keys=True, ensure_ascii=False)
    _write_text(path, text + "\n")
    return ExportResult(path=path, format="json", files=[path])


def export_pipeline(pipeline: Pipeline, path: str, format: str = "azureml_v2", *,
                    overwrite: bool = False) -> ExportResult:
    """Write ``pipeline`` to ``path`` in ``format`` (see the module docstring for the layout)."""
    if format not in FORMATS:
        raise BadRequest(f"Unknown export format `{format}`; use one of: {', '.join(FORMATS)}.")
    path = os.path.abspath(os.path.expanduser(path))
    parent = os.path.dirname(path)
    if not os.path.isdir(parent):
        raise BadRequest(f"The folder `{parent}` does not exist; create it first or choose another path.")
    if format == "json":
        return export_json(pipeline, path, overwrite=overwrite)
    return export_azureml_v2(pipeline, path, overwrite=overwrite)


def check_export_destination(path: str) -> None:
    """The folder of ``path`` exists, is a folder and can be written, before anything is built."""
    folder = os.path.dirname(os.path.abspath(path)) or "."
    probe = folder
    while not os.path.exists(probe) and os.path.dirname(probe) != probe:
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise DestinationUnusable(
            f"`path` `{path}` is below `{probe}`, which is a file, not a folder; give a path in an existing folder.",
            field="path")
    if probe != folder:
        raise BadRequest(
            f"The folder of `path` (`{folder}`) does not exist; create it first, or give a path in an existing "
            "folder.", field="path")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DestinationUnusable(
            f"The folder of `path` (`{folder}`) is read-only for you; give a path in a folder you can write to.",
            field="path")


def export_method(params: dict[str, Any]) -> dict[str, Any]:
    """R's ``export_pipeline()``: params ``spec``, ``path``, ``format``, ``overwrite``."""
    path = params.get("path")
    if isinstance(path, list) and len(path) == 1:
        path = path[0]
    if not isinstance(path, str) or not path:
        raise BadRequest("`path` must be the file to write, e.g. \"pipeline.yml\".")
    pipeline = validate(params.get("spec"))
    fmt = params.get("format") or "azureml_v2"
    if isinstance(fmt, list) and len(fmt) == 1:
        fmt = fmt[0]
    if fmt not in ("azureml_v2", "json"):
        raise BadRequest(f"`format` must be \"azureml_v2\" or \"json\", not {fmt!r}.", field="format")
    check_arg_sizes(pipeline)
    check_export_destination(path)
    snapshot.require_scripts(pipeline.steps)  # a job without its script could only fail on Azure ML
    return export_pipeline(pipeline, path, fmt, overwrite=bool(params.get("overwrite"))).to_json()
