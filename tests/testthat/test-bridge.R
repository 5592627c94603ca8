# Both transports carry the same JSON to the same Python function, so every
# answer and every error must be the same whichever one R uses. These tests
# run the same expectations under each bridge in one session (reticulate binds
# the one Python of this session).

with_bridge <- function(bridge, code) {
  withr::with_options(list(amlr.bridge = bridge), code)
}

# Run `fn(bridge)` under each bridge; a list named by bridge.
on_each_bridge <- function(fn) {
  bridges <- available_bridges()
  stats::setNames(lapply(bridges, function(b) with_bridge(b, fn(b))), bridges)
}

test_that("the test session uses the bridge AMLR_TEST_BRIDGE names, with its own AMLR_HOME", {
  expect_identical(amlr_bridge(), Sys.getenv("AMLR_TEST_BRIDGE", "system2"))
  home <- Sys.getenv("AMLR_HOME")
  expect_true(nzchar(home))
  expect_false(same_path(home, tools::R_user_dir("amlr", "data")))
  expect_true(same_path(amlr_call("ping")$home, home))
})

test_that("both bridges answer a ping identically, from the same interpreter", {
  skip_if_no_reticulate()
  pings <- on_each_bridge(function(b) amlr_call("ping"))
  expect_identical(pings$system2, pings$reticulate)
  expect_identical(pings$system2$amlr, as.character(utils::packageVersion("amlr")))
})

test_that("a validation error has the same class, field and message on both bridges", {
  skip_if_no_reticulate()
  dir <- withr::local_tempdir()
  writeLines('cat("a\\n")', file.path(dir, "a.R"))
  writeLines('cat("b\\n")', file.path(dir, "b.R"))
  a <- r_step(file.path(dir, "a.R"), inputs = list(x = output_of("b", "out")), outputs = "out")
  b <- r_step(file.path(dir, "b.R"), inputs = list(x = output_of("a", "out")), outputs = "out")

  errs <- on_each_bridge(function(bridge) {
    expect_error(r_pipeline(a, b, name = "cycle"), class = "amlr_error_invalid_spec")
  })
  expect_identical(class(errs$system2), class(errs$reticulate))
  expect_identical(conditionMessage(errs$system2), conditionMessage(errs$reticulate))
  expect_identical(errs$system2$field, errs$reticulate$field)
  expect_match(conditionMessage(errs$system2), "cycle: a -> b -> a", fixed = TRUE)
})

test_that("a failing run signals amlr_run_failed with the exit code on both bridges", {
  skip_if_no_reticulate()
  skip_if_no_rscript()
  withr::local_envvar(AMLR_HOME = withr::local_tempdir("amlr-home-"))
  dir <- withr::local_tempdir()
  script <- file.path(dir, "fail.R")
  writeLines(c('cat("about to fail\\n")', "quit(status = 3)"), script)

  errs <- on_each_bridge(function(bridge) {
    expect_error(submit_r_pipeline(script, quiet = TRUE), class = "amlr_run_failed")
  })
  expect_identical(class(errs$system2), class(errs$reticulate))
  expect_s3_class(errs$system2, "amlr_error")
  for (err in errs) {
    expect_match(conditionMessage(err), "exited with code 3", fixed = TRUE)
    expect_match(conditionMessage(err), "about to fail", fixed = TRUE)
    expect_identical(err$run$status, "Failed")
  }
  # Same message but for the run id each bridge's submit created.
  scrub <- function(err) gsub(err$run$id, "<id>", conditionMessage(err), fixed = TRUE)
  expect_identical(scrub(errs$system2), scrub(errs$reticulate))
  # Either bridge reads the other's runs: one registry, one protocol.
  expect_identical(
    with_bridge("system2", run_steps(errs$reticulate$run$id))$exit_code,
    with_bridge("reticulate", run_steps(errs$system2$run$id))$exit_code
  )
})

raising_method <- c(
  "import amlr.api",
  "@amlr.api.method('test_raise')",
  "def _test_raise(params):",
  "    raise ZeroDivisionError('the test method divided by zero')"
)

test_that("a Python exception in a method is amlr_error_python, its traceback kept out of the message", {
  for (bridge in available_bridges()) {
    local({
      local_python_patch(bridge, raising_method, undo = "import amlr.api; amlr.api.METHODS.pop('test_raise', None)")
      err <- with_bridge(bridge, expect_error(amlr_call("test_raise"), class = "amlr_error_python"))
      expect_s3_class(err, "amlr_error")
      expect_match(conditionMessage(err), "ZeroDivisionError: the test method divided by zero", fixed = TRUE)
      expect_no_match(conditionMessage(err), "Traceback", fixed = TRUE)
      expect_no_match(conditionMessage(err), "File \"", fixed = TRUE)
      # The traceback is kept on the condition, for whoever debugs amlr itself.
      expect_match(err$python_traceback, "Traceback (most recent call last)", fixed = TRUE)
      expect_match(err$python_traceback, "_test_raise", fixed = TRUE)
    })
  }
})

