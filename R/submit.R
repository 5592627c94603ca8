#' Run an R script or an R pipeline, locally or on Azure ML
#'
#' Packages each step's `source_dir` with amlr's bootstrapper and runs the
#' steps in dependency order. The local backend (the default) needs no cloud:
#' each step is a process on this machine, the run is recorded in a SQLite
#' registry under `AMLR_HOME` (default `tools::R_user_dir("amlr", "data")`).
#'
#' With `wait = TRUE` the step logs stream to the console until the run ends;
#' a run that ends `Failed` then signals an `amlr_run_failed` error (which
#' carries the run in `$run`). Pressing Esc / Ctrl+C while waiting detaches
#' without cancelling; [run_wait()] reattaches.
#'
#' @param pipeline A path to an R script, an [r_step()] or an [r_pipeline()].
#'   With no argument: the active RStudio document, or the file `Rscript` is
#'   running.
#' @param experiment Experiment name to file the run under; defaults to the
#'   pipeline's name.
#' @param backend `"local"` (default), `"azureml"` (classic SDK) or
#'   `"azureml_v2"` (azure-ai-ml pipeline job).
#' @param workspace An [aml_workspace()] for the Azure ML backends.
#' @param wait Follow the run until it ends.
#' @param ... Backend options, checked by name and type before anything is
#'   recorded (a misspelt or unknown option, or a bad value, is an
#'   `amlr_error_bad_option` that names the closest known option):
#'   `regenerate_outputs = TRUE` runs every step, reusing nothing (every
#'   backend); `quiet` (do not stream logs); local: `max_parallel` (steps at
#'   once, default the number of cores); `"azureml"`: `compute`, `datastore`,
#'   `publish`, `publish_name`, `continue_on_step_failure`; `"azureml_v2"`:
#'   `compute`.
#'
#'   A script that submits itself (`submit_r_pipeline()` with no `pipeline`)
#'   does its work once, in the step: run with `Rscript`, the outer process
#'   ends when the run does (status 1 if it failed); run with `source()` or
#'   RStudio's Source button, the sourcing stops after the submit line. Run line
#'   by line in a console, the following lines are yours to run or not.
#' @return An `amlr_run` (invisibly when `wait = TRUE`).
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("job"); dir.create(dir); script <- file.path(dir, "job.R")
#' writeLines('cat("Hello from", R.version.string, "\\n")', script)
#' run <- submit_r_pipeline(script)
#' run
#' run_logs(run)
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
submit_r_pipeline <- function(pipeline = NULL, experiment = NULL, backend = c("local", "azureml", "azureml_v2"),
                              workspace = NULL, wait = TRUE, ...) {
  backend <- check_choice(backend, c("local", "azureml", "azureml_v2"), "backend")
  check_flag(wait, "wait")
  check_optional_string(experiment, "experiment")
  check_workspace_arg(workspace)
  options <- list(...)
  check_submit_options(options)
  quiet <- isTRUE(options$quiet)
  options$quiet <- NULL
  self <- NULL
  if (is.null(pipeline)) {
    # A script that submits itself runs that same line again inside its step:
    # there it must fall through, so the rest of the script does the work.
    if (in_step()) {
      cli::cli_inform(c(i = "Already running as step {.val {Sys.getenv('AMLR_STEP_NAME')}}
                             of run {.val {Sys.getenv('AMLR_RUN_ID')}}: not submitting again."))
      return(invisible(NULL))
    }
    self <- current_script_origin()
    pipeline <- self$path
  }
  pipeline <- as_pipeline(pipeline)
  if (backend == "azureml") classic_sdk_notice()
  if (backend != "local" && is.null(workspace)) workspace <- aml_workspace_default(backend)
  if (!is.null(workspace)) options$workspace <- workspace_spec(workspace)
  params <- list(spec = pipeline_spec(pipeline), backend = backend, experiment = experiment, options = options)
  announce <- function(run, warnings = NULL) {
    for (w in warnings) cli::cli_warn(cli_escape(w))
    if (!quiet) {
      cli::cli_alert_info("Submitted run {.val {run$id}} ({run$backend}) of {.val {run$pipeline}}.")
      if (!is.null(run$portal_url)) cli::cli_alert_info("Follow it on Azure ML: {.url {run$portal_url}}")
    }
  }
  if (!isTRUE(wait)) {
    res <- amlr_call("submit", params)
    run <- new_amlr_run(res)
    announce(run, unlist(res$warnings))
    if (!is.null(self)) end_self_submitted(self, run)
    return(run)
  }
  # One stream submits and follows: no extra round trip, logs as they come.
  params$wait <- TRUE
  run <- follow_run("submit", params, quiet = quiet,
                    on_submitted = function(run) announce(run, unlist(attr(run, "warnings"))))
  if (!is.null(self)) end_self_submitted(self, run)
  if (identical(run$status, "Failed")) signal_run_failed(run)
  invisible(run)
}

# A script that submitted itself has done its work in the step: the rest of it
# must not run again here. From Rscript the process ends (status 1 when the run
# failed); from source() (RStudio's Source button too) the sourcing stops.
# Run line by line in a console, the lines after this one are the user's to run.
end_self_submitted <- function(self, run) {
  if (identical(self$how, "rstudio")) return(invisible(NULL))
  cli::cli_inform(c(i = "The rest of {.path {basename(self$path)}} ran in the step; not running it again here.",
                    " " = "The run: {.code run_status(\"{run$id}\")}."))
  if (interactive()) invokeRestart("abort")
  failed <- identical(run$status, "Failed")
  if (failed) try(signal_run_failed(run), silent = FALSE)
  quit(save = "no", status = if (failed) 1L else 0L)
}

# The classic SDK (azureml-core, azureml-pipeline-*) reached its end of
# support on 2026-06-30: say so once per session, and name the supported path.
classic_sdk_notice <- function() {
  if (isTRUE(bridge_env$classic_notice_shown) || isFALSE(getOption("amlr.classic_notice", TRUE))) return(invisible())
  bridge_env$classic_notice_shown <- TRUE
  cli::cli_inform(c(
    "!" = "The classic Azure ML SDK ({.code backend = \"azureml\"}) reached its end of support on 2026-06-30.",
    i = "It keeps working here, but {.code backend = \"azureml_v2\"} is the supported path;
         the same pipeline runs there unchanged.",
    i = "Silence this with {.code options(amlr.classic_notice = FALSE)}."
  ), class = "amlr_classic_notice")
}

# Defaults that backends refine; overridden by the workspace code when present.
aml_workspace_default <- function(backend) {
  aml_workspace()
}

workspace_spec <- function(workspace) {
  if (inherits(workspace, "amlr_workspace")) return(unclass(workspace)[setdiff(names(workspace), "secret")])
  workspace
}

signal_run_failed <- function(run, call = rlang::caller_env()) {
  steps <- run_steps(run)
  failed <- steps[steps$status == "Failed", , drop = FALSE]
  bullets <- c("Run {.val {run$id}} failed.")
  tail_lines <- character()
  if (nrow(failed)) {
    step <- failed$step[1]
    code <- failed$exit_code[1]
    bullets <- c(bullets, x = "Step {.val {step}} exited with code {code}.")
    tail_lines <- utils::tail(run_logs(run, step = step), 10)
  } else if (!is.null(run$error)) {
    bullets <- c(bullets, x = cli_escape(run$error))
  }
  if (length(tail_lines)) {
    bullets <- c(bullets, i = "Last lines of its log:",
                 stats::setNames(cli_escape(as.character(tail_lines)), rep(" ", length(tail_lines))))
  }
  bullets <- c(bullets, i = "The run stays in the registry: {.code run_logs(\"{run$id}\")}.")
  amlr_abort(bullets, "run_failed", run = run, class = "amlr_run_failed", call = call)
}

# The script to submit when none is given, and how it is being run: the file
# being source()d (RStudio's Source button too), else the active RStudio
# document, else the file that Rscript is running.
current_script_origin <- function(call = rlang::caller_env()) {
  sourced <- sourced_file()
  if (!is.null(sourced)) return(list(path = sourced, how = "source"))
  doc <- rstudio_document()
  file <- rscript_file()
  path <- current_script(doc = doc, file = file, call = call)
  list(path = path, how = if (is.null(doc)) "rscript" else "rstudio")
}

# The innermost file being source()d, if any.
sourced_file <- function(frames = sys.nframe()) {
  for (i in rev(seq_len(frames))) {
    fun <- tryCatch(as.character(sys.call(i)[[1]]), error = function(e) "")
    if (!length(fun) || !utils::tail(fun, 1) %in% c("source", "debugSource", "sys.source")) next
    env <- sys.frame(i)
    file <- get0("ofile", envir = env, inherits = FALSE) %||% get0("file", envir = env, inherits = FALSE)
    if (is.character(file) && length(file) == 1L && file.exists(file)) return(normalizePath(file, winslash = "/"))
  }
  NULL
}

#' The script to submit when none is given
#'
#' The active RStudio document when RStudio is running, else the file that
#' `Rscript` is running.
#' @noRd
current_script <- function(doc = rstudio_document(), file = rscript_file(), call = rlang::caller_env()) {
  if (!is.null(doc)) {
    if (!nzchar(doc$path)) {
      amlr_abort(c("The active RStudio document has never been saved.",
                   i = "Save it to a file first, then submit again."), "no_script", call = call)
    }
    if (isTRUE(doc$modified)) {
      cli::cli_warn(c("{.path {doc$path}} has unsaved changes; the saved version is submitted.",
                      i = "Save it first (Ctrl+S) to include them."))
    }
    return(doc$path)
  }
  if (!is.null(file)) return(file)
  amlr_abort(c("There is no current script to submit.",
               i = "Pass a path: {.code submit_r_pipeline(\"analysis.R\")}, or an {.fn r_pipeline}."),
             "no_script", call = call)
}

# The file given to `Rscript file.R` (`--file=` on R's command line).
rscript_file <- function(args = commandArgs(trailingOnly = FALSE)) {
  file <- grep("^--file=", args, value = TRUE)
  if (!length(file)) return(NULL)
  path <- sub("^--file=", "", file[1])
  path <- gsub("~+~", " ", path, fixed = TRUE)
  if (!file.exists(path)) return(NULL)
  normalizePath(path, winslash = "/")
}

# The active RStudio source document, or NULL outside RStudio. Kept apart so
# tests can fake the RStudio API at this boundary.
rstudio_document <- function(api = rstudio_api()) {
  if (is.null(api)) return(NULL)
  ctx <- api$getSourceEditorContext()
  if (is.null(ctx)) return(NULL)
  path <- ctx$path %||% ""
  modified <- FALSE
  if (nzchar(path) && file.exists(path)) {
    saved <- readLines(path, warn = FALSE, encoding = "UTF-8")
    strip <- function(x) sub("\n$", "", paste(x, collapse = "\n"))
    modified <- !identical(strip(saved), strip(ctx$contents))
  }
  list(path = if (nzchar(path)) normalizePath(path, winslash = "/", mustWork = FALSE) else "", id = ctx$id,
       modified = modified)
}

rstudio_api <- function() {
  fake <- getOption("amlr.rstudioapi")
  if (!is.null(fake)) return(fake)
  if (!requireNamespace("rstudioapi", quietly = TRUE) || !rstudioapi::isAvailable()) return(NULL)
  list(
    getSourceEditorContext = rstudioapi::getSourceEditorContext,
    documentSave = rstudioapi::documentSave,
    showQuestion = rstudioapi::showQuestion
  )
}
