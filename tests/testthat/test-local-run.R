test_that("a script runs locally, streams its output and is recorded", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(hello.R = c('cat("hello", commandArgs(TRUE), "\\n")', 'amlr::log_metric("n", 1)'))
  expect_message(
    out <- capture.output(
      run <- submit_r_pipeline(r_step(file.path(dir, "hello.R"), args = "from R"), experiment = "tests"),
      type = "output"
    ),
    "Submitted run"
  )
  expect_true("hello from R " %in% out)
  expect_s3_class(run, "amlr_run")
  expect_equal(run$status, "Completed")
  expect_equal(run$backend, "local")
  expect_equal(run$experiment, "tests")
  printed <- capture.output(print(run))
  expect_match(printed[1], run$id, fixed = TRUE)
  expect_true(any(grepl("status:\\s+Completed", printed)))
  expect_true(any(grepl("logs:", printed)))

  expect_equal(run_status(), "Completed")
  expect_equal(run_status(run$id), "Completed")
  steps <- run_steps(run)
  expect_equal(names(steps), c("step", "status", "reused", "reused_from", "exit_code", "started", "ended", "duration"))
  expect_equal(steps$exit_code, 0L)
  expect_s3_class(steps$started, "POSIXct")
  logs <- run_logs(run)
  expect_s3_class(logs, "amlr_logs")
  expect_equal(logs[[1]], "hello from R ")
  expect_output(print(logs), "hello from R")
  m <- run_metrics(run)
  expect_equal(m$name, "n")
  expect_equal(m$value, 1)
  runs <- run_list()
  expect_equal(runs$id[1], run$id)
  expect_equal(run_list(experiment = "nope")$id, character())
})

test_that("a failing run signals amlr_run_failed with the step, exit code and log tail", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(bad.R = c('cat("working on it\\n")', 'stop("the model exploded")'))
  err <- expect_error(
    suppressMessages(submit_r_pipeline(file.path(dir, "bad.R"), quiet = TRUE)),
    class = "amlr_run_failed"
  )
  expect_s3_class(err, "amlr_error")
  msg <- conditionMessage(err)
  expect_match(msg, "bad")
  expect_match(msg, "code 1")
  expect_match(msg, "the model exploded")
  expect_s3_class(err$run, "amlr_run")
  expect_equal(run_status(err$run), "Failed")
  expect_equal(run_steps(err$run)$exit_code, 1L)
})

test_that("wait = FALSE returns at once; run_wait() follows; run_cancel() stops it", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(slow.R = c('cat("started\\n")', "Sys.sleep(30)"))
  t0 <- Sys.time()
  run <- submit_r_pipeline(file.path(dir, "slow.R"), wait = FALSE, quiet = TRUE)
  expect_lt(as.numeric(difftime(Sys.time(), t0, units = "secs")), 10)
  expect_true(run_status(run) %in% c("Queued", "Running"))
  waited <- run_wait(run, timeout = 0.5, quiet = TRUE)
  expect_equal(waited$status, "Running")
  expect_message(cancelled <- run_cancel(run), "Canceled")
  expect_equal(cancelled$status, "Canceled")
  expect_equal(run_steps(run)$status, "Canceled")
  expect_message(again <- run_cancel(run), "already ended")
  expect_equal(again$status, "Canceled")
})

test_that("run_wait() streams logs of a background run to the end", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(ticks.R = 'for (i in 1:3) { cat("tick", i, "\\n"); Sys.sleep(0.2) }')
  run <- submit_r_pipeline(file.path(dir, "ticks.R"), wait = FALSE, quiet = TRUE)
  out <- capture.output(done <- suppressMessages(run_wait(run)))
  expect_equal(done$status, "Completed")
  expect_equal(out[1:3], c("tick 1 ", "tick 2 ", "tick 3 "))
})

