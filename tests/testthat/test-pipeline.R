test_that("r_step() records the script relative to its folder and a valid default name", {
  dir <- write_scripts("01 Prepare-Data.R" = "cat(1)")
  s <- r_step(file.path(dir, "01 Prepare-Data.R"), outputs = "data")
  expect_s3_class(s, "amlr_step")
  expect_equal(s$script, "01 Prepare-Data.R")
  expect_equal(s$name, "step_01_prepare_data")
  expect_equal(s$source_dir, normalizePath(dir, winslash = "/"))
})

test_that("r_step() rejects a missing script and a script outside source_dir", {
  dir <- write_scripts(a.R = "1")
  other <- write_scripts(b.R = "1")
  expect_error(r_step(file.path(dir, "nope.R")), class = "amlr_error_invalid_spec")
  expect_error(r_step(file.path(other, "b.R"), source_dir = dir), "outside", class = "amlr_error_invalid_spec")
  expect_error(r_step(file.path(dir, "a.R"), inputs = list("x.csv")), class = "amlr_error_invalid_spec")
})

test_that("output_of() checks the output exists on the step", {
  dir <- write_scripts(a.R = "1")
  a <- r_step(file.path(dir, "a.R"), outputs = "data")
  expect_equal(unclass(output_of(a, "data")), list(type = "step_output", step = "a", output = "data"))
  expect_error(output_of(a, "model"), "no output", class = "amlr_error_invalid_spec")
  expect_equal(output_of("a", "anything")$step, "a")
})

test_that("r_pipeline() orders steps by their links and prints them", {
  dir <- write_scripts(prepare.R = "1", train.R = "1", report.R = "1")
  prepare <- r_step(file.path(dir, "prepare.R"), outputs = "data")
  train <- r_step(file.path(dir, "train.R"), inputs = list(data = output_of(prepare, "data")), outputs = "model")
  report <- r_step(file.path(dir, "report.R"), inputs = list(model = output_of(train, "model")))
  p <- r_pipeline(report, train, prepare, name = "cars")
  expect_equal(p$order, c("prepare", "train", "report"))
  out <- format(p)
  expect_match(out[1], "cars: 3 steps")
  expect_true(any(grepl("data <- prepare\\$data", out)))
  expect_output(print(p), "1. prepare")
})

test_that("the validator's errors come back classed and name the field", {
  dir <- write_scripts(a.R = "1", b.R = "1")
  a <- r_step(file.path(dir, "a.R"), outputs = "o")
  dup <- r_step(file.path(dir, "b.R"), name = "a")
  err <- expect_error(r_pipeline(a, dup), class = "amlr_error_invalid_spec")
  expect_equal(err$field, "steps[a].name")
  expect_match(conditionMessage(err), "unique")

  b <- r_step(file.path(dir, "b.R"), inputs = list(x = output_of("ghost", "o")))
  err <- expect_error(r_pipeline(a, b), class = "amlr_error_invalid_spec")
  expect_match(conditionMessage(err), "no step `ghost`")

  bad <- r_step(file.path(dir, "b.R"), name = "Bad-Name")
  err <- expect_error(r_pipeline(bad), class = "amlr_error_invalid_spec")
  expect_match(conditionMessage(err), "bad_name")

  missing <- r_step(file.path(dir, "b.R"), inputs = list(d = file.path(dir, "missing.csv")))
  err <- expect_error(r_pipeline(missing), class = "amlr_error_invalid_spec")
  expect_equal(err$field, "steps[b].inputs.d")
})

test_that("a cycle is reported with its path", {
  dir <- write_scripts(a.R = "1", b.R = "1")
  a <- r_step(file.path(dir, "a.R"), inputs = list(x = output_of("b", "o")), outputs = "o")
  b <- r_step(file.path(dir, "b.R"), inputs = list(x = output_of("a", "o")), outputs = "o")
  err <- expect_error(r_pipeline(a, b), class = "amlr_error_invalid_spec")
  expect_match(conditionMessage(err), "a -> b -> a")
})

test_that("the graph exports as Mermaid and DOT and plots", {
  dir <- write_scripts(a.R = "1", b.R = "1", c.R = "1")
  a <- r_step(file.path(dir, "a.R"), outputs = "d")
  b <- r_step(file.path(dir, "b.R"), inputs = list(d = output_of(a, "d")))
  c <- r_step(file.path(dir, "c.R"), inputs = list(d = output_of(a, "d")))
  p <- r_pipeline(a, b, c, name = "g")
  mm <- format(p, format = "mermaid")
  expect_equal(mm[1], "flowchart LR")
  expect_true(all(c("  a -->|d| b", "  a -->|d| c") %in% mm))
  dot <- format(p, format = "dot")
  expect_true('  "a" -> "b" [label="d"];' %in% dot)
  file <- withr::local_tempfile(fileext = ".pdf")
  grDevices::pdf(file)
  expect_invisible(plot(p))
  grDevices::dev.off()
  expect_gt(file.size(file), 1000)
})
