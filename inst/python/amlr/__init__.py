"""amlr: run R scripts and R pipelines locally or on Azure Machine Learning.

Importing this package is cheap on purpose: the Azure SDKs are imported only
by the backend that needs them.

Module map. Only ``__main__`` imports the bridge (``api``); the bridge calls the
features and the backends (which also use ``environment`` and ``workspace``);
everyone uses the run model below them::

    R  --JSON-->  __main__       python -m amlr: call / stream / runner
                    |
                  api            the bridge: method table (METHODS, LAZY_METHODS), run methods, streams
                    |
    features      assets         data assets and models (register, get, list, download)
                  endpoints/     serving a model: records, local (plumber servers), azure (online
                                 endpoints), bridge (the endpoint_* methods)
                  environment    job environments: image or Dockerfile, content hash, build context
                  export         export_pipeline(): Azure ML YAML / a shell script
                  workspace      which Azure ML workspace, and credentials
                  doctor         amlr_doctor()'s Python-side checks
                  prune          run_prune(): old runs and the content only they use
                  sweep          r_sweep() / r_map() locally: trials and items as steps, the best trial,
                                 gathering, run_trials()
                  sweepazure     r_sweep() / r_map() on Azure ML: a sweep node, a node per item, gather
                    |
    backends      backends/      Backend protocol + RunRecord, get_backend(), shared status/options
                  backends/local/       steps as local processes, in DAG order, with reuse: env (what a
                                        step inherits), plan (snapshots, fingerprints), launch (submit),
                                        runner (the run), steprun (one step: reuse, R, outputs), status
                                        (refresh, cancel), logfiles (logs, follow), outputs (download)
                  backends/azureml/     classic azureml-core pipelines: common, plan (plan, uploads),
                                        build (SDK objects, offline), launch (submit, publish), runs
                  backends/azureml_v2/  azure-ai-ml v2 pipeline jobs: common, plan (plan, SDK job),
                                        client (MLClient, errors), launch (submit), runs
                    |
    run model     spec           the pipeline spec and its one validator
                  sweepspec      r_sweep() / r_map() in a spec: fanout checked, trials sampled
                  stepcontract   what a step runs (script, args, env, ports), as a JSON file
                  stepcode       a step's code identity (the files it can read)
                  packaging      per-step snapshots, the same on every backend
                  snapshot       snapshot files: source_dir + bootstrapper
                  ignore         .amlrignore / .gitignore rules
                  limits         argument and environment size limits
                  registry       the run registry (SQLite, shared by sessions and runners)
                  runrecord      a local run's record outside the database: statuses, run.json, metrics
                  store          the local asset store (versioned, content-addressed)
                  sqlitedb       how the registry and the store index open SQLite and create their schema
                  procs          process spawn, identity and kill for runners and steps
                  errors         every error kind (AmlrError subclasses)

    in the job    bootstrapper   starts R for one step; stdlib only, copied into each snapshot's _amlr/
                  stepmetrics    its companion: log_metric() values to AML run history / MLflow
                  gather         an r_map()'s gather node on Azure ML: a folder per item; stdlib only
    tools         dockerlint     a Dockerfile check without Docker

tests/python/test_architecture.py checks that this map names every module and
that the feature modules do not import the bridge.
"""
__version__ = "0.1.0"
