#' Check amlr's set-up
#'
#' Runs every check amlr depends on and prints one line per check, with what
#' to do for each one that fails: R and amlr versions, the Python interpreter
#' (which one, found how, its version), the bridge (and that it answers), each
#' backend's Python SDK (installed, and which version), `Rscript`, a writable
#' `AMLR_HOME`, an Azure ML workspace `config.json`, and credentials in the
#' environment (their names only; values are never read out).
#'
#' Nothing is installed or changed. The Azure SDKs are looked up, not
#' imported, so the doctor takes about a second. When no Python is found,
#' the checks that need it are reported as skipped and the Python line says
#' what to run.
#'
#' @return A data frame, invisibly, one row per check: `check`, `ok` (`TRUE`,
#'   `FALSE`, or `NA` when the check was skipped or is not needed), `detail`
#'   and `fix` (what to do; `""` when nothing).
#' @seealso [amlr_python()], [install_amlr_python()].
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' amlr_doctor()
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
amlr_doctor <- function() {
  checks <- doctor_checks()
  print_doctor(checks)
  invisible(checks)
}

doctor_checks <- function() {
  python <- amlr_python()
  python_row <- check_python(python)
  bridge <- check_bridge(python_ok = isTRUE(python_row$ok))
  rows <- c(
    list(check_r(), check_amlr(), python_row, bridge$row),
    check_backend_sdks(bridge$doctor, skip_reason = bridge$skip_reason, python = python),
    list(check_rscript(), check_amlr_home(),
         check_workspace_config(bridge$doctor$workspace_config, skip_reason = bridge$skip_reason),
         check_credentials())
  )
  data.frame(
    check = vapply(rows, `[[`, "", "check"),
    ok = vapply(rows, `[[`, NA, "ok"),
    detail = vapply(rows, `[[`, "", "detail"),
    fix = vapply(rows, `[[`, "", "fix"),
    stringsAsFactors = FALSE
  )
}

doctor_row <- function(check, ok, detail, fix = "") {
  list(check = check, ok = as.logical(ok), detail = paste(detail, collapse = " "), fix = paste(fix, collapse = " "))
}

# -- R side ---------------------------------------------------------------------------

check_r <- function() {
  version <- getRversion()
  ok <- version >= "4.1"
  doctor_row("R", ok, paste0("R ", version, " (", R.home(), ")"),
             if (!ok) "amlr needs R 4.1 or newer: install a current R from https://cran.r-project.org.")
}

check_amlr <- function() {
  version <- as.character(utils::packageVersion("amlr"))
  doctor_row("amlr", TRUE, paste0("amlr ", version, " (", system.file(package = "amlr"), ")"))
}

check_python <- function(found) {
  if (is.na(found$path)) {
    tried <- vapply(found$tried, function(t) paste0(t$path, " (", t$problem, ")"), "")
    return(doctor_row(
      "Python", FALSE,
      c("No Python interpreter found.", if (length(tried)) paste0("Tried: ", paste(tried, collapse = "; "), ".")),
      paste(
        "Run `amlr::install_amlr_python()` to make amlr's virtual environment",
        "(needs Python 3.9 or newer on the PATH; on Debian/Ubuntu `sudo apt install python3 python3-venv`),",
        "or point `options(amlr.python)` / AMLR_PYTHON at an existing interpreter."
      )
    ))
  }
  version <- python_version(found$path)
  where <- paste0(found$path, " (from ", python_source_label(found$source), ")")
  if (is.na(version)) {
    return(doctor_row("Python", FALSE, c(where, "does not run."),
                      c("Run `amlr::install_amlr_python()` to make a working interpreter,",
                        "or point AMLR_PYTHON at another.")))
  }
  if (!python_version_ok(version)) {
    return(doctor_row("Python", FALSE, c(where, "is Python", version, "; amlr needs 3.9 or newer."),
                      "Install Python 3.9 or newer, then run `amlr::install_amlr_python()`."))
  }
  doctor_row("Python", TRUE, c("Python", version, "at", where))
}

