#' amlr: run R scripts and R pipelines locally or on Azure Machine Learning
#'
#' Build a pipeline with [r_step()] and [r_pipeline()], run it with
#' [submit_r_pipeline()] (locally by default), and follow it with the `run_*()`
#' verbs. Inside a step, [step_input()], [step_output()] and [log_metric()]
#' work the same on every backend.
#'
#' @section Options:
#' \describe{
#'   \item{`amlr.bridge`}{How R reaches amlr's Python: `"system2"` (default, a
#'     Python process per call) or `"reticulate"` (Python embedded in the R session).}
#'   \item{`amlr.python`}{The Python to use (else `AMLR_PYTHON`, the venv of
#'     [install_amlr_python()], then `python3` on the `PATH`); see [amlr_python()].}
#'   \item{`amlr.processx`}{`FALSE` makes the system2 bridge read streams through
#'     `pipe()` instead of \pkg{processx}.}
#'   \item{`amlr.spare_runner`}{With the reticulate bridge, each local run takes a
#'     runner process that was started ahead of time and waits, warm, in the
#'     background (one per R session; it exits with the session), so a short run
#'     does not wait for a Python interpreter to start. `FALSE` starts a new
#'     runner per run instead.}
#'   \item{`amlr.classic_notice`}{`FALSE` silences the once-per-session notice that
#'     `backend = "azureml"` is past its end of support.}
#'   \item{`amlr.addin_backend`}{The backend the RStudio addins submit to.}
#' }
#'
#' @keywords internal
#' @importFrom utils tail
"_PACKAGE"