test_that("a multi-step pipeline passes data, runs branches and reuses steps", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(
    prepare.R = 'write.csv(mtcars, file.path(amlr::step_output("data"), "cars.csv"))',
    train.R = c('d <- read.csv(file.path(amlr::step_input("data"), "cars.csv"))',
                'amlr::log_metric("rows", nrow(d))',
                'saveRDS(lm(mpg ~ wt, d), file.path(amlr::step_output("model"), "m.rds"))'),
    summarise.R = 'd <- read.csv(file.path(amlr::step_input("data"), "cars.csv")); print(summary(d$mpg))',
    report.R = 'm <- readRDS(file.path(amlr::step_input("model"), "m.rds")); cat(coef(m)[[2]], "\\n")'
  )
  prepare <- r_step(file.path(dir, "prepare.R"), outputs = "data")
  train <- r_step(file.path(dir, "train.R"), inputs = list(data = output_of(prepare, "data")), outputs = "model")
  summarise <- r_step(file.path(dir, "summarise.R"), inputs = list(data = output_of(prepare, "data")))
  report <- r_step(file.path(dir, "report.R"), inputs = list(model = output_of(train, "model")))
  p <- r_pipeline(prepare, train, summarise, report, name = "cars")
  out <- capture.output(run <- suppressMessages(submit_r_pipeline(p)))
  expect_equal(run$status, "Completed")
  expect_true(any(startsWith(out, "[report] -5.34")))
  expect_equal(run_metrics(run)$value, 32)
  again <- suppressMessages(submit_r_pipeline(p, quiet = TRUE))
  steps <- run_steps(again)
  expect_true(all(steps$reused))
  expect_true(all(steps$reused_from == run$id))

  dest <- withr::local_tempdir()
  written <- suppressMessages(run_download(run, step = "train", output = "model", dest = dest))
  expect_true(file.exists(file.path(dest, "train", "model", "m.rds")))
  expect_error(suppressMessages(run_download(run, step = "train", output = "model", dest = dest)),
               class = "amlr_error_file_exists")
})

test_that("with no argument, Rscript's own file is submitted and its work is done once, in the step", {
  skip_if_no_rscript()
  home <- local_amlr_home()
  dir <- write_scripts(
    job.R = c('amlr::submit_r_pipeline(quiet = TRUE)',
              'cat("WORK DONE", nzchar(Sys.getenv("AMLR_IN_STEP")), "\\n")')
  )
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), file.path(dir, "job.R"),
                                  stdout = TRUE, stderr = TRUE))
  expect_null(attr(out, "status"))
  expect_false(any(grepl("WORK DONE", out)))  # not again in the outer Rscript
  first <- run_list()$id[1]
  expect_equal(run_status(first), "Completed")
  expect_true(any(grepl("WORK DONE TRUE", run_logs(first))))

  # From source() (RStudio's Source button): the sourcing stops after the submit line.
  out <- system2(file.path(R.home("bin"), "Rscript"),
                 c("-e", shQuote(sprintf('source("%s"); cat("AFTER SOURCE\\n")', file.path(dir, "job.R")))),
                 stdout = TRUE, stderr = TRUE)
  expect_false(any(grepl("WORK DONE|AFTER SOURCE", out)))
  expect_true(any(grepl("ran in the step", out)))
  expect_equal(run_status("latest"), "Completed")
  expect_equal(nrow(run_list()), 2L)
})

test_that("a failed self-submitted run ends Rscript with status 1", {
  skip_if_no_rscript()
  home <- local_amlr_home()
  dir <- write_scripts(job.R = c('amlr::submit_r_pipeline(quiet = TRUE)', 'stop("boom in the step")'))
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), file.path(dir, "job.R"),
                                  stdout = TRUE, stderr = TRUE))
  expect_equal(attr(out, "status"), 1L)
  expect_equal(run_status("latest"), "Failed")
})

test_that("Rscript on a script in a folder with spaces submits that script", {
  # R hands `Rscript "a b/job.R"` over as --file=a~+~b/job.R; amlr must find the file.
  skip_if_no_rscript()
  home <- local_amlr_home()
  dir <- file.path(withr::local_tempdir("amlr-src-"), "my scripts, v2 (final)")
  dir.create(dir)
  writeLines(c('amlr::submit_r_pipeline(quiet = TRUE)', 'cat("STEP RAN", basename(getwd()), "\\n")'),
             file.path(dir, "job one.R"))
  out <- suppressWarnings(system2(file.path(R.home("bin"), "Rscript"), shQuote(file.path(dir, "job one.R")),
                                  stdout = TRUE, stderr = TRUE))
  expect_null(attr(out, "status"), info = paste(out, collapse = "\n"))
  expect_equal(run_status("latest"), "Completed")
  steps <- run_steps("latest")
  expect_equal(nrow(steps), 1L)
  expect_true(any(grepl("STEP RAN", run_logs("latest"))))
})

