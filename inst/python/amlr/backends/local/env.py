"""What a local step sees of the R session's environment: an allow-list, and never a secret.

A local step inherits only the session variables an Azure ML job would have
too (``PASSTHROUGH_ENV``: a PATH, a home, a locale, a time zone, a temp
folder, R's library paths, a proxy), plus its own ``r_step(env =)`` and amlr's
``AMLR_*`` contract; every variable that reaches it is part of its
fingerprint (:mod:`.plan`). The runner (:mod:`.steprun`) also removes amlr's
own secrets and every ``password_env`` the pipeline names, so a step's log can
never show them.
"""
from __future__ import annotations

import os
from typing import Any, Optional

from ...spec import Pipeline
from .. import _scalar

# What a local step sees of the R session's environment: what an Azure ML job
# would have too (a PATH, a home, a locale, a time zone, a temp folder, R's
# library paths, a proxy), plus the step's own r_step(env =) and amlr's
# AMLR_* contract. Nothing else -- in particular no credential -- reaches a
# step, and every variable that does is part of the step's fingerprint.
PASSTHROUGH_ENV = (
    "PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE", "TZ", "TMPDIR", "TEMP", "TMP",
    "R_LIBS", "R_LIBS_USER", "R_LIBS_SITE", "AMLR_RSCRIPT",
    "http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY",
)


def step_base_env(environ: Optional[dict[str, str]] = None) -> dict[str, str]:
    """The session variables a local step inherits (see PASSTHROUGH_ENV), locale categories included."""
    environ = dict(os.environ if environ is None else environ)
    return {k: v for k, v in sorted(environ.items()) if k in PASSTHROUGH_ENV or k.startswith("LC_")}


# amlr's own secrets: a step never needs them, and a step's log must never show them.
SECRET_ENV_VARS = ("AZURE_CLIENT_SECRET", "AZURE_CLIENT_CERTIFICATE_PASSWORD", "AZURE_PASSWORD",
                   "AMLR_REGISTRY_PASSWORD")


def secret_env_names(pipeline: Pipeline) -> set[str]:
    names = set(SECRET_ENV_VARS)
    for env in [pipeline.environment] + [s.environment for s in pipeline.steps]:
        reg = (env or {}).get("registry") if isinstance(env, dict) else None
        if isinstance(reg, dict):
            name = _scalar(reg.get("password_env"))
            if isinstance(name, str) and name:
                names.add(name)
    return names


def step_environment(base: Any, pipeline: Pipeline) -> dict[str, str]:
    """The runner's environment without amlr's secret variables."""
    drop = secret_env_names(pipeline)
    return {k: v for k, v in base.items() if k not in drop}
