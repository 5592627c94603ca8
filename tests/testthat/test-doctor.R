# amlr_doctor(): one line per check, a fix for each failure, a data frame back.

doctor_quietly <- function() {
  msgs <- capture_messages(checks <- amlr_doctor())
  list(checks = checks, output = paste(msgs, collapse = ""))
}

row_of <- function(checks, name) {
  row <- checks[checks$check == name, , drop = FALSE]
  expect_identical(nrow(row), 1L)
  as.list(row)
}

# The version of a distribution in `python`, or NA when it is not installed:
# asked directly, to hold the doctor's answer against.
installed_version <- function(python, package) {
  code <- sprintf("import importlib.metadata as m\ntry: print(m.version('%s'))\nexcept m.PackageNotFoundError: print('NA')", package)
  out <- system2(python, c("-c", shQuote(code)), stdout = TRUE)
  if (identical(out, "NA")) NA_character_ else out
}

test_that("amlr_doctor() returns one row per check, invisibly, and prints each", {
  withr::local_dir(withr::local_tempdir())
  expect_invisible(suppressMessages(amlr_doctor()))
  res <- doctor_quietly()
  checks <- res$checks
  expect_s3_class(checks, "data.frame")
  expect_identical(names(checks), c("check", "ok", "detail", "fix"))
  expect_identical(checks$check, c("R", "amlr", "Python", "Bridge", "Backend local", "Backend azureml",
                                   "Backend azureml_v2", "Rscript", "AMLR_HOME", "Workspace config", "Credentials"))
  expect_type(checks$ok, "logical")
  for (check in checks$check) expect_match(res$output, paste0(check, ": "), fixed = TRUE)
  # Every failure says what to do.
  expect_true(all(nzchar(checks$fix[checks$ok %in% FALSE])))

  expect_true(row_of(checks, "R")$ok)
  expect_match(row_of(checks, "R")$detail, as.character(getRversion()), fixed = TRUE)
  expect_match(row_of(checks, "amlr")$detail, as.character(utils::packageVersion("amlr")), fixed = TRUE)
  python <- amlr_python()
  py <- row_of(checks, "Python")
  expect_true(py$ok)
  expect_match(py$detail, python$path, fixed = TRUE)
  expect_match(py$detail, python_version(python$path), fixed = TRUE)
  expect_match(py$detail, python_source_label(python$source), fixed = TRUE)
})

test_that("the bridge line names the bridge in use and shows that it answers", {
  checks <- doctor_quietly()$checks
  bridge <- row_of(checks, "Bridge")
  expect_true(bridge$ok)
  expect_match(bridge$detail, paste(amlr_bridge(), "answers"), fixed = TRUE)
  expect_match(bridge$detail, "ms a call", fixed = TRUE)
  expect_true(row_of(checks, "Backend local")$ok)
})

test_that("each backend line reports the SDK versions the interpreter really has", {
  checks <- doctor_quietly()$checks
  python <- amlr_python()
  sdks <- list(azureml = c("azureml-core", "azureml-pipeline-core", "azureml-pipeline-steps"),
               azureml_v2 = c("azure-ai-ml", "azure-identity"))
  for (backend in names(sdks)) {
    row <- row_of(checks, paste("Backend", backend))
    versions <- vapply(sdks[[backend]], function(p) installed_version(python$path, p), "")
    expect_identical(row$ok, !anyNA(versions))
    for (p in names(versions)) {
      expected <- if (is.na(versions[[p]])) paste(p, "missing") else paste(p, versions[[p]])
      expect_match(row$detail, expected, fixed = TRUE)
    }
  }
})

