#' RStudio addins: run or submit the current script
#'
#' Two entries in RStudio's *Addins* menu. `addin_run_local()` runs the active
#' script on this machine ([submit_r_pipeline()] with `backend = "local"`);
#' `addin_submit_azureml()` submits it to Azure ML with the backend in
#' `getOption("amlr.addin_backend", "azureml_v2")` (`"azureml"` for the
#' classic SDK) and the default [aml_workspace()]. Both stream the run's log
#' to the console (Esc detaches without cancelling; [run_wait()] reattaches).
#'
#' A script with unsaved changes is saved first if you agree; otherwise
#' nothing is submitted. An untitled script must be saved once by hand. Bind a
#' keyboard shortcut to them under *Tools > Modify Keyboard Shortcuts*.
#'
#' @return The `amlr_run`, invisibly; `NULL` when you declined to save.
#' @name addins
#' @examples
#' # Outside RStudio they say what to do instead:
#' try(addin_run_local())
#' \dontrun{
#' # In RStudio, with a script open (or from the Addins menu):
#' addin_run_local()
#' options(amlr.addin_backend = "azureml")
#' addin_submit_azureml()
#' }
NULL

#' @rdname addins
#' @export
addin_run_local <- function() {
  addin_submit("local")
}

#' @rdname addins
#' @export
addin_submit_azureml <- function() {
  backend <- getOption("amlr.addin_backend", "azureml_v2")
  if (!backend %in% c("azureml", "azureml_v2")) {
    amlr_abort(c("{.code options(amlr.addin_backend)} is {.val {backend}}.",
                 i = "Use {.val azureml} (classic SDK) or {.val azureml_v2}."), "bad_request")
  }
  addin_submit(backend)
}

# The addins' shared path: the active document, saved if needed, then submitted.
addin_submit <- function(backend, api = rstudio_api(), call = rlang::caller_env()) {
  if (is.null(api)) {
    amlr_abort(c("The amlr addins need RStudio.",
                 i = "Elsewhere, call {.code submit_r_pipeline(\"script.R\", backend = \"{backend}\")}."),
               "no_script", call = call)
  }
  doc <- rstudio_document(api)
  if (is.null(doc)) {
    amlr_abort(c("No R script is open in RStudio's editor.",
                 i = "Open the script to run, then use the addin again."), "no_script", call = call)
  }
  if (!nzchar(doc$path)) {
    amlr_abort(c("The active document has never been saved.",
                 i = "Save it to a file (Ctrl+S), then use the addin again."), "no_script", call = call)
  }
  if (isTRUE(doc$modified) && !save_document(api, doc, call = call)) {
    cli::cli_inform(c(i = "Not submitted: {.path {doc$path}} has unsaved changes."))
    return(invisible(NULL))
  }
  where <- if (backend == "local") "on this machine" else paste0("to Azure ML (", backend, ")")
  cli::cli_inform(c(">" = "Submitting {.path {doc$path}} {where}."))
  run <- submit_r_pipeline(doc$path, backend = backend, wait = TRUE)
  invisible(run)
}

# Ask, then save; FALSE when the user declines.
save_document <- function(api, doc, call = rlang::caller_env()) {
  agreed <- isTRUE(api$showQuestion(
    "Save before submitting?",
    paste0(basename(doc$path), " has unsaved changes. amlr submits the file on disk: save it first?"),
    "Save and submit", "Cancel"
  ))
  if (!agreed) return(FALSE)
  if (!isTRUE(api$documentSave(doc$id))) {
    amlr_abort(c("RStudio could not save {.path {doc$path}}.",
                 i = "Save it by hand, then use the addin again."), "no_script", call = call)
  }
  TRUE
}