# The bridge answers a ping; then one `doctor` call returns the Python-side
# checks (SDKs, workspace config). Both go through the bridge in use, so they
# test what amlr will use.
check_bridge <- function(python_ok) {
  bridge <- tryCatch(amlr_bridge(), error = function(e) e)
  if (inherits(bridge, "error")) {
    return(list(row = doctor_row("Bridge", FALSE, conditionMessage(bridge),
                                 "Set `options(amlr.bridge = \"system2\")` (the default) or \"reticulate\"."),
                skip_reason = "the bridge setting is invalid"))
  }
  if (!python_ok) {
    return(list(row = doctor_row("Bridge", NA, paste0(bridge, ": skipped, no usable Python.")),
                skip_reason = "no usable Python"))
  }
  answer <- tryCatch(
    {
      ping <- amlr_call("ping") # the first call may start Python: not what a call costs
      doctor <- amlr_call("doctor", list(cwd = getwd()))
      started <- Sys.time()
      amlr_call("ping")
      list(ping = ping, doctor = doctor, ms = 1000 * as.numeric(difftime(Sys.time(), started, units = "secs")))
    },
    error = function(e) e
  )
  if (inherits(answer, "error")) {
    message <- strsplit(conditionMessage(answer), "\n", fixed = TRUE)[[1]][1]
    return(list(row = doctor_row("Bridge", FALSE, c(bridge, "does not answer:", message), bridge_fix(bridge)),
                skip_reason = "the bridge does not answer"))
  }
  detail <- sprintf("%s answers (amlr %s, Python %s at %s; %.1f ms a call).",
                    bridge, answer$ping$amlr, answer$ping$python, answer$ping$executable, answer$ms)
  row <- doctor_row("Bridge", TRUE, detail)
  expected <- amlr_python()$path
  if (identical(bridge, "reticulate") && !is.na(expected) && !same_interpreter(answer$ping$executable, expected)) {
    row <- doctor_row("Bridge", FALSE,
      c(detail, "reticulate is bound to", answer$ping$executable, "but amlr's interpreter is", paste0(expected, ".")),
      c("reticulate binds one Python per R session: restart R and use amlr before anything else starts Python,",
        "or set RETICULATE_PYTHON to amlr's interpreter."))
  }
  list(row = row, doctor = answer$doctor)
}

bridge_fix <- function(bridge) {
  if (identical(bridge, "reticulate")) {
    return(paste(
      "Check that reticulate can start amlr's Python (`reticulate::py_config()`), restart R if another Python",
      "was bound first, or use the default bridge: `options(amlr.bridge = \"system2\")`."
    ))
  }
  "Run `amlr::amlr_python()` to see which interpreter is used; `amlr::install_amlr_python()` makes a fresh one."
}

check_backend_sdks <- function(doctor, skip_reason = NULL, python = amlr_python()) {
  backends <- c("local", "azureml", "azureml_v2")
  if (is.null(doctor)) {
    return(lapply(backends, function(b) {
      doctor_row(paste("Backend", b), NA, paste0("skipped: ", skip_reason %||% "no answer from Python", "."))
    }))
  }
  lapply(doctor$backends, function(b) check_backend_sdk(b, python))
}

check_backend_sdk <- function(report, python) {
  name <- paste("Backend", report$backend)
  pkgs <- report$packages
  found <- vapply(pkgs, function(p) isTRUE(p$found), NA)
  describe <- function(p) {
    if (!isTRUE(p$found)) return(paste(p$package, "missing"))
    pin <- if (!is.null(p$pinned) && !identical(p$version, p$pinned)) paste0(" (amlr pins ", p$pinned, ")") else ""
    paste0(p$package, " ", p$version %||% "?", pin)
  }
  detail <- paste(vapply(pkgs, describe, ""), collapse = ", ")
  if (identical(report$backend, "local")) {
    detail <- paste0("Python standard library (", detail, ")")
    if (all(found)) return(doctor_row(name, TRUE, paste0(detail, ".")))
    return(doctor_row(name, FALSE, paste0(detail, "."),
                      c("This Python was built without SQLite: run `amlr::install_amlr_python()`",
                        "with a complete Python 3.9+.")))
  }
  if (all(found)) return(doctor_row(name, TRUE, paste0(detail, ".")))
  doctor_row(name, FALSE, paste0(detail, "."), sdk_fix(report$backend, report$requirements, python))
}

