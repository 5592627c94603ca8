#' Which Python interpreter amlr uses, and why
#'
#' amlr looks, in order, at `options(amlr.python)`, the `AMLR_PYTHON`
#' environment variable, the virtual environment that [install_amlr_python()]
#' made, and finally a `python3` on the `PATH` (enough for the local backend,
#' which needs only Python's standard library). A setting that points at
#' nothing runnable is skipped, and the printed result says so.
#'
#' The path is used as given, not with symbolic links resolved: a virtual
#' environment's `bin/python` is a link to the base interpreter, and only the
#' link makes Python find the environment's packages.
#'
#' @return An `amlr_python` object: a list with `path` (or `NA` when nothing
#'   was found), `source` (`"option"`, `"environment variable"`,
#'   `"default venv"`, `"PATH"` or `"none"`) and `tried` (every candidate
#'   before it that was set but rejected, and why).
#' @seealso [install_amlr_python()] to make the default virtual environment,
#'   [amlr_doctor()] to check the whole set-up.
#' @export
#' @examples
#' amlr_python()
amlr_python <- function() {
  find_python(python_candidates())
}

# Where amlr looks for its interpreter, in order of precedence. Each path is
# looked up only when the ones before it did not work: `Sys.which()` starts
# shells, which a named interpreter should not pay for on every call.
python_candidates <- function() {
  list(
    list(source = "option", path = function() getOption("amlr.python")),
    list(source = "environment variable", path = function() Sys.getenv("AMLR_PYTHON", "")),
    list(source = "default venv", path = function() default_venv_python()),
    list(source = "PATH", path = path_python)
  )
}

find_python <- function(candidates) {
  tried <- list()
  for (cand in candidates) {
    path <- if (is.function(cand$path)) cand$path() else cand$path
    if (is.null(path) || length(path) != 1L || is.na(path) || !nzchar(path)) next
    path <- absolute_path(path)
    problem <- interpreter_problem(path)
    if (!is.null(problem)) {
      tried[[length(tried) + 1L]] <- list(source = cand$source, path = path, problem = problem)
      next
    }
    return(new_amlr_python(path, cand$source, tried))
  }
  new_amlr_python(NA_character_, "none", tried)
}

new_amlr_python <- function(path, source, tried) {
  structure(list(path = path, source = source, tried = tried), class = "amlr_python")
}

# Why `path` cannot be an interpreter, or NULL when it can.
interpreter_problem <- function(path) {
  if (!file.exists(path)) return("does not exist")
  if (dir.exists(path)) return("is a folder, not an interpreter")
  if (.Platform$OS.type != "windows" && file.access(path, 1L) != 0L) return("is not executable")
  NULL
}

absolute_path <- function(path) {
  path <- path.expand(path)
  if (is_absolute_path(path)) path else file.path(getwd(), path)
}

path_python <- function() {
  found <- Sys.which(c("python3", "python"))
  found <- found[nzchar(found)]
  if (length(found)) unname(found[[1]]) else ""
}

default_venv_dir <- function() {
  file.path(tools::R_user_dir("amlr", "data"), "python")
}

default_venv_python <- function(envdir = default_venv_dir()) {
  if (.Platform$OS.type == "windows") file.path(envdir, "Scripts", "python.exe") else file.path(envdir, "bin", "python")
}

python_source_label <- function(source) {
  switch(source,
    option = "options(amlr.python)",
    `environment variable` = "the AMLR_PYTHON environment variable",
    `default venv` = "the virtual environment install_amlr_python() made",
    PATH = "python3 on the PATH",
    source
  )
}

