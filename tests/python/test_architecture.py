"""The layering the module map in amlr/__init__.py describes, checked."""
import importlib
import inspect
import json
import re
import subprocess
import sys

import pytest

from amlr import api
from amlr.backends import BACKENDS, Backend, get_backend

PROTOCOL = [name for name, member in vars(Backend).items() if inspect.isfunction(member) and not name.startswith("_")]


def test_the_protocol_names_every_operation_the_bridge_uses():
    assert set(PROTOCOL) == {"submit", "refresh", "steps", "logs", "follow", "cancel", "download", "metrics"}


@pytest.mark.parametrize("name", sorted(BACKENDS))
def test_each_backend_module_implements_the_protocol(name):
    module = get_backend(name)
    for member in PROTOCOL:
        fn = getattr(module, member, None)
        assert callable(fn), f"backend {name} lacks {member}()"
        wanted = [p for p in inspect.signature(getattr(Backend, member)).parameters if p != "self"]
        params = inspect.signature(fn).parameters
        assert list(params)[:len(wanted)] == wanted, f"{name}.{member}{inspect.signature(fn)}"
        extra = list(params.values())[len(wanted):]
        assert all(p.default is not inspect.Parameter.empty for p in extra), f"{name}.{member}: extra required args"


def test_feature_modules_do_not_import_the_bridge():
    modules = ["amlr.assets", "amlr.doctor", "amlr.endpoints", "amlr.environment", "amlr.export", "amlr.workspace",
               "amlr.snapshot", "amlr.store", "amlr.registry", "amlr.spec"]
    code = ("import json, sys\n"
            f"for m in {modules!r}: __import__(m)\n"
            "print(json.dumps(sorted(m for m in sys.modules if m == 'amlr.api')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(importlib.import_module("amlr").__path__[0] + "/..")})
    assert json.loads(out.stdout) == []


def _imported_by(code):
    out = subprocess.run([sys.executable, "-S", "-c", code + "\nimport json, sys; print(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, check=True,
                         env={"PYTHONPATH": str(importlib.import_module("amlr").__path__[0] + "/..")})
    return set(json.loads(out.stdout))


def test_readers_and_the_validator_import_only_what_they_use():
    # Every bridge call validates or reads; only submit stages snapshots (issue 13: start-up is the cost).
    staging = {"amlr.packaging", "amlr.snapshot", "amlr.stepcode", "amlr.sweep", "amlr.backends.local.launch"}
    reader = _imported_by("import amlr.api, amlr.backends.local")
    assert {"amlr.backends.local.status", "amlr.backends.local.logfiles"} <= reader
    assert not staging & reader
    assert not {"amlr.sweep", "amlr.sweepazure", "shutil"} & _imported_by("import amlr.spec")
    runner = _imported_by("import amlr.backends.local.runner")
    assert "amlr.sweep" in runner and not {"amlr.packaging", "amlr.snapshot"} & runner
    assert staging <= _imported_by("from amlr.backends.local import launch")


def test_every_lazily_registered_method_resolves_to_a_function():
    for name, target in api.LAZY_METHODS.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), name
        assert name not in api.METHODS or api.METHODS[name] is getattr(importlib.import_module(module), function)
    assert api.find_method("data_list") is importlib.import_module("amlr.assets").data_list


def test_the_module_map_names_every_module():
    import pkgutil

    import amlr

    doc = amlr.__doc__ or ""
    names = [info.name[len("amlr."):] for info in pkgutil.walk_packages(amlr.__path__, "amlr.")]
    assert "backends.azureml_v2.plan" in names and "endpoints.bridge" in names
    for name in names:
        *package, module = name.split(".")
        in_package = "/".join(package) + "/" in doc if package else True
        assert in_package and re.search(rf"\b{module}\b", doc), f"amlr/__init__.py's module map lacks {name}"
