"""Step 3 of the classic backend: the azureml-core pipeline objects, built without network."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Optional

from ...environment import (
    ResolvedEnvironment,
    baked_dockerfile,
    registry_password,
)
from ...errors import AmlrError, Credentials, InvalidSpec
from ... import stepcontract
from ...stepcontract import BOOTSTRAPPER_IN_SNAPSHOT
from ...spec import Step
from .common import DEFAULT_COMPUTE_TYPE, binding
from .plan import StepPlan, Plan, needs_build_context, datastore_uri


# -- 3. build (no network) -------------------------------------------------------------------


def classic_environment(env: ResolvedEnvironment, *, build_context: Any = None,
                        include_secrets: bool = False) -> Any:
    """An ``azureml.core.Environment`` for ``env``, named and versioned by its content.

    The registry password is set only with ``include_secrets`` (at submit
    time, read from its variable then); a built-for-inspection environment
    never holds it.
    """
    from azureml.core import Environment

    aml = Environment(env.name)
    aml.version = env.version
    # The R image brings its own Python for the bootstrapper; AML must not add
    # conda, and the SDK's placeholder variable would only vary the hash.
    aml.python.user_managed_dependencies = True
    aml.python.conda_dependencies = None
    # The public setter is deprecated (and logs so); run-time variables go on the RunConfiguration.
    aml._environment_variables = {}
    if env.image is not None:
        aml.docker.base_image = env.image
        if env.registry_address:
            aml.docker.base_image_registry.address = env.registry_address
            aml.docker.base_image_registry.username = env.registry_username
            if include_secrets:
                password = registry_password(env)
                if password is None:
                    raise Credentials(
                        f"The registry {env.registry_address} needs a password in the environment variable "
                        f"{env.registry_password_env}, which is not set. Set it (e.g. in ~/.Renviron) or pass "
                        "registry_credentials(password = ...).",
                        data={"missing": [env.registry_password_env]},
                    )
                aml.docker.base_image_registry.password = password
        return aml
    aml.docker.base_image = None
    if needs_build_context(env):
        if build_context is None:
            raise AmlrError(f"Environment {env.name} needs its Docker build context uploaded first "
                            "(upload_build_contexts).")
        aml.docker.build_context = build_context
    else:
        aml.docker.base_dockerfile = baked_dockerfile(env)
    return aml


@dataclass
class Built:
    """What :func:`build_pipeline` made: the Pipeline and the objects inside it."""

    pipeline: Any
    steps: dict[str, Any]
    environments: dict[str, Any]
    argv: dict[str, list[str]]
    """Step -> the bootstrapper command line, bindings unexpanded."""
    outputs: dict[str, dict[str, Any]]
    """Step -> output name -> PipelineData."""
    inputs: dict[str, dict[str, Any]]
    """Step -> input name -> InputPortBinding (mounted inputs only)."""

    def describe(self, plan: Plan) -> dict[str, Any]:
        """A JSON summary of what was built, for the run folder; no secret is in it."""
        return {
            "pipeline": plan.pipeline.name,
            "content_hash": plan.content_hash(),
            "steps": {
                p.step.name: {
                    "step_type": p.step.step_type,
                    "compute": p.compute,
                    "snapshot": p.snapshot.path,
                    "snapshot_hash": p.snapshot.hash,
                    "argv": self.argv[p.step.name],
                    "outputs": list(p.step.outputs),
                    "environment": p.environment.to_json(),
                    "allow_reuse": p.step.allow_reuse,
                }
                for p in plan.steps
            },
        }


def build_pipeline(workspace: Any, plan: Plan, *, datastore: Any, input_paths: Mapping[str, str],
                   build_contexts: Optional[Mapping[str, Any]] = None,
                   compute_types: Optional[Mapping[str, str]] = None,
                   get_datastore: Optional[Callable[[str], Any]] = None,
                   include_secrets: bool = False,
                   get_dataset: Optional[Callable[[str, str], Any]] = None) -> Built:
    """The azureml-pipeline objects for ``plan``; no request is made.

    ``input_paths`` maps local-path inputs to their place on ``datastore``
    (from :func:`upload_inputs`); ``build_contexts`` maps environment
    identities to uploaded DockerBuildContexts; ``compute_types`` maps compute
    names to AML types (default ``AmlCompute``), so no compute is fetched.
    ``get_datastore`` resolves other datastores named by ``azureml://`` inputs;
    ``get_dataset(name, version)`` the registered datasets that ``aml_data()`` names.
    """
    from azureml.pipeline.core import Pipeline as AmlPipeline, PipelineData

    compute_types = compute_types or {}
    contexts = build_contexts or {}
    environments = {
        identity: classic_environment(env, build_context=contexts.get(identity), include_secrets=include_secrets)
        for identity, env in plan.environments.items()
    }
    outputs: dict[str, dict[str, Any]] = {
        p.step.name: {o: registered_output(PipelineData(o, datastore=datastore), p.step.register.get(o))
                      for o in p.step.outputs}
        for p in plan.steps
    }
    built_steps: dict[str, Any] = {}
    argv: dict[str, list[str]] = {}
    inputs_by_step: dict[str, dict[str, Any]] = {}
    for p in plan.steps:
        ports = _inputs(p.step, outputs, datastore, input_paths, plan.input_hashes, get_datastore, get_dataset)
        bindings = {"input": ports, "output": outputs[p.step.name]}
        command = stepcontract.command(p.step.name, list(ports), p.step.outputs,
                                       lambda kind, name: bindings[kind][name])  # noqa: B023 - called now
        argv[p.step.name] = [w if isinstance(w, str) else binding(w.name) for w in command]
        compute = (p.compute, compute_types.get(p.compute, DEFAULT_COMPUTE_TYPE))
        make = {"estimator": _estimator_step, "python_script": _python_script_step}.get(p.step.step_type, _command_step)
        built_steps[p.step.name] = make(p, environments[p.environment.identity], compute, list(ports.values()),
                                        list(outputs[p.step.name].values()), command)
        inputs_by_step[p.step.name] = ports
    pipeline = AmlPipeline(
        workspace=workspace,
        steps=[built_steps[p.step.name] for p in plan.steps],
        description=plan.pipeline.description or plan.pipeline.name,
        default_datastore=datastore,
    )
    return Built(pipeline, built_steps, environments, argv, outputs, inputs_by_step)


def _inputs(step: Step, outputs: Mapping[str, Mapping[str, Any]], datastore: Any, input_paths: Mapping[str, str],
            input_hashes: Mapping[str, str],
            get_datastore: Optional[Callable[[str], Any]],
            get_dataset: Optional[Callable[[str, str], Any]] = None) -> dict[str, Any]:
    """Input ports (name -> binding) of the inputs Azure ML mounts (web URIs are contract values)."""
    from azureml.data.data_reference import DataReference
    from azureml.pipeline.core.graph import InputPortBinding

    ports: dict[str, Any] = {}
    for name, inp in sorted(step.inputs.items()):
        if inp.kind == "step_output":
            upstream = outputs[inp.step or ""][inp.output or ""]
            # A registered output is a PipelineOutputFileDataset, bound by name instead of as_input().
            ports[name] = upstream.as_input(name) if hasattr(upstream, "as_input") else \
                upstream.as_named_input(name).as_mount()
        elif inp.kind == "data_asset":
            if get_dataset is None:
                raise InvalidSpec(f"Input `{name}` of step `{step.name}` is data asset `{inp.asset}`, which needs a "
                                  "workspace to look up.", field=f"steps[{step.name}].inputs.{name}")
            named = get_dataset(inp.asset or "", inp.version or "latest").as_named_input(name)
            ports[name] = named.as_download() if inp.mode == "download" else named.as_mount()
        elif inp.kind == "path":
            local = inp.path or ""
            if local not in input_paths:
                raise AmlrError(f"Input `{name}` of step `{step.name}` ({local}) was not uploaded (upload_inputs).")
            ref = DataReference(datastore, data_reference_name=f"{name}_{input_hashes[local][:10]}",
                                path_on_datastore=input_paths[local], mode="mount")
            ports[name] = InputPortBinding(name, bind_object=ref, bind_mode="mount")
        else:
            target = datastore_uri(inp.uri or "")
            if target is None:
                continue  # https://, wasbs://, abfss:// ...: the script gets the URI and reads it itself
            store_name, path = target
            store = datastore if store_name == datastore.name else _lookup_datastore(get_datastore, store_name, step,
                                                                                     name)
            digest = hashlib.sha256((inp.uri or "").encode("utf-8")).hexdigest()[:10]
            ref = DataReference(store, data_reference_name=f"{name}_{digest}", path_on_datastore=path, mode="mount")
            ports[name] = InputPortBinding(name, bind_object=ref, bind_mode="mount")
    return ports


def registered_output(data: Any, asset: Optional[str]) -> Any:
    """``r_step(register = )``: the output as a dataset that Azure ML registers (a new version) when the step ends."""
    if not asset:
        return data
    return data.as_dataset().register(name=asset, create_new_version=True)


def get_registered_dataset(workspace: Any, name: str, version: str) -> Any:
    from azureml.core import Dataset

    try:
        return Dataset.get_by_name(workspace, name=name, version=version or "latest")
    except Exception as exc:  # the SDK raises its own exception types for "not found"
        raise AmlrError(
            f"Data asset `{name}` version {version} could not be read from workspace `{workspace.name}` "
            f"({type(exc).__name__}: {str(exc)[:300]}). Check its name and version in Azure ML studio, or register "
            "it with register_data(path, name, backend = \"azureml\")."
        ) from None


def _lookup_datastore(get_datastore: Optional[Callable[[str], Any]], name: str, step: Step, input_name: str) -> Any:
    if get_datastore is None:
        raise InvalidSpec(f"Input `{input_name}` of step `{step.name}` names datastore `{name}`, which is not the "
                          "default datastore.", field=f"steps[{step.name}].inputs.{input_name}")
    return get_datastore(name)


def _runconfig(p: StepPlan, env: Any, compute: tuple[str, str]) -> Any:
    from azureml.core.runconfig import RunConfiguration

    config = RunConfiguration()
    config.environment = env
    config.target = compute[0]
    # Also set on the job, so the studio shows them; the contract sets them for R either way.
    config.environment_variables = dict(p.step.env)
    return config


def _command_step(p: StepPlan, env: Any, compute: tuple[str, str], inputs: list, outputs: list,
                  command: list[Any]) -> Any:
    """A CommandStep whose command is a list: words, and the SDK's binding objects as words of their own.

    No shell text: the command means the same whether the service keeps the
    words apart (and substitutes the bindings) or joins them and runs a shell
    (which expands ``$AZUREML_DATAREFERENCE_<port>``).
    """
    from azureml.pipeline.steps import CommandStep

    return CommandStep(name=p.step.name, command=command, runconfig=_runconfig(p, env, compute),
                       compute_target=compute, source_directory=p.snapshot.path, inputs=inputs or None,
                       outputs=outputs or None, allow_reuse=p.step.allow_reuse)


def _script_args(command: list[Any]) -> list[Any]:
    """The bootstrapper's arguments, for steps that name the script themselves."""
    assert command[1] == BOOTSTRAPPER_IN_SNAPSHOT
    return command[2:]