test_that("with no argument and no script, the error says to pass a path", {
  withr::local_options(amlr.rstudioapi = NULL)
  expect_null(rscript_file(c("R", "--no-echo")))
  expect_error(current_script(doc = NULL, file = NULL), "Pass a path", class = "amlr_error_no_script")
  unsaved <- list(path = "", id = "1", modified = TRUE)
  expect_error(current_script(doc = unsaved, file = NULL), "never been saved", class = "amlr_error_no_script")
  script <- withr::local_tempfile(fileext = ".R")
  writeLines("1", script)
  modified <- list(path = script, id = "1", modified = TRUE)
  expect_warning(expect_equal(current_script(doc = modified, file = NULL), script), "unsaved changes")
})

test_that("several R sessions submitting at once lose no run", {
  skip_if_no_rscript()
  skip_on_cran()
  home <- local_amlr_home()
  dir <- write_scripts(quick.R = 'cat("ok\\n")')
  script <- withr::local_tempfile(fileext = ".R")
  writeLines(c(
    sprintf('script <- "%s"', file.path(dir, "quick.R")),
    'for (i in 1:3) { r <- amlr::submit_r_pipeline(script, quiet = TRUE, wait = FALSE); invisible(amlr::run_list()) }',
    'for (r in amlr::run_list(limit = 0)$id) invisible(amlr::run_wait(r, quiet = TRUE))',
    'cat("DONE\\n")'
  ), script)
  rscript <- file.path(R.home("bin"), "Rscript")
  procs <- lapply(1:4, function(i) processx::process$new(rscript, script, stdout = "|", stderr = "2>&1"))
  for (p in procs) p$wait(120000)
  outputs <- vapply(procs, function(p) paste(p$read_all_output_lines(), collapse = "\n"), "")
  expect_true(all(grepl("DONE", outputs)), info = paste(outputs, collapse = "\n---\n"))
  expect_false(any(grepl("locked", outputs)))
  runs <- run_list(limit = 0)
  expect_equal(nrow(runs), 12)
  for (id in runs$id) run_wait(id, quiet = TRUE)
  expect_true(all(run_list(limit = 0)$status == "Completed"))
})

test_that("interrupting run_wait() detaches and leaves the run going", {
  skip_if_no_rscript()
  skip_on_os("windows")
  home <- local_amlr_home()
  dir <- write_scripts(slow.R = c('cat("step started\\n")', "Sys.sleep(20)"))
  waiter <- withr::local_tempfile(fileext = ".R")
  writeLines(c(
    # The child follows the run over the bridge this test session uses.
    sprintf('options(amlr.bridge = "%s")', getOption("amlr.bridge", "system2")),
    sprintf('run <- amlr::submit_r_pipeline("%s", wait = FALSE, quiet = TRUE)', file.path(dir, "slow.R")),
    'cat("RUN", run$id, "\\n")',
    "amlr::run_wait(run)",
    'cat("AFTER WAIT\\n")'
  ), waiter)
  p <- processx::process$new(file.path(R.home("bin"), "Rscript"), waiter, stdout = "|", stderr = "|",
                             env = c("current", AMLR_HOME = home))
  on.exit(p$kill(), add = TRUE)
  out <- character()
  deadline <- Sys.time() + 30
  while (!any(grepl("step started", out)) && Sys.time() < deadline) {
    p$poll_io(200)
    out <- c(out, p$read_output_lines())
  }
  expect_true(any(grepl("step started", out)))
  id <- sub("^RUN (\\S+).*", "\\1", grep("^RUN", out, value = TRUE))
  p$interrupt()
  p$wait(10000)
  out <- c(out, p$read_all_output_lines())
  err <- p$read_all_error_lines()
  expect_true(any(grepl("Detached from run", err)), info = paste(err, collapse = "\n"))
  # The interrupt still stops the script: nothing after run_wait() runs.
  expect_false("AFTER WAIT" %in% out)
  expect_equal(run_status(id), "Running")
  run_cancel(id)
  expect_equal(run_status(id), "Canceled")
})

