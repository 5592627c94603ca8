# The RStudio API is faked at amlr's boundary (options(amlr.rstudioapi)); the
# fake records what the addin asked of RStudio.
fake_rstudio <- function(path, contents = readLines(path), answer = TRUE, saves = TRUE) {
  calls <- new.env()
  calls$questions <- list()
  calls$saved <- character()
  api <- list(
    getSourceEditorContext = function() list(id = "doc-1", path = path, contents = contents),
    showQuestion = function(title, message, ok = NULL, cancel = NULL) {
      calls$questions[[length(calls$questions) + 1L]] <- list(title = title, message = message, ok = ok, cancel = cancel)
      answer
    },
    documentSave = function(id) {
      calls$saved <- c(calls$saved, id)
      if (saves) writeLines(contents, path)
      saves
    }
  )
  list(api = api, calls = calls)
}

# Replaces a function inside amlr's namespace for the calling test:
# testthat::local_mocked_bindings() where testthat has it (>= 3.1.7), else the
# same swap by hand (Debian's testthat is 3.1.6).
local_amlr_binding <- function(name, value, env = parent.frame()) {
  if (exists("local_mocked_bindings", envir = asNamespace("testthat"))) {
    mock <- get("local_mocked_bindings", envir = asNamespace("testthat"))
    args <- c(stats::setNames(list(value), name), list(.package = "amlr", .env = env))
    return(invisible(do.call(mock, args)))
  }
  ns <- asNamespace("amlr")
  old <- get(name, envir = ns)
  swap <- function(f) {
    unlockBinding(name, ns)
    assign(name, f, envir = ns)
    lockBinding(name, ns)
  }
  swap(value)
  withr::defer(swap(old), envir = env)
}

# Replaces submit_r_pipeline() inside amlr; returns what it was given.
capture_submit <- function(env = parent.frame()) {
  seen <- new.env()
  seen$calls <- list()
  local_amlr_binding("submit_r_pipeline", function(pipeline = NULL, experiment = NULL, backend = "local",
                                                   workspace = NULL, wait = TRUE, ...) {
    seen$calls[[length(seen$calls) + 1L]] <- list(pipeline = pipeline, backend = backend, wait = wait,
                                                  on_disk = readLines(pipeline))
    structure(list(id = "run-1"), class = "fake_run")
  }, env = env)
  seen
}

test_that("a modified script is saved when the user agrees, then the saved file is run locally", {
  script <- withr::local_tempfile(fileext = ".R", lines = "cat('old')")
  fake <- fake_rstudio(script, contents = "cat('new')", answer = TRUE)
  withr::local_options(amlr.rstudioapi = fake$api)
  seen <- capture_submit()
  expect_message(run <- addin_run_local(), "Submitting")
  expect_length(fake$calls$questions, 1L)
  expect_equal(fake$calls$questions[[1]]$ok, "Save and submit")
  expect_match(fake$calls$questions[[1]]$message, basename(script), fixed = TRUE)
  expect_equal(fake$calls$saved, "doc-1")
  expect_length(seen$calls, 1L)
  expect_equal(seen$calls[[1]]$pipeline, normalizePath(script, winslash = "/"))
  expect_equal(seen$calls[[1]]$backend, "local")
  expect_true(seen$calls[[1]]$wait)
  expect_equal(seen$calls[[1]]$on_disk, "cat('new')")
  expect_equal(run$id, "run-1")
})

test_that("declining to save submits nothing", {
  script <- withr::local_tempfile(fileext = ".R", lines = "cat('old')")
  fake <- fake_rstudio(script, contents = "cat('new')", answer = FALSE)
  withr::local_options(amlr.rstudioapi = fake$api)
  seen <- capture_submit()
  expect_message(res <- addin_run_local(), "Not submitted")
  expect_null(res)
  expect_length(fake$calls$questions, 1L)
  expect_equal(fake$calls$saved, character())
  expect_length(seen$calls, 0L)
  expect_equal(readLines(script), "cat('old')")
})

test_that("an unmodified script is submitted without asking", {
  script <- withr::local_tempfile(fileext = ".R", lines = "cat('same')")
  fake <- fake_rstudio(script)
  withr::local_options(amlr.rstudioapi = fake$api)
  seen <- capture_submit()
  suppressMessages(addin_run_local())
  expect_length(fake$calls$questions, 0L)
  expect_equal(fake$calls$saved, character())
  expect_equal(seen$calls[[1]]$pipeline, normalizePath(script, winslash = "/"))
})

test_that("Submit to Azure ML uses the configured backend", {
  script <- withr::local_tempfile(fileext = ".R", lines = "cat('x')")
  withr::local_options(amlr.rstudioapi = fake_rstudio(script)$api)
  seen <- capture_submit()
  suppressMessages(addin_submit_azureml())
  expect_equal(seen$calls[[1]]$backend, "azureml_v2")
  withr::local_options(amlr.addin_backend = "azureml")
  expect_message(addin_submit_azureml(), "Azure ML \\(azureml\\)")
  expect_equal(seen$calls[[2]]$backend, "azureml")
  withr::local_options(amlr.addin_backend = "local")
  expect_error(addin_submit_azureml(), class = "amlr_error_bad_request")
  expect_length(seen$calls, 2L)
})

test_that("an untitled document, a failed save, or no RStudio is a classed error", {
  seen <- capture_submit()
  untitled <- fake_rstudio("", contents = "cat(1)")
  withr::local_options(amlr.rstudioapi = untitled$api)
  expect_error(addin_run_local(), "never been saved", class = "amlr_error_no_script")

  script <- withr::local_tempfile(fileext = ".R", lines = "cat('old')")
  stuck <- fake_rstudio(script, contents = "cat('new')", saves = FALSE)
  withr::local_options(amlr.rstudioapi = stuck$api)
  expect_error(addin_run_local(), "could not save", class = "amlr_error_no_script")
  expect_equal(stuck$calls$saved, "doc-1")

  no_doc <- list(getSourceEditorContext = function() NULL)
  withr::local_options(amlr.rstudioapi = no_doc)
  expect_error(addin_run_local(), "No R script is open", class = "amlr_error_no_script")

  withr::local_options(amlr.rstudioapi = NULL)
  skip_if(requireNamespace("rstudioapi", quietly = TRUE) && rstudioapi::isAvailable(), "running inside RStudio")
  expect_error(addin_run_local(), "need RStudio", class = "amlr_error_no_script")
  expect_length(seen$calls, 0L)
})

test_that("the addins are registered for RStudio's Addins menu", {
  dcf <- read.dcf(system.file("rstudio", "addins.dcf", package = "amlr"))
  expect_setequal(dcf[, "Name"], c("Run current script locally", "Submit current script to Azure ML"))
  expect_setequal(dcf[, "Binding"], c("addin_run_local", "addin_submit_azureml"))
  expect_true(all(dcf[, "Binding"] %in% getNamespaceExports("amlr")))
  expect_true(all(dcf[, "Interactive"] == "false"))
})

test_that("the local addin really runs the saved script", {
  dir <- withr::local_tempdir()
  script <- file.path(dir, "hello_addin.R")
  writeLines("cat('draft\\n')", script)
  fake <- fake_rstudio(script, contents = "cat('hello from the addin\\n')")
  withr::local_options(amlr.rstudioapi = fake$api)
  out <- capture.output(run <- suppressMessages(addin_run_local()), type = "output")
  expect_equal(fake$calls$saved, "doc-1")
  expect_equal(run_status(run), "Completed")
  expect_true(any(grepl("hello from the addin", as.character(run_logs(run)), fixed = TRUE)))
})