not_json <- c(
  "import amlr.api",
  "amlr.api._real_handle_json = amlr.api.handle_json",
  "amlr.api.handle_json = lambda text: 'Warning: something printed this instead of JSON'"
)

test_that("an answer that is not JSON is amlr_error_bridge on both bridges", {
  for (bridge in available_bridges()) {
    local({
      local_python_patch(bridge, not_json, undo = c(
        "import amlr.api",
        "amlr.api.handle_json = amlr.api._real_handle_json"
      ))
      err <- with_bridge(bridge, expect_error(amlr_call("ping"), class = "amlr_error_bridge"))
      expect_match(conditionMessage(err), "not JSON", fixed = TRUE)
      expect_match(conditionMessage(err), "something printed this instead", fixed = TRUE)
      expect_match(conditionMessage(err), "amlr_doctor()", fixed = TRUE)
    })
    # The patch is gone: the bridge answers again.
    expect_identical(with_bridge(bridge, amlr_call("ping"))$amlr, as.character(utils::packageVersion("amlr")))
  }
})

test_that("an unknown method is amlr_error_bad_request naming the method", {
  errs <- on_each_bridge(function(bridge) {
    expect_error(amlr_call("no_such_method"), class = "amlr_error_bad_request")
  })
  for (err in errs) expect_match(conditionMessage(err), "Unknown method `no_such_method`", fixed = TRUE)
})

test_that("system2 says which interpreter failed when Python dies before answering", {
  fake <- file.path(withr::local_tempdir(), "python")
  writeLines(c("#!/bin/sh", "echo 'fatal: this interpreter is broken' >&2", "exit 7"), fake)
  Sys.chmod(fake, "755")
  withr::local_options(amlr.python = fake)
  err <- with_bridge("system2", expect_error(amlr_call("ping"), class = "amlr_error_bridge"))
  expect_match(conditionMessage(err), "exit status 7", fixed = TRUE)
  expect_match(conditionMessage(err), "this interpreter is broken", fixed = TRUE)
  expect_match(conditionMessage(err), fake, fixed = TRUE)
})

test_that("a Python that cannot load amlr is amlr_error_bridge on both bridges", {
  # system2: a fresh process whose `import amlr` fails.
  local({
    local_python_patch("system2", c("import sys", "sys.modules['amlr.api'] = None"), undo = character())
    err <- with_bridge("system2", expect_error(amlr_call("ping"), class = "amlr_error_bridge"))
    expect_match(conditionMessage(err), "failed (exit status 1) before it could answer", fixed = TRUE)
    expect_match(conditionMessage(err), "import of amlr.api halted", fixed = TRUE)
  })
  # reticulate: the embedded session loads amlr.api once; make that load fail.
  skip_if_no_reticulate()
  with_bridge("reticulate", amlr_call("ping"))
  api <- bridge_env$api
  withr::defer({
    reticulate::py_run_string("import sys; sys.modules['amlr.api'] = _amlr_api_saved")
    bridge_env$api <- api
  })
  reticulate::py_run_string("import sys; _amlr_api_saved = sys.modules['amlr.api']; sys.modules['amlr.api'] = None")
  bridge_env$api <- NULL
  err <- with_bridge("reticulate", expect_error(amlr_call("ping"), class = "amlr_error_bridge"))
  expect_match(conditionMessage(err), "could not load amlr's Python side", fixed = TRUE)
  expect_match(conditionMessage(err), "import of amlr.api halted", fixed = TRUE)
  expect_match(conditionMessage(err), "amlr_doctor()", fixed = TRUE)
})

test_that("the reticulate bridge hands R's AMLR_ and AZURE_ variables to the embedded Python", {
  skip_if_no_reticulate()
  with_bridge("reticulate", amlr_call("ping"))
  os <- reticulate::import("os", convert = TRUE)
  withr::with_envvar(c(AMLR_TEST_SYNC = "from-R", AZURE_TEST_SYNC = "also-from-R"), {
    with_bridge("reticulate", amlr_call("ping"))
    expect_identical(os$environ$get("AMLR_TEST_SYNC"), "from-R")
    expect_identical(os$environ$get("AZURE_TEST_SYNC"), "also-from-R")
  })
  # Unset in R, gone in Python at the next call.
  with_bridge("reticulate", amlr_call("ping"))
  expect_null(os$environ$get("AMLR_TEST_SYNC"))
})
