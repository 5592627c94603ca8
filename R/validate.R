# Argument checks for the R API: each failure is a classed `amlr_error_bad_request`
# naming the argument, what it got and what to give, raised before any call
# reaches Python, so nothing is recorded.

describe_value <- function(x) {
  if (is.null(x)) return("NULL")
  if (length(x) != 1L) return(paste0("a ", class(x)[1], " of length ", length(x)))
  if (is.na(x)) return("NA")
  if (is.character(x)) return(paste0("the string \"", x, "\""))
  paste0(class(x)[1], " ", format(x))
}

check_flag <- function(x, arg, call = rlang::caller_env()) {
  if (!is.logical(x) || length(x) != 1L || is.na(x)) {
    amlr_abort(c("{.arg {arg}} must be {.code TRUE} or {.code FALSE}.", x = "Got {describe_value(x)}."),
               "bad_request", call = call)
  }
  invisible(x)
}

check_choice <- function(x, choices, arg, call = rlang::caller_env()) {
  if (identical(x, choices)) return(choices[[1]])
  if (!is.character(x) || length(x) != 1L || is.na(x) || !x %in% choices) {
    amlr_abort(c("{.arg {arg}} must be one of {.val {choices}}.", x = "Got {describe_value(x)}."),
               "bad_request", call = call)
  }
  x
}

check_optional_string <- function(x, arg, call = rlang::caller_env()) {
  if (is.null(x)) return(invisible(x))
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    amlr_abort(c("{.arg {arg}} must be a single non-empty string or {.code NULL}.", x = "Got {describe_value(x)}."),
               "bad_request", call = call)
  }
  invisible(x)
}

# A whole number >= `min`; `Inf` allowed when `inf` is TRUE.
check_count <- function(x, arg, min = 0, inf = FALSE, call = rlang::caller_env()) {
  ok <- is.numeric(x) && length(x) == 1L && !is.na(x) && x >= min &&
    (is.finite(x) && x == round(x) || (inf && is.infinite(x) && x > 0))
  if (!ok) {
    amlr_abort(c("{.arg {arg}} must be a whole number, {min} or more{if (inf) ' (or Inf)' else ''}.",
                 x = "Got {describe_value(x)}."), "bad_request", call = call)
  }
  invisible(x)
}

check_seconds <- function(x, arg, call = rlang::caller_env()) {
  if (!is.numeric(x) || length(x) != 1L || is.na(x) || x < 0) {
    amlr_abort(c("{.arg {arg}} must be a number of seconds, 0 or more (or Inf).", x = "Got {describe_value(x)}."),
               "bad_request", call = call)
  }
  invisible(x)
}

# The `...` of submit_r_pipeline(): named, known options checked here that R can check.
check_submit_options <- function(options, call = rlang::caller_env()) {
  nms <- names(options) %||% rep("", length(options))
  if (length(options) && any(!nzchar(nms))) {
    amlr_abort(c("Every backend option in {.arg ...} needs a name, e.g. {.code max_parallel = 2}.",
                 x = "Got an unnamed value in position {which(!nzchar(nms))[1]}."), "bad_option", call = call)
  }
  if (anyDuplicated(nms)) {
    amlr_abort("Backend option {.arg {nms[anyDuplicated(nms)]}} is given twice.", "bad_option", call = call)
  }
  if (!is.null(options$max_parallel)) {
    tryCatch(check_count(options$max_parallel, "max_parallel", min = 1, call = call),
             amlr_error_bad_request = function(e) {
               amlr_abort(c("Option {.arg max_parallel} must be a whole number of steps at once, 1 or more.",
                            x = "Got {describe_value(options$max_parallel)}."), "bad_option", call = call)
             })
  }
  if (!is.null(options$quiet)) check_flag(options$quiet, "quiet", call = call)
  invisible(options)
}

check_string_arg <- function(x, arg, call = rlang::caller_env()) {
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    amlr_abort(c("{.arg {arg}} must be a single non-empty string.", x = "Got {describe_value(x)}."),
               "bad_request", call = call)
  }
  invisible(x)
}

check_environment_arg <- function(x, arg = "environment", call = rlang::caller_env()) {
  if (!is.null(x) && !is.list(x)) {
    amlr_abort(c("{.arg {arg}} must come from {.fn r_environment}, or be {.code NULL}.",
                 x = "Got {describe_value(x)}.",
                 i = "E.g. {.code r_environment(image = \"rocker/r-ver:4.4.1\")}."), "invalid_environment", call = call)
  }
  invisible(x)
}

check_workspace_arg <- function(x, call = rlang::caller_env()) {
  if (!is.null(x) && !is.list(x)) {
    amlr_abort(c("{.arg workspace} must come from {.fn aml_workspace}, or be {.code NULL}.",
                 x = "Got {describe_value(x)}."), "bad_request", call = call)
  }
  invisible(x)
}
