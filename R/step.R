#' Inputs, outputs and metrics inside a step
#'
#' These read the environment variables that amlr's bootstrapper sets, so
#' they behave the same on every backend. A script that should not depend on
#' amlr can read `Sys.getenv("AMLR_INPUT_<name>")` and
#' `Sys.getenv("AMLR_OUTPUT_<name>")` itself.
#'
#' `step_input()` returns the path of an input (a file or a folder).
#' `step_output()` returns the folder to write an output into (created).
#' `log_metric()` records a value for the run: numbers or strings; calling it
#' again with the same name makes a series. Outside a step it only says that
#' nothing is recorded.
#'
#' @param name Name of the input, output or metric.
#' @param value A single number or string.
#' @return `step_input()`, `step_output()`: a path. `log_metric()`: `value`,
#'   invisibly.
#' @name step_helpers
#' @examples
#' # Inside a step these return the paths amlr set up; outside one:
#' try(step_input("data"))
#' log_metric("rmse", 0.25)
NULL

#' @rdname step_helpers
#' @export
step_input <- function(name) {
  check_string(name, "name", "bad_request")
  path <- Sys.getenv(paste0("AMLR_INPUT_", name), "")
  if (!nzchar(path)) {
    known <- step_env_names("AMLR_INPUT_")
    amlr_abort(c(
      "No input {.val {name}} in this step.",
      if (!in_step()) c(i = "This R session is not running as an amlr step;
                             inputs exist only inside {.fn submit_r_pipeline} runs.")
      else c(i = "The step's inputs: {.val {if (length(known)) known else 'none'}}.
                  Add {.val {name}} to {.arg inputs} of its {.fn r_step}.")
    ), "not_in_step")
  }
  path
}

#' @rdname step_helpers
#' @export
step_output <- function(name) {
  check_string(name, "name", "bad_request")
  path <- Sys.getenv(paste0("AMLR_OUTPUT_", name), "")
  if (!nzchar(path)) {
    known <- step_env_names("AMLR_OUTPUT_")
    amlr_abort(c(
      "No output {.val {name}} in this step.",
      if (!in_step()) c(i = "This R session is not running as an amlr step;
                             outputs exist only inside {.fn submit_r_pipeline} runs.")
      else c(i = "The step's outputs: {.val {if (length(known)) known else 'none'}}.
                  Add {.val {name}} to {.arg outputs} of its {.fn r_step}.")
    ), "not_in_step")
  }
  dir.create(path, recursive = TRUE, showWarnings = FALSE)
  path
}

#' @rdname step_helpers
#' @export
log_metric <- function(name, value) {
  check_string(name, "name", "bad_request")
  if (length(value) != 1L || !(is.numeric(value) || is.character(value) || is.logical(value))) {
    amlr_abort("{.arg value} must be a single number or string, not {.cls {class(value)}} of length {length(value)}.",
               "bad_request")
  }
  file <- Sys.getenv("AMLR_METRICS_FILE", "")
  if (!nzchar(file)) {
    cli::cli_inform(c(i = "Not in an amlr step: metric {.val {name}} = {format(value)} is not recorded."))
    return(invisible(value))
  }
  if (is.numeric(value) && !is.finite(value)) value <- format(value)
  line <- jsonlite::toJSON(
    list(name = name, value = if (is.logical(value)) as.character(value) else value,
         time = format(Sys.time(), "%Y-%m-%dT%H:%M:%OS3%z")),
    auto_unbox = TRUE, digits = NA
  )
  cat(line, "\n", file = file, sep = "", append = TRUE)
  invisible(value)
}

in_step <- function() nzchar(Sys.getenv("AMLR_IN_STEP", ""))

step_env_names <- function(prefix) {
  vars <- names(Sys.getenv())
  sub(prefix, "", vars[startsWith(vars, prefix)], fixed = TRUE)
}
