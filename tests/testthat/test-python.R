# Finding and making amlr's Python interpreter.

# A stand-in interpreter: an executable that is never run by these tests.
fake_interpreter <- function(dir, name = "python") {
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  path <- file.path(dir, name)
  writeLines(c("#!/bin/sh", "exit 0"), path)
  Sys.chmod(path, "755")
  path
}

# No option, no AMLR_PYTHON, an empty user data dir and a PATH with no Python.
local_no_python <- function(env = parent.frame()) {
  root <- withr::local_tempdir("amlr-nopython-", .local_envir = env)
  empty_bin <- file.path(root, "bin")
  dir.create(empty_bin)
  withr::local_options(amlr.python = NULL, .local_envir = env)
  withr::local_envvar(AMLR_PYTHON = "", R_USER_DATA_DIR = file.path(root, "data"), PATH = empty_bin,
                      .local_envir = env)
  root
}

test_that("amlr_python() takes the option first, then AMLR_PYTHON, then the default venv, then PATH", {
  root <- local_no_python()
  opt <- fake_interpreter(file.path(root, "opt"))
  env <- fake_interpreter(file.path(root, "env"))
  on_path <- fake_interpreter(file.path(root, "bin"), "python3")
  expect_identical(amlr_python()[c("path", "source")], list(path = on_path, source = "PATH"))

  expect_identical(default_venv_python(), file.path(root, "data", "R", "amlr", "python", "bin", "python"))
  venv <- fake_interpreter(dirname(default_venv_python()))
  expect_identical(amlr_python()[c("path", "source")], list(path = venv, source = "default venv"))
  withr::local_envvar(AMLR_PYTHON = env)
  expect_identical(amlr_python()[c("path", "source")], list(path = env, source = "environment variable"))
  withr::local_options(amlr.python = opt)
  expect_identical(amlr_python()[c("path", "source")], list(path = opt, source = "option"))
})

test_that("a setting that points at nothing runnable is skipped and reported", {
  root <- local_no_python()
  env <- fake_interpreter(file.path(root, "env"))
  not_executable <- file.path(root, "plain-file")
  writeLines("", not_executable)
  Sys.chmod(not_executable, "644")
  withr::local_options(amlr.python = file.path(root, "missing", "python"))
  withr::local_envvar(AMLR_PYTHON = env)

  found <- amlr_python()
  expect_identical(found$source, "environment variable")
  expect_identical(found$tried[[1]]$problem, "does not exist")
  expect_identical(found$tried[[1]]$source, "option")
  out <- capture_messages(print(found))
  expect_match(out, "Skipped options(amlr.python)", fixed = TRUE, all = FALSE)
  expect_match(out, "does not exist", fixed = TRUE, all = FALSE)
  expect_match(out, "Found via the AMLR_PYTHON environment variable", fixed = TRUE, all = FALSE)

  skip_on_os("windows")
  withr::local_envvar(AMLR_PYTHON = not_executable)
  expect_identical(amlr_python()$tried[[2]]$problem, "is not executable")
  withr::local_envvar(AMLR_PYTHON = root)
  expect_identical(amlr_python()$tried[[2]]$problem, "is a folder, not an interpreter")
})

test_that("with no Python anywhere, amlr_python() says to run install_amlr_python()", {
  local_no_python()
  found <- amlr_python()
  expect_true(is.na(found$path))
  expect_identical(found$source, "none")
  out <- capture_messages(print(found))
  expect_match(out, "No Python interpreter found", fixed = TRUE, all = FALSE)
  expect_match(out, "install_amlr_python()", fixed = TRUE, all = FALSE)
  err <- expect_error(amlr_python_or_abort(), class = "amlr_error_no_python")
  expect_match(conditionMessage(err), "install_amlr_python()", fixed = TRUE)
})

test_that("a virtual environment's python is used as the link, not the interpreter it points to", {
  skip_on_os("windows")
  python <- amlr_python()$path
  link <- file.path(withr::local_tempdir(), "python")
  file.symlink(python, link)
  withr::local_options(amlr.python = link)
  expect_identical(amlr_python()$path, link)
})

test_that("python_version() reads the interpreter's version, NA when it does not run", {
  version <- python_version(amlr_python()$path)
  expect_match(version, "^3\\.[0-9]+\\.[0-9]+$")
  expect_true(python_version_ok(version))
  expect_false(python_version_ok("3.8.18"))
  expect_false(python_version_ok(NA_character_))
  broken <- file.path(withr::local_tempdir(), "python")
  writeLines(c("#!/bin/sh", "exit 1"), broken)
  Sys.chmod(broken, "755")
  expect_identical(python_version(broken), NA_character_)
})