# The default venv is amlr's to manage; any other interpreter gets the pip
# command for its own requirements, so the fix never touches the wrong Python.
sdk_fix <- function(backend, requirements, python) {
  install <- sprintf("`amlr::install_amlr_python(backends = \"%s\")`", backend)
  if (identical(python$source, "default venv") || is.na(python$path) || is.null(requirements)) {
    return(paste0("Run ", install, "."))
  }
  pip <- sprintf("Install into this interpreter: `%s -m pip install -r %s`",
                 shQuote(python$path), shQuote(requirements))
  # The default venv ranks below an option or AMLR_PYTHON: those must go for amlr to use it.
  overrides <- python$source %in% c("option", "environment variable")
  sprintf("%s; or run %s%s.", pip, install,
          if (overrides) paste0(" and unset ", python_source_label(python$source), " so amlr uses that venv") else "")
}

check_rscript <- function() {
  configured <- Sys.getenv("AMLR_RSCRIPT", "")
  path <- if (nzchar(configured)) configured else unname(Sys.which("Rscript"))
  source <- if (nzchar(configured)) "AMLR_RSCRIPT" else "the PATH"
  fix <- paste0("Steps run Rscript from the PATH: add ", R.home("bin"), " to PATH, or set AMLR_RSCRIPT to ",
                file.path(R.home("bin"), "Rscript"), ".")
  if (!nzchar(path)) return(doctor_row("Rscript", FALSE, "Rscript is not on the PATH.", fix))
  if (!is.null(interpreter_problem(path))) {
    return(doctor_row("Rscript", FALSE, c(path, "(from", paste0(source, ")"), interpreter_problem(path)), fix))
  }
  doctor_row("Rscript", TRUE, c(path, paste0("(from ", source, ").")))
}

check_amlr_home <- function(home = amlr_home()) {
  fix <- paste("Set AMLR_HOME to a folder you can write to, e.g. `Sys.setenv(AMLR_HOME = \"~/amlr\")`",
               "or in ~/.Renviron.")
  if (dir.exists(home)) {
    if (dir_writable(home)) return(doctor_row("AMLR_HOME", TRUE, c(home, "is writable.")))
    return(doctor_row("AMLR_HOME", FALSE, c(home, "is not writable."), fix))
  }
  parent <- nearest_existing_path(home)
  if (dir.exists(parent) && dir_writable(parent)) {
    return(doctor_row("AMLR_HOME", TRUE, c(home, "will be created on the first run.")))
  }
  why <- if (dir.exists(parent)) paste(parent, "is not writable.") else paste(parent, "is a file, not a folder.")
  doctor_row("AMLR_HOME", FALSE, c(home, "cannot be created:", why), fix)
}

dir_writable <- function(dir) {
  probe <- tempfile(".amlr-doctor-", tmpdir = dir)
  ok <- suppressWarnings(tryCatch(file.create(probe), error = function(e) FALSE))
  if (ok) unlink(probe)
  isTRUE(ok)
}

nearest_existing_path <- function(path) {
  while (!file.exists(path) && !identical(dirname(path), path)) path <- dirname(path)
  path
}

# The search itself is the backends' (Python, amlr.workspace), so the doctor
# reports the file a submit would use.
check_workspace_config <- function(found, skip_reason = NULL, start = getwd()) {
  name <- "Workspace config"
  if (is.null(found)) return(doctor_row(name, NA, paste0("skipped: ", skip_reason %||% "no answer from Python", ".")))
  if (is.null(found$path)) {
    return(doctor_row(
      name, FALSE,
      c("No .azureml/config.json, aml_config/config.json or config.json in", start,
        "or its parents (needed only for the Azure ML backends)."),
      paste("Download config.json from the Azure ML studio (workspace menu, top right: \"Download config file\")",
            "into the project folder, or give the workspace explicitly:",
            "`aml_workspace(subscription_id = , resource_group = , workspace_name = )`.")
    ))
  }
  if (!is.null(found$error)) {
    return(doctor_row(name, FALSE, found$error,
                      c("Download it again from the Azure ML studio",
                        "(workspace menu, top right: \"Download config file\").")))
  }
  doctor_row(name, TRUE, c(found$path, paste0("(workspace ", found$workspace_name, ").")))
}

