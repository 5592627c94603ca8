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

# What the addins recorded: the runs in the test's own AMLR_HOME.
n_runs <- function() nrow(run_list(limit = 0))

# A script that says which version of itself ran.
addin_script <- function(lines, env = parent.frame()) {
  dir <- withr::local_tempdir("amlr-addin-", .local_envir = env)
  path <- file.path(dir, "analysis.R")
  writeLines(lines, path)
  path
}

test_that("a modified script is saved when the user agrees, then the saved file is run locally", {
  skip_if_no_rscript()
  local_amlr_home()
  script <- addin_script("cat('old version\\n')")
  fake <- fake_rstudio(script, contents = "cat('new version\\n')", answer = TRUE)
  withr::local_options(amlr.rstudioapi = fake$api)
  capture.output(expect_message(run <- addin_run_local(), "Submitting .*analysis.R.* on this machine"))
  expect_length(fake$calls$questions, 1L)
  expect_equal(fake$calls$questions[[1]]$ok, "Save and submit")
  expect_match(fake$calls$questions[[1]]$message, basename(script), fixed = TRUE)
  expect_equal(fake$calls$saved, "doc-1")
  expect_s3_class(run, "amlr_run")
  expect_equal(run_status(run), "Completed")
  logs <- as.character(run_logs(run))
  expect_true(any(grepl("new version", logs, fixed = TRUE)))
  expect_false(any(grepl("old version", logs, fixed = TRUE)))
  expect_equal(n_runs(), 1L)
})

test_that("declining to save submits nothing", {
  local_amlr_home()
  script <- addin_script("cat('old')")
  fake <- fake_rstudio(script, contents = "cat('new')", answer = FALSE)
  withr::local_options(amlr.rstudioapi = fake$api)
  expect_message(res <- addin_run_local(), "Not submitted")
  expect_null(res)
  expect_length(fake$calls$questions, 1L)
  expect_equal(fake$calls$saved, character())
  expect_equal(n_runs(), 0L)
  expect_equal(readLines(script), "cat('old')")
})

test_that("an unmodified script is submitted without asking", {
  skip_if_no_rscript()
  local_amlr_home()
  script <- addin_script("cat('same\\n')")
  fake <- fake_rstudio(script)
  withr::local_options(amlr.rstudioapi = fake$api)
  capture.output(run <- suppressMessages(addin_run_local()))
  expect_length(fake$calls$questions, 0L)
  expect_equal(fake$calls$saved, character())
  expect_equal(run_status(run), "Completed")
  expect_true(any(grepl("same", as.character(run_logs(run)), fixed = TRUE)))
})

test_that("Submit to Azure ML uses the configured backend", {
  # No workspace is configured: the real submit on each Azure backend stops at the workspace,
  # classed, before anything is recorded. The classic backend says it is the classic one.
  local_amlr_home()
  withr::local_dir(withr::local_tempdir("amlr-no-ws-"))
  script <- addin_script("cat('x')")
  withr::local_options(amlr.rstudioapi = fake_rstudio(script)$api, amlr.classic_notice = NULL)
  msgs <- character()
  withCallingHandlers(
    expect_error(addin_submit_azureml(), "No workspace config file found", class = "amlr_error_workspace_config"),
    message = function(m) { msgs <<- c(msgs, conditionMessage(m)); invokeRestart("muffleMessage") })
  expect_true(any(grepl("to Azure ML (azureml_v2)", msgs, fixed = TRUE)))
  expect_false(any(grepl("classic Azure ML SDK", msgs, fixed = TRUE)))
  withr::local_options(amlr.addin_backend = "azureml")
  msgs <- character()
  withCallingHandlers(
    expect_error(addin_submit_azureml(), "No workspace config file found", class = "amlr_error_workspace_config"),
    message = function(m) { msgs <<- c(msgs, conditionMessage(m)); invokeRestart("muffleMessage") },
    warning = function(w) { msgs <<- c(msgs, conditionMessage(w)); invokeRestart("muffleWarning") })
  expect_true(any(grepl("to Azure ML (azureml)", msgs, fixed = TRUE)))
  withr::local_options(amlr.addin_backend = "local")
  expect_error(addin_submit_azureml(), class = "amlr_error_bad_request")
  expect_equal(n_runs(), 0L)
})

test_that("an untitled document, a failed save, or no RStudio is a classed error", {
  local_amlr_home()
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
  expect_equal(n_runs(), 0L)
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
