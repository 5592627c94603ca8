"""One error vocabulary: every kind is defined in amlr/errors.py, once.

The R side (?amlr_errors, R/errors.R) is checked against ``errors.kinds()`` by
tests/testthat/test-errors.R.
"""
import importlib
import pkgutil

import amlr
from amlr import errors


def _all_modules():
    for info in pkgutil.walk_packages(amlr.__path__, "amlr."):
        if info.name != "amlr.__main__":
            yield importlib.import_module(info.name)


def _subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def test_every_error_kind_is_defined_in_errors_py():
    list(_all_modules())  # import everything, so every subclass exists
    outside = sorted(f"{c.__module__}.{c.__name__}" for c in _subclasses(errors.AmlrError)
                     if c.__module__ != "amlr.errors")
    assert outside == []


def test_one_class_per_kind():
    seen: dict = {}
    for cls in _subclasses(errors.AmlrError):
        assert seen.setdefault(cls.kind, cls) is cls, f"kind {cls.kind} defined twice"
    assert "azureml" not in seen  # one kind for an Azure failure on both backends: azure_request


def test_both_azure_backends_raise_the_same_kind():
    from amlr.backends import azureml, azureml_v2

    assert azureml.AzureMLError is azureml_v2.AzureRequestFailed
    assert azureml.AzureMLError("x").to_json()["class"] == "azure_request"


def test_kinds_have_a_description():
    kinds = errors.kinds()
    assert {"invalid_spec", "azure_request", "run_not_found", "python", "error"} <= set(kinds)
    assert all(kinds.values()), [k for k, v in kinds.items() if not v]