test_that("a Python without the Azure SDKs gets the pip command for its own requirements", {
  venv <- file.path(withr::local_tempdir(), "bare")
  system2(amlr_python()$path, c("-m", "venv", "--without-pip", shQuote(venv)))
  bare <- default_venv_python(venv)
  withr::local_options(amlr.python = bare, amlr.bridge = "system2")
  checks <- doctor_quietly()$checks
  expect_true(row_of(checks, "Backend local")$ok)
  for (backend in c("azureml", "azureml_v2")) {
    row <- row_of(checks, paste("Backend", backend))
    expect_false(row$ok)
    expect_match(row$detail, "missing", fixed = TRUE)
    expect_match(row$fix, sprintf("install_amlr_python(backends = \"%s\")", backend), fixed = TRUE)
    expect_match(row$fix, paste(shQuote(bare), "-m pip install -r"), fixed = TRUE)
    expect_match(row$fix, paste0("requirements-", backend, ".txt"), fixed = TRUE)
  }
})

test_that("the doctor notices when reticulate is bound to another Python than amlr's", {
  skip_if_no_reticulate()
  withr::local_options(amlr.bridge = "reticulate")
  bound <- amlr_call("ping")$executable
  other <- file.path(withr::local_tempdir(), "other")
  system2(amlr_python()$path, c("-m", "venv", "--without-pip", shQuote(other)))
  withr::local_options(amlr.python = default_venv_python(other))
  row <- row_of(doctor_quietly()$checks, "Bridge")
  expect_false(row$ok)
  expect_match(row$detail, paste("reticulate is bound to", bound), fixed = TRUE)
  expect_match(row$detail, default_venv_python(other), fixed = TRUE)
  expect_match(row$fix, "restart R", fixed = TRUE)
})

test_that("with no Python at all the doctor says to run install_amlr_python() and skips the Python checks", {
  root <- withr::local_tempdir()
  dir.create(file.path(root, "empty-bin"))
  withr::local_options(amlr.python = "/nonexistent/python")
  withr::local_envvar(AMLR_PYTHON = file.path(root, "nowhere", "python"),
                      R_USER_DATA_DIR = file.path(root, "data"),
                      PATH = file.path(root, "empty-bin"))
  res <- doctor_quietly()
  checks <- res$checks
  expect_match(res$output, "install_amlr_python()", fixed = TRUE)
  py <- row_of(checks, "Python")
  expect_false(py$ok)
  expect_match(py$detail, "/nonexistent/python (does not exist)", fixed = TRUE)
  expect_match(py$fix, "Run `amlr::install_amlr_python()`", fixed = TRUE)
  for (check in c("Bridge", "Backend local", "Backend azureml", "Backend azureml_v2", "Workspace config")) {
    row <- row_of(checks, check)
    expect_true(is.na(row$ok))
    expect_match(row$detail, "skipped", fixed = TRUE)
  }
  expect_match(res$output, "Local runs need", fixed = TRUE)
})

test_that("credentials are reported by name, never by value", {
  secrets <- c(AZURE_TENANT_ID = "tenant-VALUE-1b2c", AZURE_CLIENT_ID = "client-VALUE-3d4e",
               AZURE_CLIENT_SECRET = "s3cr3t-VALUE-5f6a", AMLR_REGISTRY_PASSWORD = "registry-VALUE-7b8c")
  withr::local_envvar(secrets)
  res <- doctor_quietly()
  creds <- row_of(res$checks, "Credentials")
  expect_true(creds$ok)
  for (name in names(secrets)) expect_match(creds$detail, name, fixed = TRUE)
  everything <- paste(c(res$output, unlist(res$checks)), collapse = "\n")
  for (value in secrets) expect_false(grepl(value, everything, fixed = TRUE))

  withr::local_envvar(AZURE_CLIENT_SECRET = "", AMLR_REGISTRY_PASSWORD = "")
  creds <- row_of(doctor_quietly()$checks, "Credentials")
  expect_false(creds$ok)
  expect_match(creds$detail, "AZURE_TENANT_ID, AZURE_CLIENT_ID set but AZURE_CLIENT_SECRET not", fixed = TRUE)
  expect_match(creds$detail, "AMLR_REGISTRY_PASSWORD not set", fixed = TRUE)

  withr::local_envvar(AZURE_TENANT_ID = "", AZURE_CLIENT_ID = "")
  creds <- row_of(doctor_quietly()$checks, "Credentials")
  expect_true(is.na(creds$ok))
  expect_match(creds$detail, "az login", fixed = TRUE)
})

