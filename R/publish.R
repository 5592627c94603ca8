#' Publish an R pipeline on Azure ML, to run it later without R
#'
#' Builds the pipeline exactly as `submit_r_pipeline(backend = "azureml")`
#' does (snapshots, uploads, environments) and publishes it under a
#' `PipelineEndpoint` named `name`, without running it. Publishing the same
#' pipeline again piles up nothing: amlr stores a content hash of the pipeline
#' (scripts, arguments, inputs, environments, compute) as the published
#' pipeline's version and, when the endpoint already has that version, makes
#' it the default instead of publishing a copy. A changed pipeline is added to
#' the endpoint as its new default version.
#'
#' `submit_r_pipeline(..., backend = "azureml", publish = TRUE)` publishes
#' and runs in one go.
#'
#' @inheritParams submit_r_pipeline
#' @param name Name of the pipeline endpoint; defaults to the pipeline's name.
#' @param ... Options as for the `"azureml"` backend of [submit_r_pipeline()]:
#'   `compute` (default compute target), `datastore` (for uploaded inputs).
#' @return An `amlr_published` object: the endpoint's name, id and REST URL,
#'   the published pipeline's id and version, and whether an identical
#'   pipeline was reused.
#' @family azure
#' @export
#' @examples
#' \dontrun{
#' ws <- aml_workspace()
#' p <- r_pipeline(r_step("train.R", compute = "cpu-cluster"), name = "train")
#' publish_r_pipeline(p, workspace = ws)
#' }
publish_r_pipeline <- function(pipeline = NULL, name = NULL, workspace = NULL, ...) {
  options <- list(...)
  if (is.null(pipeline)) pipeline <- current_script()
  pipeline <- as_pipeline(pipeline)
  classic_sdk_notice()
  if (!is.null(name)) check_string(name, "name")
  if (is.null(workspace)) workspace <- aml_workspace()
  options$workspace <- workspace_spec(workspace)
  res <- amlr_call("publish", list(
    spec = export_spec(pipeline),
    backend = "azureml",
    name = name,
    options = options
  ))
  for (w in res$warnings %||% character()) cli::cli_warn(w)
  res$warnings <- NULL
  out <- structure(res, class = "amlr_published")
  if (isTRUE(out$reused)) {
    cli::cli_alert_info(paste("Endpoint {.val {out$endpoint}} already had this pipeline",
                              "(version {.val {out$version}}); it is the default now."))
  } else {
    cli::cli_alert_success("Published {.val {out$endpoint}} version {.val {out$version}}.")
  }
  out
}

#' @export
format.amlr_published <- function(x, ...) {
  field <- function(label, value) paste0("  ", format(label, width = 11), value %||% "-")
  c(
    paste0(cli::style_dim("<amlr_published> "), cli::style_bold(x$endpoint)),
    field("version:", x$version),
    field("pipeline:", x$pipeline_id),
    field("endpoint:", x$endpoint_id),
    field("rest url:", x$endpoint_url),
    field("reused:", if (isTRUE(x$reused)) "yes (identical pipeline already published)" else "no"),
    if (!is.null(x$portal_url)) field("portal:", x$portal_url)
  )
}

#' @export
print.amlr_published <- function(x, ...) {
  cat(format(x, ...), sep = "\n")
  invisible(x)
}
