# Every error amlr signals on purpose has class `amlr_error` plus one class per
# kind (`amlr_error_<kind>`), so callers can catch one kind without parsing text.
# The kinds are listed once, in `error_kinds()` below; the help page
# ?amlr_errors is made from it, and tests/testthat/test-errors.R checks it
# against the kinds R raises and the kinds Python defines (inst/python/amlr/errors.py).

#' Errors amlr signals
#'
#' Every error amlr signals on purpose is a condition of class `amlr_error`
#' and `amlr_error_<kind>`, so code can catch one kind of failure without
#' parsing messages, e.g.
#' `tryCatch(run_status("x"), amlr_error_run_not_found = function(e) NULL)`.
#' Errors raised in amlr's Python side keep their kind across the bridge, with
#' the Python traceback in `rlang::last_error()$python_traceback` when it
#' helps; the same failure has the same kind on every backend.
#'
#' @eval error_kinds_rd()
#' @examples
#' err <- tryCatch(r_step(42), amlr_error = function(e) e)
#' class(err)
#' conditionMessage(err)
#' @name amlr_errors
NULL

# kind, raised by, what it means, what to do.
error_kinds <- function() {
  rows <- list(
    c("error", "both", "An error amlr signals on purpose (the class every kind below also has).",
      "Read the message: it names the problem and the fix."),
    c("python", "Python", "An unexpected error in amlr's Python side: a bug in amlr.",
      "Report it with `rlang::last_error()$python_traceback`."),
    c("bridge", "R", "R could not talk to amlr's Python side (it did not start, crashed or answered nonsense).",
      "Run `amlr_doctor()`; `options(amlr.bridge = \"system2\")` uses the default bridge."),
    c("no_python", "R", "No Python interpreter (3.9 or newer) was found for amlr.",
      "Run `install_amlr_python()`, or set `options(amlr.python = )` or `AMLR_PYTHON`."),
    c("install_failed", "R", "Creating amlr's Python environment or installing into it failed.",
      "Read the log the message names; check the network and that `python3-venv` is installed."),
    c("backend_unavailable", "Python", "The backend's SDK is not installed in amlr's Python.",
      "Run `install_amlr_python(backends = ...)` for that backend."),
    c("unsupported", "Python",
      "Something the chosen backend cannot do (e.g. a sweep on the classic `azureml` backend).",
      "Use the backend the message names, usually `\"azureml_v2\"`."),
    c("missing_package", "R", "An R package that this feature needs is not installed.",
      "Install the package the message names."),
    c("bad_request", "both", "A function argument that is missing or of the wrong type.",
      "Fix the argument the message names."),
    c("bad_option", "both", "An option of `submit_r_pipeline()` (its `...`) the backend does not know, or a bad value.",
      "Check the option's name and value against `?submit_r_pipeline`."),
    c("invalid_spec", "both", "A step or pipeline that no backend can run; `field` names the culprit.",
      "Fix the `r_step()`/`r_pipeline()` argument the message names."),
    c("argument_too_long", "Python", "A step argument or environment value too long for a command line.",
      "Pass the value in a file (`files =` of `r_step()`) instead."),
    c("no_script", "R", "There is no script to submit (an unsaved or empty editor, or no file).",
      "Save the script to a file, or pass its path."),
    c("not_in_step", "R", "`step_input()`/`step_output()` asked for a port the step does not have.",
      "Add the name to `inputs`/`outputs` of its `r_step()`, or call it only inside a step."),
    c("run_failed", "R", "A run waited on with `submit_r_pipeline(wait = TRUE)` or `run_wait()` did not complete.",
      "Read `run_logs()` of the failed step; the condition carries the run as `$run`."),
    c("run_not_found", "Python", "No run with that id or name in the registry of `AMLR_HOME`.",
      "List the runs with `run_list()`; check `AMLR_HOME`."),
    c("step_not_found", "Python", "The run has no step of that name.",
      "See the run's steps with `run_steps()`."),
    c("run_not_active", "Python", "The run has ended, so it cannot be cancelled or followed.",
      "Nothing to do; `run_status()` shows its final status."),
    c("step_not_completed", "Python", "The outputs of a step that did not complete (running, failed, or unseen).",
      "Wait with `run_wait()`, or rerun the failed step."),
    c("step_not_finished", "Python", "Downloading the outputs or logs of an Azure ML v2 step that is still running.",
      "Wait for the step to end (`run_wait()`), then download."),
    c("output_not_found", "both", "The step has no output of that name, or its folder is gone.",
      "See the step's outputs with `run_steps()`; download them with `run_download()`."),
    c("run_folder_missing", "Python", "A local run's folder (logs, outputs, snapshot) is gone.",
      "Rerun it: the files of that run cannot be recovered."),
    c("home_unusable", "Python", "`AMLR_HOME` cannot hold the registry and the run folders (a file, not writable).",
      "Set `AMLR_HOME` to a folder you can write to."),
    c("registry_damaged", "Python", "`registry.sqlite` in `AMLR_HOME` is damaged or not a registry.",
      "Run `run_registry_rebuild()`: it rebuilds the registry from the run folders."),
    c("file_exists", "Python", "A file to be written exists already.",
      "Choose another path, or allow overwriting where the function offers it."),
    c("destination_unusable", "Python", "A folder or file to write into cannot be written.",
      "Choose a path you can write to."),
    c("source_unreadable", "Python", "A file of a step's source folder (or of an asset) cannot be read.",
      "Fix its permissions, or exclude it with an `.amlrignore` rule."),
    c("script_excluded", "Python", "A step's script is excluded from its snapshot by the ignore rules.",
      "Change `.amlrignore`/`.gitignore` so the script is included."),
    c("snapshot_too_large", "Python", "A step's source folder is larger than the snapshot limit.",
      "Exclude data with `.amlrignore`, pass data as inputs, or raise `AMLR_SNAPSHOT_MAX_MB`."),
    c("snapshot_reserved_name", "Python", "The source folder has an `_amlr` entry, where amlr puts its own files.",
      "Rename or exclude it."),
    c("snapshot_source_missing", "Python", "The source folder of a step does not exist.",
      "Check `source_dir` of the `r_step()`."),
    c("snapshot_limit_invalid", "Python", "`AMLR_SNAPSHOT_MAX_MB` or `AMLR_SNAPSHOT_WARN_MB` is not a positive number.",
      "Set it to a positive number of megabytes, or unset it."),
    c("snapshot_destination_not_empty", "Python", "A snapshot would be written into a folder that has files.",
      "Choose an empty or new folder."),
    c("workspace_config", "both", "No usable Azure ML workspace: `config.json` missing or incomplete.",
      "Download `config.json` from the Azure ML studio, or use `aml_workspace()`."),
    c("credentials", "both", "Azure credentials missing or incomplete.",
      "Set all the service principal variables, or none and sign in with `az login`."),
    c("azure_request", "Python", "A call to Azure ML failed (network, permission, a job it rejected), either backend.",
      "Read Azure ML's reason in the message; check the network, your role and the compute name."),
    c("invalid_environment", "both", "An `r_environment()` no backend can use; `field` names the culprit.",
      "Fix the argument the message names."),
    c("build_context", "Python", "A Docker build context cannot be assembled (a missing file, no amlr sources).",
      "Check the Dockerfile's `COPY` sources and the files the message names."),
    c("invalid_asset_name", "both", "A data asset or model name or version Azure ML would not accept.",
      "Use letters, digits, `-`, `_` and `.`."),
    c("asset_not_found", "Python", "No data asset or model of that name (and version).",
      "List them with `list_data()` / `list_models()`."),
    c("asset_version_exists", "Python", "That asset version is registered already, with other content.",
      "Register a new version, or leave `version` unset for the next number."),
    c("store_damaged", "Python", "The local asset store (`assets.sqlite`) is damaged.",
      "Run `rebuild_store()`."),
    c("endpoint", "Python", "An endpoint record is damaged, or an endpoint operation failed.",
      "Delete the endpoint with `endpoint_delete()` and deploy again."),
    c("endpoint_name", "both", "An endpoint name Azure ML would not accept.",
      "Use 3 to 32 letters, digits and `-`, starting with a letter."),
    c("endpoint_not_found", "Python", "No endpoint of that name.", "List them with `endpoint_list()`."),
    c("endpoint_exists", "Python", "An endpoint of that name exists already.",
      "Choose another name, or delete the old one with `endpoint_delete()`."),
    c("endpoint_failed", "Python", "The endpoint's server did not come up (init() failed, R could not start).",
      "Read `endpoint_logs()`; fix the score file and deploy again."),
    c("endpoint_down", "Python", "A recorded endpoint whose server is gone or does not answer.",
      "Deploy it again, or delete it with `endpoint_delete()`."),
    c("endpoint_timeout", "both", "A scoring request took longer than its timeout.",
      "Raise `timeout`, or make `score()` faster."),
    c("port_in_use", "Python", "The port for a local endpoint is taken by another server.",
      "Choose another `port`, or stop the other server."),
    c("model_not_found", "both", "The model to deploy is not registered (or its folder is gone).",
      "Register it with `register_model()`; list them with `list_models()`."),
    c("score_file", "both", "A score file that does not define `init(model_dir)` and `score(model, data)`.",
      "Fix the score file as the message says."),
    c("bad_input", "both", "Data the endpoint rejected (HTTP 400): not what `score()` expects.",
      "Send data in the shape `score()` reads."),
    c("score_failed", "both", "`score()` raised an error on the server (HTTP 500).",
      "Read `endpoint_logs()`; fix `score()` and deploy again.")
  )
  out <- as.data.frame(do.call(rbind, rows), stringsAsFactors = FALSE)
  names(out) <- c("kind", "raised_by", "meaning", "fix")
  out
}