test_that("each backend brings its own pinned requirements; local needs none", {
  dir <- system.file("python", package = "amlr")
  expect_length(backend_requirements("local"), 0)
  expect_identical(backend_requirements(c("local", "azureml")),
                   c(azureml = file.path(dir, "requirements-azureml.txt")))
  reqs <- backend_requirements(c("local", "azureml", "azureml_v2"))
  expect_identical(names(reqs), c("azureml", "azureml_v2"))
  expect_true(all(file.exists(reqs)))
  expect_match(paste(readLines(reqs[["azureml_v2"]]), collapse = "\n"), "azure-ai-ml==", fixed = TRUE)

  args <- pip_install_args(reqs)
  expect_identical(args[1:3], c("-m", "pip", "install"))
  expect_identical(utils::tail(args, 4), c("-r", shQuote(reqs[[1]]), "-r", shQuote(reqs[[2]])))

  expect_error(install_amlr_python(tempfile(), backends = "gpu"), class = "amlr_error_bad_request")
  expect_error(install_amlr_python(tempfile(), backends = character()), class = "amlr_error_bad_request")
})

test_that("requirements already installed are not installed again, changed pins are", {
  envdir <- withr::local_tempdir()
  src <- withr::local_tempdir()
  reqs <- c(azureml = file.path(src, "requirements-azureml.txt"),
            azureml_v2 = file.path(src, "requirements-azureml_v2.txt"))
  writeLines("azureml-core==1.61.0.post4", reqs[["azureml"]])
  writeLines("azure-ai-ml==1.35.2", reqs[["azureml_v2"]])
  expect_identical(requirements_pending(envdir, reqs), reqs)

  record_requirements(envdir, reqs["azureml"])
  expect_identical(requirements_pending(envdir, reqs), reqs["azureml_v2"])
  record_requirements(envdir, reqs["azureml_v2"])
  expect_length(requirements_pending(envdir, reqs), 0)

  writeLines("azure-ai-ml==1.36.0", reqs[["azureml_v2"]])
  expect_identical(requirements_pending(envdir, reqs), reqs["azureml_v2"])
})

test_that("install_amlr_python(backends = 'local') makes a working venv, and a second call reuses it", {
  skip_on_cran()
  envdir <- file.path(withr::local_tempdir(), "amlr venv")
  base <- amlr_python()$path
  msgs <- capture_messages(python <- install_amlr_python(envdir, backends = "local", python = base))
  expect_match(msgs, "Creating a virtual environment with Python 3", fixed = TRUE, all = FALSE)
  expect_match(msgs, "Python for amlr (local)", fixed = TRUE, all = FALSE)
  expect_identical(python, default_venv_python(envdir))
  expect_true(file.exists(file.path(envdir, "pyvenv.cfg")))
  prefix <- system2(python, c("-c", shQuote("import sys; print(sys.prefix)")), stdout = TRUE)
  expect_true(same_path(prefix, envdir))
  # Nothing was pip-installed for the local backend.
  expect_false(file.exists(requirements_stamp(envdir)))
  expect_false(file.exists(file.path(envdir, "amlr-install.log")))

  cfg_time <- file.mtime(file.path(envdir, "pyvenv.cfg"))
  msgs <- capture_messages(again <- install_amlr_python(envdir, backends = "local"))
  expect_identical(again, python)
  expect_match(msgs, "Using the virtual environment", fixed = TRUE, all = FALSE)
  expect_false(any(grepl("Creating", msgs)))
  expect_identical(file.mtime(file.path(envdir, "pyvenv.cfg")), cfg_time)
  expect_match(msgs, "not the default place", fixed = TRUE, all = FALSE)

  # amlr uses it when told to.
  withr::local_options(amlr.python = python)
  expect_identical(amlr_python()$path, python)
})

test_that("install_amlr_python() will not turn a folder with other files into a venv", {
  envdir <- withr::local_tempdir()
  writeLines("precious", file.path(envdir, "analysis.R"))
  expect_error(install_amlr_python(envdir, backends = "local", python = amlr_python()$path),
               class = "amlr_error_bad_request")
  expect_identical(readLines(file.path(envdir, "analysis.R")), "precious")
})

test_that("with no suitable Python, install_amlr_python() says what to install", {
  local_no_python()
  err <- expect_error(install_amlr_python(tempfile(), backends = "local"), class = "amlr_error_no_python")
  msg <- conditionMessage(err)
  expect_match(msg, "Python 3.9 or newer", fixed = TRUE)
  expect_match(msg, "python3-venv", fixed = TRUE)
  expect_match(msg, "python.org", fixed = TRUE)

  too_old <- file.path(withr::local_tempdir(), "python3")
  writeLines(c("#!/bin/sh", "echo 3.8.18"), too_old)
  Sys.chmod(too_old, "755")
  err <- expect_error(install_amlr_python(tempfile(), backends = "local", python = too_old),
                      class = "amlr_error_no_python")
  expect_match(conditionMessage(err), "Python 3.8.18", fixed = TRUE)
})

test_that("a failing install step shows the end of its log, braces and all", {
  log <- tempfile(fileext = ".log")
  err <- expect_error(
    run_or_abort(amlr_python()$path,
                 c("-c", shQuote("import sys; print('ERROR: no matching distribution for {pkg}'); sys.exit(4)")),
                 what = "Installing the Python packages", log = log),
    class = "amlr_error_install_failed"
  )
  msg <- conditionMessage(err)
  expect_match(msg, "Installing the Python packages failed (exit status 4)", fixed = TRUE)
  expect_match(msg, "no matching distribution for {pkg}", fixed = TRUE)
})