def _python_script_step(p: StepPlan, env: Any, compute: tuple[str, str], inputs: list, outputs: list,
                        command: list[Any]) -> Any:
    # PythonScriptStep runs the bootstrapper under AML's own Python wrapper
    # (run context and output collection set up before it starts) instead of a
    # shell: the better fit for images whose Python has azureml-core, where
    # log_metric() values then always reach run history.
    from azureml.pipeline.steps import PythonScriptStep

    return PythonScriptStep(
        script_name=BOOTSTRAPPER_IN_SNAPSHOT,
        name=p.step.name,
        arguments=_script_args(command),
        compute_target=compute, runconfig=_runconfig(p, env, compute), inputs=inputs or None,
        outputs=outputs or None, source_directory=p.snapshot.path, allow_reuse=p.step.allow_reuse,
    )


def _estimator_step(p: StepPlan, env: Any, compute: tuple[str, str], inputs: list, outputs: list,
                    command: list[Any]) -> Any:
    """The classic article's Estimator + EstimatorStep (custom image, registry details, user_managed)."""
    from azureml.pipeline.steps import EstimatorStep
    from azureml.train.estimator import Estimator  # seconds to import: only for estimator steps

    common = {"source_directory": p.snapshot.path, "compute_target": compute[0],
              "entry_script": BOOTSTRAPPER_IN_SNAPSHOT, "environment_variables": dict(p.step.env) or None}
    if p.environment.image is not None:
        estimator = Estimator(
            **common,
            custom_docker_image=env.docker.base_image,
            image_registry_details=env.docker.base_image_registry if p.environment.registry_address else None,
            user_managed=True,
        )
    else:
        estimator = Estimator(**common, environment_definition=env)
    return EstimatorStep(
        name=p.step.name, estimator=estimator,
        estimator_entry_script_arguments=_script_args(command),
        inputs=inputs or None, outputs=outputs or None, compute_target=compute, allow_reuse=p.step.allow_reuse,
    )