test_that("the workspace config is the file the backends would use, found up from the working directory", {
  root <- normalizePath(withr::local_tempdir(), winslash = "/")
  project <- file.path(root, "project", "analysis", "deep")
  dir.create(project, recursive = TRUE)
  withr::local_dir(project)
  workspace_row <- function() row_of(doctor_quietly()$checks, "Workspace config")
  row <- workspace_row()
  skip_if(!isFALSE(row$ok), "a workspace config file above the temp dir")
  expect_match(row$detail, project, fixed = TRUE)
  expect_match(row$fix, "aml_workspace(subscription_id = ", fixed = TRUE)

  dir.create(file.path(root, "project", ".azureml"))
  config <- file.path(root, "project", ".azureml", "config.json")
  writeLines('{"subscription_id": "0000-sub", "resource_group": "rg", "workspace_name": "ws-test"}', config)
  row <- workspace_row()
  expect_true(row$ok)
  expect_match(row$detail, config, fixed = TRUE)
  expect_match(row$detail, "workspace ws-test", fixed = TRUE)

  # Workspace.from_config() order: .azureml/ anywhere above beats a nearer plain config.json.
  writeLines("{}", file.path(root, "project", "analysis", "config.json"))
  expect_match(workspace_row()$detail, config, fixed = TRUE)

  writeLines('{"subscription_id": "0000-sub"', config)
  row <- workspace_row()
  expect_false(row$ok)
  expect_match(row$detail, "is not valid JSON", fixed = TRUE)
  expect_match(row$fix, "Download it again", fixed = TRUE)
})

test_that("AMLR_HOME must be writable, or creatable", {
  home <- withr::local_tempdir()
  expect_true(check_amlr_home(home)$ok)
  later <- check_amlr_home(file.path(home, "not", "yet"))
  expect_true(later$ok)
  expect_match(later$detail, "will be created", fixed = TRUE)
  expect_false(dir.exists(file.path(home, "not")))

  a_file <- file.path(home, "a-file")
  writeLines("", a_file)
  for (path in c(a_file, file.path(a_file, "below"))) {
    row <- check_amlr_home(path)
    expect_false(row$ok)
    expect_match(row$detail, paste(a_file, "is a file"), fixed = TRUE)
    expect_match(row$fix, "Set AMLR_HOME", fixed = TRUE)
  }

  skip_on_os("windows")
  base <- if (running_as_root()) shared_tempdir() else home
  locked <- file.path(base, "locked")
  dir.create(locked)
  Sys.chmod(locked, "555")
  withr::defer(Sys.chmod(locked, "755"))
  for (path in c(locked, file.path(locked, "below"))) {
    if (running_as_root()) {  # root can write anywhere: ask as `nobody`
      out <- run_r_as_nobody(sprintf(
        'row <- amlr:::check_amlr_home("%s"); cat(row$ok, row$detail, row$fix, sep = "\n")', path))
      row <- list(ok = as.logical(out[1]), detail = out[2], fix = out[3])
    } else {
      row <- check_amlr_home(path)
    }
    expect_false(row$ok)
    expect_match(row$detail, paste(locked, "is not writable"), fixed = TRUE)
    expect_match(row$fix, "Set AMLR_HOME", fixed = TRUE)
  }
})

test_that("Rscript is looked up the way the bootstrapper does, AMLR_RSCRIPT first", {
  withr::local_envvar(AMLR_RSCRIPT = "/nonexistent/Rscript")
  row <- check_rscript()
  expect_false(row$ok)
  expect_match(row$detail, "/nonexistent/Rscript (from AMLR_RSCRIPT) does not exist", fixed = TRUE)
  expect_match(row$fix, R.home("bin"), fixed = TRUE)
  withr::local_envvar(AMLR_RSCRIPT = file.path(R.home("bin"), "Rscript"))
  expect_true(check_rscript()$ok)
})
