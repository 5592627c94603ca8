#' Which Python interpreter amlr uses, and why
#'
#' amlr looks, in order, at `options(amlr.python)`, the `AMLR_PYTHON`
#' environment variable, the virtual environment that [install_amlr_python()]
#' made, and finally a `python3` on the `PATH` (enough for the local backend,
#' which needs only Python's standard library).
#'
#' @return An `amlr_python` object: a list with `path` (or `NA` when nothing
#'   was found), `source` (`"option"`, `"environment variable"`,
#'   `"default venv"`, `"PATH"` or `"none"`) and `tried` (every candidate and
#'   why it was rejected).
#' @export
#' @examples
#' amlr_python()
amlr_python <- function() {
  candidates <- list(
    list(source = "option", path = getOption("amlr.python")),
    list(source = "environment variable", path = Sys.getenv("AMLR_PYTHON", "")),
    list(source = "default venv", path = default_venv_python()),
    list(source = "PATH", path = unname(Sys.which(c("python3", "python"))[1]))
  )
  tried <- list()
  for (cand in candidates) {
    path <- cand$path
    if (is.null(path) || !nzchar(path)) next
    path <- path.expand(path)
    if (!file.exists(path)) {
      tried[[length(tried) + 1]] <- list(source = cand$source, path = path, problem = "does not exist")
      next
    }
    return(structure(list(path = normalizePath(path, mustWork = FALSE), source = cand$source, tried = tried),
                     class = "amlr_python"))
  }
  structure(list(path = NA_character_, source = "none", tried = tried), class = "amlr_python")
}

default_venv_dir <- function() {
  file.path(tools::R_user_dir("amlr", "data"), "python")
}

default_venv_python <- function(envdir = default_venv_dir()) {
  if (.Platform$OS.type == "windows") file.path(envdir, "Scripts", "python.exe") else file.path(envdir, "bin", "python")
}

#' @export
print.amlr_python <- function(x, ...) {
  if (is.na(x$path)) {
    cli::cli_alert_danger("No Python interpreter found for amlr.")
  } else {
    cli::cli_alert_success("Python: {.path {x$path}} (from {x$source})")
  }
  for (t in x$tried) cli::cli_alert_info("Skipped {t$source}: {.path {t$path}} {t$problem}")
  if (is.na(x$path)) {
    cli::cli_alert_info("Run {.run amlr::install_amlr_python()} or set {.envvar AMLR_PYTHON}.")
  }
  invisible(x)
}

amlr_python_or_abort <- function(call = rlang::caller_env()) {
  found <- amlr_python()
  if (is.na(found$path)) {
    amlr_abort(c(
      "amlr needs a Python interpreter (3.9 or newer) and found none.",
      i = "Run {.run amlr::install_amlr_python()} to make one, or point amlr at one with {.code options(amlr.python = \"/path/to/python\")} or the {.envvar AMLR_PYTHON} environment variable.",
      if (length(found$tried)) c(x = "Tried: {.path {vapply(found$tried, `[[`, '', 'path')}}")
    ), "no_python", call = call)
  }
  found$path
}