test_that("a background run survives the R session that submitted it", {
  skip_if_no_rscript()
  home <- local_amlr_home()
  dir <- write_scripts(slow.R = c("Sys.sleep(2)", 'writeLines("done", file.path(amlr::step_output("o"), "x.txt"))'))
  submitter <- withr::local_tempfile(fileext = ".R")
  writeLines(c(
    sprintf('step <- amlr::r_step("%s", outputs = "o")', file.path(dir, "slow.R")),
    'run <- amlr::submit_r_pipeline(step, wait = FALSE, quiet = TRUE)',
    'cat(run$id, "\\n")'
  ), submitter)
  out <- system2(file.path(R.home("bin"), "Rscript"), submitter, stdout = TRUE,
                 env = paste0("AMLR_HOME=", shQuote(home)))
  id <- trimws(out[length(out)])
  expect_true(run_status(id) %in% c("Queued", "Running"))
  done <- run_wait(id, quiet = TRUE)
  expect_equal(done$status, "Completed")
  dest <- withr::local_tempdir()
  suppressMessages(run_download(id, output = "o", dest = dest))
  expect_equal(readLines(file.path(dest, "slow", "o", "x.txt")), "done")
})

test_that("a failing middle step cancels what depends on it, not the other branch", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(
    a.R = 'writeLines("1", file.path(amlr::step_output("o"), "v"))',
    b.R = c('cat("b saw", readLines(file.path(amlr::step_input("i"), "v")), "\\n")', "quit(status = 3)"),
    c.R = 'cat("never\\n")',
    d.R = c("Sys.sleep(0.5)", 'cat("independent branch finished\\n")')
  )
  a <- r_step(file.path(dir, "a.R"), outputs = "o")
  b <- r_step(file.path(dir, "b.R"), inputs = list(i = output_of(a, "o")), outputs = "o")
  c <- r_step(file.path(dir, "c.R"), inputs = list(i = output_of(b, "o")))
  d <- r_step(file.path(dir, "d.R"))
  err <- expect_error(suppressMessages(submit_r_pipeline(r_pipeline(a, b, c, d, name = "mid"), quiet = TRUE)),
                      class = "amlr_run_failed")
  expect_match(conditionMessage(err), "code 3")
  expect_match(conditionMessage(err), "b saw 1")
  steps <- run_steps(err$run)
  expect_equal(setNames(steps$status, steps$step),
               c(a = "Completed", b = "Failed", c = "Canceled", d = "Completed"))
  expect_equal(steps$exit_code[steps$step == "b"], 3L)
  expect_true("independent branch finished" %in% run_logs(err$run, step = "d"))
  expect_equal(run_status(err$run), "Failed")
})

test_that("a script that submits itself does its work inside the step", {
  skip_if_no_rscript()
  home <- local_amlr_home()
  dir <- write_scripts(analysis.R = c(
    "run <- amlr::submit_r_pipeline(quiet = TRUE)",
    'cat("the analysis: mean mpg =", mean(mtcars$mpg), "\\n")'
  ))
  out <- system2(file.path(R.home("bin"), "Rscript"), file.path(dir, "analysis.R"), stdout = TRUE, stderr = TRUE,
                 env = paste0("AMLR_HOME=", shQuote(home)))
  expect_equal(run_status(), "Completed")
  logs <- run_logs()
  expect_true(any(grepl("Already running as step", logs)))
  expect_true(any(grepl("the analysis: mean mpg = 20.09", logs, fixed = TRUE)))
})

test_that("run_steps() subsets print, metrics keep their digits and times", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(m.R = c('amlr::log_metric("loss", 1/3)', 'amlr::log_metric("note", "text")'))
  run <- suppressMessages(submit_r_pipeline(file.path(dir, "m.R"), quiet = TRUE))
  steps <- run_steps(run)
  expect_output(print(steps[, c("step", "status")]), "Completed")
  expect_output(print(subset(steps, select = c(step, reused))), "FALSE")
  m <- run_metrics(run)
  expect_type(m$value, "double")  # a string metric does not turn the numbers into text
  expect_equal(m$value[m$name == "loss"], 1 / 3, tolerance = 1e-12)
  expect_identical(m$text[m$name == "note"], "text")
  expect_true(is.na(m$value[m$name == "note"]))
  expect_s3_class(run_list()$duration, "difftime")
  expect_s3_class(m$time, "POSIXct")
  expect_false(anyNA(m$time))
})

test_that("run_download() into a relative folder returns absolute paths", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(o.R = 'writeLines("x", file.path(amlr::step_output("out"), "x.txt"))')
  run <- suppressMessages(submit_r_pipeline(r_step(file.path(dir, "o.R"), outputs = "out"), quiet = TRUE))
  withr::local_dir(withr::local_tempdir())
  written <- suppressMessages(run_download(run, output = "out", dest = "results"))
  expect_true(all(startsWith(written, "/")))
  expect_true(file.exists(file.path("results", "o", "out", "x.txt")))
})
