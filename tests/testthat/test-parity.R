# A step behaves the same on every backend: placeholders in args, step env,
# ./outputs, options, precise reuse. Local runs here; the Azure mappings are
# checked in tests/python (test_runtime_emulation.py, test_backend_*.py).

# An Azure ML sample-style script (optparse, --data_folder), used unchanged.
accidents_r <- c(
  'library(optparse)',
  'options <- list(make_option(c("-d", "--data_folder"), default = "./data"))',
  'opt <- parse_args(OptionParser(option_list = options))',
  'accidents <- readRDS(file.path(opt$data_folder, "accidents.Rd"))',
  'summary(accidents)',
  'mod <- glm(dead ~ dvcat + seatbelt + frontal + sex + ageOFocc + yearVeh + airbag + occRole,',
  '           family = binomial, data = accidents)',
  'cat("Accuracy:", round(mean((predict(mod, type = "response") > 0.5) == (accidents$dead == "dead")), 3), "\\n")',
  'dir.create("outputs", showWarnings = FALSE)',
  'saveRDS(mod, file = "./outputs/model.rds")',
  'message("Model saved")'
)

make_accidents <- function(dir, n = 200, seed = 1) {
  set.seed(seed)
  d <- data.frame(
    dead = factor(sample(c("alive", "dead"), n, TRUE)), dvcat = factor(sample(c("1-9", "10-24"), n, TRUE)),
    seatbelt = factor(sample(c("none", "belted"), n, TRUE)), frontal = sample(0:1, n, TRUE),
    sex = factor(sample(c("f", "m"), n, TRUE)), ageOFocc = sample(16:80, n, TRUE), yearVeh = sample(1990:2002, n, TRUE),
    airbag = factor(sample(c("none", "airbag"), n, TRUE)), occRole = factor(sample(c("driver", "pass"), n, TRUE))
  )
  data <- file.path(dir, "data")
  dir.create(data, showWarnings = FALSE)
  saveRDS(d, file.path(data, "accidents.Rd"))
  data
}

test_that("an optparse script written for Azure ML runs unchanged with ${{inputs.data}}, and its ./outputs are kept", {
  skip_if_no_rscript()
  skip_if_not_installed("optparse")
  local_amlr_home()
  src <- write_scripts(accidents.R = accidents_r)
  data <- make_accidents(withr::local_tempdir())
  step <- r_step(file.path(src, "accidents.R"), args = c("--data_folder", "${{inputs.data}}"),
                 inputs = list(data = data))
  run <- suppressMessages(submit_r_pipeline(step, quiet = TRUE))
  expect_equal(run$status, "Completed")
  expect_true(any(grepl("^Accuracy:", run_logs(run))))
  dest <- withr::local_tempdir()
  got <- suppressMessages(run_download(run, output = "outputs", dest = dest))
  expect_true(file.exists(file.path(dest, "accidents", "outputs", "model.rds")))
  expect_s3_class(readRDS(file.path(dest, "accidents", "outputs", "model.rds")), "glm")

  # The data changed: the path in args is the same, but the step runs again.
  make_accidents(dirname(data), seed = 2)
  again <- suppressMessages(submit_r_pipeline(step, quiet = TRUE))
  expect_false(run_steps(again)$reused)
  third <- suppressMessages(submit_r_pipeline(step, quiet = TRUE))
  expect_true(run_steps(third)$reused)
  expect_identical(run_steps(third)$reused_from, again$id)

  # The exported v2 job runs the same contract: the placeholder is in it, the command binds the input.
  skip_if_not_installed("yaml")
  out <- withr::local_tempdir()
  suppressMessages(export_pipeline(step, file.path(out, "accidents.yml")))
  job <- yaml::read_yaml(file.path(out, "accidents.yml"))$jobs$accidents
  expect_match(job$command, "--input data ${{inputs.data}}", fixed = TRUE)
  contract <- jsonlite::read_json(file.path(out, job$code, "_amlr", "steps", "accidents.json"), simplifyVector = TRUE)
  expect_identical(contract$args, c("--data_folder", "${{inputs.data}}"))
})

test_that("placeholders, env, outputs: what a step gets, and what counts for reuse", {
  skip_if_no_rscript()
  local_amlr_home()
  src <- write_scripts(s.R = c(
    'a <- commandArgs(TRUE)',
    'writeLines(c(a, Sys.getenv("N_TREES"), Sys.getenv("AMLR_TEST_SESSION_VAR", "unset")),',
    '           file.path(a[2], "seen.txt"))'
  ))
  step <- function(n) r_step(file.path(src, "s.R"), args = c("--out", "${{outputs.model}}", "it's \"q\""),
                             outputs = "model", env = c(N_TREES = n))
  withr::local_envvar(AMLR_TEST_SESSION_VAR = "from the session")
  run <- suppressMessages(submit_r_pipeline(step("10"), quiet = TRUE))
  dest <- withr::local_tempdir()
  suppressMessages(run_download(run, output = "model", dest = dest))
  seen <- readLines(file.path(dest, "s", "model", "seen.txt"))
  expect_identical(seen[1], "--out")
  expect_identical(seen[3:5], c("it's \"q\"", "10", "unset"))  # session variables do not leak into steps
  again <- suppressMessages(submit_r_pipeline(step("10"), quiet = TRUE))
  expect_true(run_steps(again)$reused)
  changed <- suppressMessages(submit_r_pipeline(step("500"), quiet = TRUE))
  expect_false(run_steps(changed)$reused)
  forced <- suppressMessages(submit_r_pipeline(step("500"), quiet = TRUE, regenerate_outputs = TRUE))
  expect_false(run_steps(forced)$reused)
})

