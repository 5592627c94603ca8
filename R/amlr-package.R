#' amlr: run R scripts and R pipelines locally or on Azure Machine Learning
#'
#' Build a pipeline with [r_step()] and [r_pipeline()], run it with
#' [submit_r_pipeline()] (locally by default), and follow it with the `run_*()`
#' verbs. Inside a step, [step_input()], [step_output()] and [log_metric()]
#' work the same on every backend.
#'
#' @keywords internal
#' @importFrom utils tail
"_PACKAGE"
