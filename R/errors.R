# Every error amlr signals on purpose has class `amlr_error` plus one class per
# kind (`amlr_error_<kind>`), so callers can catch one kind without parsing text.
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