test_that("the README example: report args re-run only report; pipeline.R edits re-run nothing; a helper re-runs its users", {
  skip_if_no_rscript()
  local_amlr_home()
  src <- withr::local_tempdir()
  writeLines('f <- function(x) x * 2', file.path(src, "helpers.R"))
  writeLines(c('write.csv(mtcars, file.path(amlr::step_output("data"), "cars.csv"))'), file.path(src, "prepare.R"))
  writeLines(c('source("helpers.R")', 'd <- read.csv(file.path(amlr::step_input("data"), "cars.csv"))',
               'saveRDS(f(nrow(d)), file.path(amlr::step_output("model"), "m.rds"))'), file.path(src, "train.R"))
  writeLines('cat(nrow(read.csv(file.path(amlr::step_input("data"), "cars.csv"))), "\\n")',
             file.path(src, "summarise.R"))
  writeLines('cat(commandArgs(TRUE), readRDS(file.path(amlr::step_input("model"), "m.rds")), "\\n")',
             file.path(src, "report.R"))
  writeLines(c('library(amlr)', '# builds the pipeline', 'p <- NULL'), file.path(src, "pipeline.R"))
  pipe <- function(title) {
    prepare <- r_step(file.path(src, "prepare.R"), outputs = "data")
    train <- r_step(file.path(src, "train.R"), inputs = list(data = output_of(prepare, "data")), outputs = "model")
    summarise <- r_step(file.path(src, "summarise.R"), inputs = list(data = output_of(prepare, "data")))
    report <- r_step(file.path(src, "report.R"), args = title, inputs = list(model = output_of(train, "model")))
    r_pipeline(prepare, train, summarise, report)
  }
  reused <- function(run) stats::setNames(run_steps(run)$reused, run_steps(run)$step)
  suppressMessages(submit_r_pipeline(pipe("A"), quiet = TRUE))
  run <- suppressMessages(submit_r_pipeline(pipe("B"), quiet = TRUE))
  expect_identical(reused(run)[c("prepare", "train", "summarise", "report")], c(prepare = TRUE, train = TRUE,
                                                                                summarise = TRUE, report = FALSE))
  cat("# edited\n", file = file.path(src, "pipeline.R"), append = TRUE)
  run <- suppressMessages(submit_r_pipeline(pipe("B"), quiet = TRUE))
  expect_true(all(reused(run)))
  writeLines('f <- function(x) x * 3', file.path(src, "helpers.R"))
  run <- suppressMessages(submit_r_pipeline(pipe("B"), quiet = TRUE))
  expect_identical(reused(run)[c("prepare", "train", "summarise", "report")], c(prepare = TRUE, train = FALSE,
                                                                                summarise = TRUE, report = FALSE))
  # A reused step's log is the log of the run that executed it, headed by where it came from.
  logs <- run_logs(run, step = "summarise")
  expect_true(any(grepl("^amlr: reused step", logs)))
  expect_true(any(grepl("^32", logs)))
})

test_that("bad step arguments and options are classed errors before anything runs", {
  local_amlr_home()
  src <- write_scripts(a.R = "cat(1)")
  script <- file.path(src, "a.R")
  expect_error(r_step(script, args = c("a", NA)), "NA", class = "amlr_error_invalid_spec")
  expect_error(r_step(script, args = list("a", 1)), "list", class = "amlr_error_invalid_spec")
  expect_error(r_step(script, args = c(alpha = "0.1")), "--alpha", class = "amlr_error_invalid_spec")
  expect_error(r_step(script, args = "${{inputs.data}}"), "names no input", class = "amlr_error_invalid_spec")
  expect_error(r_step(script, args = "${{search.x}}"), "not a placeholder", class = "amlr_error_invalid_spec")
  expect_error(r_step(script, env = c("1BAD" = "x")), "not valid", class = "amlr_error_invalid_spec")
  expect_error(r_step(script, env = "x"), "named", class = "amlr_error_invalid_spec")
  expect_error(r_step(script, outputs = "outputs") |> submit_r_pipeline(quiet = TRUE), "reserved",
               class = "amlr_error_invalid_spec")
  expect_error(submit_r_pipeline(r_step(script), max_paralel = 2, quiet = TRUE), "max_parallel",
               class = "amlr_error_bad_option")
  expect_error(submit_r_pipeline(r_step(script), allow_reuse = FALSE, quiet = TRUE), "Unknown option",
               class = "amlr_error_bad_option")
  expect_error(submit_r_pipeline(r_step(script), regenerate_outputs = "yes", quiet = TRUE), "TRUE or FALSE",
               class = "amlr_error_bad_option")
  expect_equal(nrow(run_list()), 0L)  # nothing was recorded
})

