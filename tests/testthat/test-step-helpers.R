test_that("step helpers read the bootstrapper's variables", {
  out <- withr::local_tempdir()
  withr::local_envvar(AMLR_IN_STEP = "1", AMLR_INPUT_data = "/some/data.csv",
                      AMLR_OUTPUT_model = file.path(out, "model", "deep"))
  expect_equal(step_input("data"), "/some/data.csv")
  path <- step_output("model")
  expect_true(dir.exists(path))
  err <- expect_error(step_input("nope"), class = "amlr_error_not_in_step")
  expect_match(conditionMessage(err), "data")
})

test_that("outside a step, inputs error and metrics are not recorded", {
  withr::local_envvar(AMLR_IN_STEP = NA, AMLR_METRICS_FILE = NA, AMLR_INPUT_data = NA)
  err <- expect_error(step_input("data"), class = "amlr_error_not_in_step")
  expect_match(conditionMessage(err), "not running as an amlr step")
  expect_message(log_metric("rmse", 1), "not recorded")
})

test_that("log_metric() appends JSON lines, repeated names make a series", {
  file <- withr::local_tempfile(fileext = ".jsonl")
  withr::local_envvar(AMLR_METRICS_FILE = file)
  log_metric("loss", 0.5)
  log_metric("loss", 0.25)
  log_metric("stage", "done")
  lines <- lapply(readLines(file), jsonlite::fromJSON)
  expect_equal(vapply(lines, `[[`, "", "name"), c("loss", "loss", "stage"))
  expect_equal(lines[[2]]$value, 0.25)
  expect_equal(lines[[3]]$value, "done")
  expect_error(log_metric("x", 1:3), class = "amlr_error")
})