#' @export
print.amlr_python <- function(x, ...) {
  if (is.na(x$path)) {
    cli::cli_alert_danger("No Python interpreter found for amlr.")
  } else {
    cli::cli_alert_success("amlr uses Python {.path {x$path}}")
    cli::cli_alert_info("Found via {python_source_label(x$source)}.")
  }
  for (t in x$tried) {
    cli::cli_alert_warning("Skipped {python_source_label(t$source)}: {.path {t$path}} {t$problem}.")
  }
  if (is.na(x$path)) {
    cli::cli_alert_info(paste(
      "Run {.run amlr::install_amlr_python()} to make a virtual environment,",
      "or point amlr at an interpreter with {.code options(amlr.python = \"/path/to/python\")}
       or {.envvar AMLR_PYTHON}."
    ))
  } else if (identical(x$source, "PATH")) {
    cli::cli_alert_info(c(
      "That is enough for the local backend. For the Azure ML backends run ",
      "{.run amlr::install_amlr_python()}."
    ))
  }
  invisible(x)
}

amlr_python_or_abort <- function(call = rlang::caller_env()) {
  # A Python named by options(amlr.python) or AMLR_PYTHON is looked up once a
  # session (again only when the setting changes or the file disappears).
  key <- paste(getOption("amlr.python", ""), Sys.getenv("AMLR_PYTHON", ""), sep = "\r")
  cached <- bridge_env$python
  if (!is.null(cached) && identical(cached$key, key) && file.exists(cached$path)) return(cached$path)
  found <- amlr_python()
  if (is.na(found$path)) {
    amlr_abort(c(
      "amlr needs a Python interpreter (3.9 or newer) and found none.",
      i = "Run {.run amlr::install_amlr_python()} to make one,
           or point amlr at one with {.code options(amlr.python = \"/path/to/python\")}
            or the {.envvar AMLR_PYTHON} environment variable.",
      if (length(found$tried)) c(x = "Tried: {.path {vapply(found$tried, `[[`, '', 'path')}}")
    ), "no_python", call = call)
  }
  # A Python the user named explicitly but that does not work must not be
  # replaced silently by another one.
  for (t in found$tried) {
    if (t$source %in% c("option", "environment variable")) {
      setting <- if (t$source == "option") "options(amlr.python)" else "AMLR_PYTHON"
      cli::cli_warn(
        c("{.code {setting}} names {.path {t$path}}, which {t$problem};
           using {.path {found$path}} ({found$source}) instead.",
          i = "Fix or unset {.code {setting}}; {.run amlr::amlr_python()} shows the choice."),
        .frequency = "regularly", .frequency_id = paste("amlr-python", t$path)
      )
    }
  }
  if (found$source %in% c("option", "environment variable")) bridge_env$python <- list(key = key, path = found$path)
  found$path
}

# -- Interpreter versions --------------------------------------------------------

min_python_version <- numeric_version("3.9")

#' The version of the Python at `path`, or NA when it does not run
#' @noRd
python_version <- function(path, timeout = 30) {
  out <- tryCatch(
    suppressWarnings(system2(path, c("-c", shQuote("import sys; print(sys.version.split()[0])")),
                             stdout = TRUE, stderr = FALSE, timeout = timeout)),
    error = function(e) character()
  )
  status <- attr(out, "status") %||% 0L
  if (!identical(as.integer(status), 0L)) return(NA_character_)
  version <- regmatches(out, regexpr("^[0-9]+\\.[0-9]+(\\.[0-9]+)?", out))
  if (length(version)) version[[1]] else NA_character_
}

python_version_ok <- function(version) {
  !is.na(version) && numeric_version(version) >= min_python_version
}

# -- install_amlr_python() ----------------------------------------------------------

#' Make a Python virtual environment for amlr
#'
#' Creates a plain virtual environment (`python -m venv`; no conda) and
#' installs the pinned Python packages that the chosen backends need. The
#' local backend needs only Python's standard library, so
#' `backends = "local"` installs nothing. Running it again is cheap: an
#' existing environment is reused (whatever `python` says; delete the folder
#' to rebuild it) and requirements already installed are skipped. pip's output
#' goes to `amlr-install.log` in `envdir`; a failure shows its last lines.
#'
#' amlr finds an environment at the default `envdir` by itself (see
#' [amlr_python()]); for another `envdir`, point `options(amlr.python)` or
#' `AMLR_PYTHON` at the interpreter this function returns.
#'
#' @param envdir Folder of the virtual environment.
#' @param backends Which backends to prepare: any of `"local"`, `"azureml"`
#'   (the classic SDK: azureml-core, azureml-pipeline-core/-steps) and
#'   `"azureml_v2"` (azure-ai-ml, azure-identity).
#' @param python The Python (3.9 or newer) to make the environment from;
#'   `NULL` looks for `python3` on the `PATH`.
#' @return The path of the environment's Python interpreter, invisibly.
#' @seealso [amlr_python()], [amlr_doctor()].
#' @export
#' @examplesIf nzchar(Sys.which("python3"))
#' # The local backend needs only the standard library: this is quick.
#' python <- install_amlr_python(file.path(tempdir(), "amlr-venv"), backends = "local")
#' python
#' \dontrun{
#' # Everything, into the default place (downloads the Azure ML SDKs):
#' install_amlr_python()
#' }
install_amlr_python <- function(envdir = default_venv_dir(), backends = c("local", "azureml", "azureml_v2"),
                                python = NULL) {
  backends <- check_backend_names(backends)
  check_string(envdir, "envdir", "bad_request")
  envdir <- absolute_path(envdir)
  venv_python <- ensure_venv(envdir, python)
  reqs <- requirements_pending(envdir, backend_requirements(backends))
  if (length(reqs)) {
    pip_install(venv_python, reqs, log = file.path(envdir, "amlr-install.log"))
    record_requirements(envdir, reqs)
  }
  cli::cli_alert_success("Python for amlr ({paste(backends, collapse = ', ')}): {.path {venv_python}}")
  if (!same_path(envdir, default_venv_dir())) {
    cli::cli_alert_info(c(
      "This is not the default place: tell amlr with ",
      "{.code options(amlr.python = \"{venv_python}\")} or {.envvar AMLR_PYTHON}."
    ))
  }
  invisible(venv_python)
}

check_backend_names <- function(backends, call = rlang::caller_env()) {
  known <- c("local", "azureml", "azureml_v2")
  if (!is.character(backends) || !length(backends) || anyNA(backends) || !all(backends %in% known)) {
    amlr_abort(c(
      "{.arg backends} must be one or more of {.val {known}}.",
      x = "Got {.val {as.character(backends)}}."
    ), "bad_request", call = call)
  }
  unique(backends)
}

# The pinned requirement files the backends need, named by backend; a backend
# with no file (local) needs nothing beyond the standard library.
backend_requirements <- function(backends, dir = amlr_python_path()) {
  files <- file.path(dir, paste0("requirements-", backends, ".txt"))
  names(files) <- backends
  files[file.exists(files)]
}

# Reuse a working environment; otherwise make one from a suitable base Python.
ensure_venv <- function(envdir, python = NULL, call = rlang::caller_env()) {
  venv_python <- default_venv_python(envdir)
  if (is.null(interpreter_problem(venv_python)) && python_version_ok(python_version(venv_python))) {
    cli::cli_alert_success("Using the virtual environment in {.path {envdir}}.")
    return(venv_python)
  }
  is_venv <- file.exists(file.path(envdir, "pyvenv.cfg"))
  if (dir.exists(envdir) && !is_venv && length(list.files(envdir, all.files = TRUE, no.. = TRUE))) {
    amlr_abort(c(
      "{.path {envdir}} exists and is not a Python virtual environment.",
      i = "Choose an empty or new folder for {.arg envdir}."
    ), "bad_request", call = call)
  }
  base <- find_base_python(python, call = call)
  cli::cli_progress_step("Creating a virtual environment with Python {base$version} in {.path {envdir}}")
  run_or_abort(base$path, venv_args(envdir, clear = is_venv),
               what = "Creating the virtual environment", log = tempfile("amlr-venv-", fileext = ".log"),
               hint = venv_hint(), call = call)
  cli::cli_progress_done()
  venv_python
}

venv_args <- function(envdir, clear = FALSE) {
  # --clear rebuilds a broken environment (e.g. its base Python was removed).
  c("-m", "venv", if (clear) "--clear", shQuote(envdir))
}

venv_hint <- function() {
  if (.Platform$OS.type == "windows") return(character())
  c(i = "On Debian and Ubuntu, {.code python3 -m venv} needs the {.pkg python3-venv} package:
         {.code sudo apt install python3-venv}.")
}

# The base interpreter: the one given, else the first recent enough Python on
# the PATH. Says what to install when there is none.
find_base_python <- function(python = NULL, call = rlang::caller_env()) {
  candidates <- if (!is.null(python)) {
    check_string(python, "python", "bad_request", call = call)
    absolute_path(python)
  } else {
    names <- c("python3", "python", paste0("python3.", 13:9))
    found <- unique(unname(Sys.which(names)))
    found[nzchar(found)]
  }
  seen <- character()
  for (path in candidates) {
    version <- if (is.null(interpreter_problem(path))) python_version(path) else NA_character_
    if (python_version_ok(version)) return(list(path = path, version = version))
    seen <- c(seen, paste0(path, " (", if (is.na(version)) "does not run" else paste("Python", version), ")"))
  }
  amlr_abort(c(
    "amlr needs Python 3.9 or newer to make its virtual environment, and found none.",
    if (length(seen)) c(x = "Not usable: {seen}"),
    i = "Install Python 3.9 or newer:",
    "*" = "Debian/Ubuntu: {.code sudo apt install python3 python3-venv}",
    "*" = "macOS: {.code brew install python@3.11} (or the installer from {.url https://www.python.org/downloads/})",
    "*" = "Windows: the installer from {.url https://www.python.org/downloads/}",
    i = "Then run {.run amlr::install_amlr_python()} again, or pass {.code python = \"/path/to/python3\"}."
  ), "no_python", call = call)
}

# -- Requirements bookkeeping: a stamp file lists what was installed, by hash,
# so a second call with the same pins does not run pip again.

requirements_stamp <- function(envdir) file.path(envdir, "amlr-requirements.txt")

requirement_hashes <- function(files) {
  unname(tools::md5sum(files))
}

requirements_pending <- function(envdir, files) {
  stamp <- requirements_stamp(envdir)
  done <- if (file.exists(stamp)) readLines(stamp, warn = FALSE) else character()
  files[!paste(names(files), requirement_hashes(files)) %in% done]
}

record_requirements <- function(envdir, files) {
  stamp <- requirements_stamp(envdir)
  done <- if (file.exists(stamp)) readLines(stamp, warn = FALSE) else character()
  writeLines(unique(c(done, paste(names(files), requirement_hashes(files)))), stamp)
  invisible(stamp)
}

pip_install_args <- function(files) {
  c("-m", "pip", "install", "--disable-pip-version-check", "--no-input",
    as.vector(rbind("-r", shQuote(unname(files)))))
}

pip_install <- function(venv_python, files, log, call = rlang::caller_env()) {
  cli::cli_progress_step(
    "Installing the Python packages for {.val {names(files)}} (a few minutes; log: {.path {log}})"
  )
  run_or_abort(venv_python, pip_install_args(files), what = "Installing the Python packages", log = log,
               hint = c(i = "Check the network connection and the proxy settings pip uses."), call = call)
  cli::cli_progress_done()
}

# Run a command with its output in `log`; on failure, show the end of the log.
run_or_abort <- function(command, args, what, log, hint = character(), call = rlang::caller_env()) {
  status <- suppressWarnings(system2(command, args, stdout = log, stderr = log))
  if (identical(as.integer(status), 0L)) return(invisible(log))
  tail_lines <- if (file.exists(log)) utils::tail(readLines(log, warn = FALSE), 15) else character()
  tail_lines <- cli_escape(tail_lines)
  amlr_abort(c(
    "{what} failed (exit status {status}).",
    x = "Command: {.code {paste(c(command, args), collapse = ' ')}}",
    if (length(tail_lines)) {
      c(i = "Last lines of {.path {log}}:", stats::setNames(tail_lines, rep(" ", length(tail_lines))))
    },
    hint
  ), "install_failed", call = call)
}

same_path <- function(a, b) {
  identical(normalizePath(a, winslash = "/", mustWork = FALSE), normalizePath(b, winslash = "/", mustWork = FALSE))
}