service_principal_vars <- c("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")

# Names only: the values (secrets among them) are never read into the report.
check_credentials <- function() {
  set <- nzchar(Sys.getenv(c(service_principal_vars, "AMLR_REGISTRY_PASSWORD")))
  names(set) <- c(service_principal_vars, "AMLR_REGISTRY_PASSWORD")
  sp <- set[service_principal_vars]
  registry <- if (set[["AMLR_REGISTRY_PASSWORD"]]) {
    "AMLR_REGISTRY_PASSWORD set"
  } else {
    "AMLR_REGISTRY_PASSWORD not set (needed only for a private image registry)"
  }
  if (all(sp)) {
    vars <- paste(service_principal_vars, collapse = ", ")
    return(doctor_row("Credentials", TRUE, c("Service principal:", vars, "set;", paste0(registry, "."))))
  }
  if (any(sp)) {
    return(doctor_row("Credentials", FALSE,
                      c("Service principal incomplete:", paste(names(sp)[sp], collapse = ", "), "set but",
                        paste(names(sp)[!sp], collapse = ", "), "not;", paste0(registry, ".")),
                      paste("Set all three of", paste(service_principal_vars, collapse = ", "),
                            "(e.g. in ~/.Renviron), or unset them to sign in with `az login`.")))
  }
  doctor_row("Credentials", NA,
             c("No service principal variables set; Azure ML will use `az login`",
               "or an interactive sign-in;", paste0(registry, ".")),
             paste("For unattended runs set", paste(service_principal_vars, collapse = ", "), "(e.g. in ~/.Renviron)."))
}

# -- Printing ---------------------------------------------------------------------

print_doctor <- function(checks) {
  cli::cli_rule(left = "amlr doctor")
  for (i in seq_len(nrow(checks))) {
    check <- checks$check[i]
    detail <- checks$detail[i]
    ok <- checks$ok[i]
    if (isTRUE(ok)) {
      cli::cli_alert_success("{.strong {check}}: {detail}")
    } else if (is.na(ok)) {
      cli::cli_text("{cli::symbol$circle} {.strong {check}}: {detail}")
    } else {
      cli::cli_alert_danger("{.strong {check}}: {detail}")
    }
    fix <- checks$fix[i]
    if (!isTRUE(ok) && nzchar(fix)) cli::cli_bullets(c(" " = "{cli::symbol$arrow_right} {fix}"))
  }
  summarise_doctor(checks)
}

local_checks <- c("R", "Python", "Bridge", "Backend local", "Rscript", "AMLR_HOME")

summarise_doctor <- function(checks) {
  failed <- checks$check[checks$ok %in% FALSE]
  local_failed <- intersect(failed, local_checks)
  azure_failed <- setdiff(failed, local_checks)
  if (length(local_failed)) {
    cli::cli_alert_danger("Local runs need {length(local_failed)} fix{?es}: {local_failed}.")
  } else {
    cli::cli_alert_success("Local runs are ready.")
  }
  if (length(azure_failed)) {
    cli::cli_alert_info("For Azure ML: {length(azure_failed)} item{?s} to fix ({azure_failed}).")
  } else if (!length(local_failed)) {
    cli::cli_alert_success("Azure ML backends are ready.")
  }
  invisible(checks)
}

# Two interpreter paths are the same Python environment when they sit in the
# same folder. Resolving the files themselves would not do: a venv's python
# is a link to the base interpreter.
same_interpreter <- function(a, b) {
  same_path(dirname(a), dirname(b))
}