test_that("the classic backend says once per session that its SDK is past its end of support", {
  env <- amlr:::bridge_env
  old <- env$classic_notice_shown
  withr::defer(env$classic_notice_shown <- old)
  env$classic_notice_shown <- NULL
  expect_message(amlr:::classic_sdk_notice(), "end of support on 2026-06-30", class = "amlr_classic_notice")
  expect_silent(amlr:::classic_sdk_notice())
})

test_that("run_prune() deletes old runs and the stored files only they use, and a dry run touches nothing", {
  skip_if_no_rscript()
  home <- local_amlr_home()
  src <- write_scripts(job.R = 'writeLines(strrep("x", 1e5), file.path(amlr::step_output("o"), "x.txt"))')
  writeBin(as.raw(rep(1:255, 4000)), file.path(src, "data.bin"))  # ~1 MB of data in the snapshot
  step <- r_step(file.path(src, "job.R"), outputs = "o", allow_reuse = FALSE)
  ids <- vapply(1:3, function(i) suppressMessages(submit_r_pipeline(step, quiet = TRUE))$id, "")
  objects <- function() length(list.files(file.path(home, "objects"), recursive = TRUE))
  stored <- objects()
  expect_gt(stored, 0)
  dry <- suppressMessages(run_prune(keep = 1, dry_run = TRUE))
  expect_setequal(dry$runs, ids[1:2])
  expect_gt(dry$bytes, 2e5)  # their outputs; the shared snapshot files stay with the kept run
  expect_lt(dry$bytes, 1e6)
  expect_equal(nrow(run_list()), 3L)
  done <- suppressMessages(run_prune(keep = 1))
  expect_setequal(run_list()$id, ids[3])
  expect_false(any(dir.exists(file.path(home, "runs", ids[1:2]))))
  expect_equal(objects(), stored)  # still used by the kept run
  suppressMessages(run_prune(keep = 0))
  expect_equal(nrow(run_list()), 0L)
  expect_equal(objects(), 0L)
  expect_error(run_prune(), "Say which runs", class = "amlr_error_bad_request")
  expect_error(run_prune(keep = -1), "whole number", class = "amlr_error_bad_request")
})

test_that("an unchanged folder resubmitted stores next to nothing", {
  skip_if_no_rscript()
  home <- local_amlr_home()
  src <- write_scripts(job.R = 'cat("ok\\n")')
  writeBin(as.raw(rep(1:255, 20000)), file.path(src, "big.bin"))  # 5 MB
  step <- r_step(file.path(src, "job.R"), allow_reuse = FALSE)
  suppressMessages(submit_r_pipeline(step, quiet = TRUE))
  blocks <- function() {
    out <- system2("du", c("-sk", shQuote(home)), stdout = TRUE)
    as.numeric(strsplit(out, "\t")[[1]][1])
  }
  before <- blocks()
  suppressMessages(submit_r_pipeline(step, quiet = TRUE))
  expect_lt(blocks() - before, 1024)  # KB: the 5 MB file is a hard link, not a copy
})

test_that("run_logs() pages: the first or last n lines of each step", {
  skip_if_no_rscript()
  local_amlr_home()
  src <- write_scripts(many.R = 'for (i in 1:5000) cat("line", i, "\\n")')
  run <- suppressMessages(submit_r_pipeline(file.path(src, "many.R"), quiet = TRUE))
  all <- run_logs(run)
  expect_equal(length(all), 5001L)  # and the final line
  expect_equal(as.character(run_logs(run, n = 2)), c("line 1 ", "line 2 "))
  last <- run_logs(run, n = 2, tail = TRUE)
  expect_equal(as.character(last), c("line 5000 ", "Pipeline step execution returned 0"))
  expect_equal(attr(last, "step"), c("many", "many"))
  expect_length(run_logs(run, n = 0), 0L)
  expect_error(run_logs(run, n = -1), "whole number", class = "amlr_error_bad_request")
})

test_that("args that are a matrix or a function are refused, not coerced", {
  src <- write_scripts(a.R = "cat(1)")
  expect_error(r_step(file.path(src, "a.R"), args = matrix(c("a", "b"), 1)), "matrix",
               class = "amlr_error_invalid_spec")
  expect_error(r_step(file.path(src, "a.R"), args = function() 1), "character vector",
               class = "amlr_error_invalid_spec")
})