# The \describe{} list of ?amlr_errors (roxygen's @eval).
error_kinds_rd <- function() {
  k <- error_kinds()
  items <- sprintf("\\item{\\code{amlr_error_%s}}{%s What to do: %s (Raised by %s.)}", k$kind,
                   rd_text(k$meaning), rd_text(k$fix), k$raised_by)
  c("@section Kinds:", "\"Raised by\" says which side raises the kind: R (checks made before anything",
    "is sent to Python), Python, or both.", "\\describe{", items, "}")
}

rd_text <- function(x) {
  x <- gsub("\\", "\\\\", x, fixed = TRUE)
  x <- gsub("%", "\\%", x, fixed = TRUE)
  gsub("`([^`]*)`", "\\\\code{\\1}", x)
}

amlr_abort <- function(message, kind = "error", ..., class = NULL, call = rlang::caller_env(),
                       .envir = parent.frame()) {
  classes <- unique(c(class, paste0("amlr_error_", kind), "amlr_error"))
  cli::cli_abort(message, class = classes, ..., call = call, .envir = .envir)
}

# Errors that come back over the bridge: the message was written in Python, so
# it is passed through verbatim (no cli interpolation of braces in paths).
bridge_abort <- function(error, call = NULL) {
  kind <- error$class %||% "error"
  msg <- error$message %||% "Unknown error from amlr's Python side."
  if (!is.null(error$field) && !grepl(error$field, msg, fixed = TRUE)) {
    msg <- paste0(msg, " (field `", error$field, "`)")
  }
  rlang::abort(
    msg,
    class = unique(c(paste0("amlr_error_", kind), "amlr_error")),
    field = error$field,
    data = error$data,
    python_traceback = error$traceback,
    call = call
  )
}

`%||%` <- function(x, y) if (is.null(x)) y else x

# Text from elsewhere (log lines, paths) inside a cli message must not be interpolated.
cli_escape <- function(x) gsub("}", "}}", gsub("{", "{{", x, fixed = TRUE), fixed = TRUE)
