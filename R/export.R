#' Export a pipeline as an Azure ML v2 pipeline job
#'
#' Writes the pipeline as files that run without amlr. With `format =
#' "azureml_v2"` that is a v2 pipeline job YAML, which the Azure CLI submits
#' with `az ml job create --file <path>`: one `command` job per step, each
#' running amlr's bootstrapper on the step's script and arguments, the steps'
#' [output_of()] links as `${{parent.jobs.<step>.outputs.<name>}}`, each
#' step's compute (else the pipeline's, else Azure ML's serverless compute)
#' and its environment: a prebuilt `image`, or a Docker build context that
#' Azure ML builds.
#'
#' Next to `path` go the steps' packaged code, `<name>_snapshots/<hash>/` (the
#' same snapshot every backend runs), and the build contexts,
#' `<name>_environments/<version>/`. Paths in the YAML are relative to it, so
#' the file and its folders can move together. The same pipeline gives
#' byte-identical files, and no secret is written: a private registry's
#' password stays in its environment variable (Azure ML v2 pulls images with
#' the workspace's own access to the registry).
#'
#' With `format = "json"` the file is amlr's validated pipeline spec, its paths
#' relative to the file.
#'
#' @param pipeline A path to an R script, an [r_step()] or an [r_pipeline()].
#' @param path The file to write, e.g. `"pipeline.yml"`. Its folder must exist.
#' @param format `"azureml_v2"` (an Azure ML v2 pipeline job YAML) or
#'   `"json"` (amlr's pipeline spec).
#' @param overwrite Replace `path` and the folders an earlier export wrote next
#'   to it. Without it, an existing `path` is an error of class
#'   `amlr_error_file_exists` and nothing is written. Folders that amlr did not
#'   write are never replaced.
#' @return `path`, invisibly.
#' @seealso [submit_r_pipeline()] with `backend = "azureml_v2"` submits the same
#'   job from R.
#' @export
#' @examples
#' dir <- tempfile("amlr-export-")
#' dir.create(dir)
#' writeLines('cat("Hello from Azure ML\\n")', file.path(dir, "hello.R"))
#' path <- export_pipeline(file.path(dir, "hello.R"), file.path(dir, "hello.yml"))
#' cat(readLines(path), sep = "\n")
#' list.files(dir)
#'
#' # The pipeline spec as JSON instead
#' export_pipeline(file.path(dir, "hello.R"), file.path(dir, "hello.json"), format = "json")
export_pipeline <- function(pipeline, path, format = c("azureml_v2", "json"), overwrite = FALSE) {
  format <- check_choice(format, c("azureml_v2", "json"), "format")
  check_flag(overwrite, "overwrite")
  pipeline <- as_pipeline(pipeline)
  if (!is.character(path) || length(path) != 1L || is.na(path) || !nzchar(path)) {
    amlr_abort("{.arg path} must be the file to write, e.g. {.file pipeline.yml}.", "bad_request")
  }
  path <- normalizePath(path, winslash = "/", mustWork = FALSE)
  res <- amlr_call("export", list(
    spec = export_spec(pipeline),
    path = path,
    format = format,
    overwrite = isTRUE(overwrite)
  ))
  for (w in res$warnings %||% character()) cli::cli_warn(w)
  n <- length(pipeline$steps)
  if (identical(format, "azureml_v2")) {
    cli::cli_inform(c(
      v = "Wrote Azure ML v2 pipeline job {.file {res$path}} ({n} step{?s}) and the folders next to it.",
      i = "Run it on Azure ML with {.code az ml job create --file {res$path}}
           (add {.code --resource-group} and {.code --workspace-name})."
    ))
  } else {
    cli::cli_inform(c(v = "Wrote the pipeline spec of {.val {pipeline$name}} ({n} step{?s}) to {.file {res$path}}."))
  }
  invisible(res$path)
}

# The spec to export: environments that ask for cran_packages = "auto" get
# the packages their steps' scripts use, found now.
export_spec <- function(pipeline) {
  spec <- pipeline_spec(pipeline)
  spec$environment <- resolve_environment_spec(pipeline$environment, pipeline)
  for (i in seq_along(pipeline$steps)) {
    step <- pipeline$steps[[i]]
    spec$steps[[i]]$environment <- resolve_environment_spec(step$environment, step)
  }
  spec
}
