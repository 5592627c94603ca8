fit_script <- c(
  'a <- as.numeric(commandArgs(TRUE))',
  'if (a[1] > 5) stop("alpha too large")',
  'writeLines(paste(a, collapse = " "), file.path(amlr::step_output("model"), "values.txt"))',
  'amlr::log_metric("loss", 100)',
  'amlr::log_metric("loss", (a[1] - 0.3)^2 + a[2])'
)

test_that("r_sweep() runs a grid of real trials, the best feeding the next step", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(fit.R = fit_script,
                       report.R = 'cat("best:", readLines(file.path(amlr::step_input("model"), "values.txt")), "\\n")')
  fit <- r_step(file.path(dir, "fit.R"), args = c("${{search_space.alpha}}", "${{search_space.depth}}"),
                outputs = "model")
  sw <- r_sweep(fit, params = list(alpha = c(0.1, 0.3, 9), depth = 0:1), objective = "loss", max_concurrent = 2)
  expect_s3_class(sw, "amlr_sweep")
  expect_equal(sw$n_runs, 6L)
  expect_message(print(sw), "6 trials")
  report <- r_step(file.path(dir, "report.R"), inputs = list(model = output_of(sw, "model")))
  out <- capture.output(run <- submit_r_pipeline(r_pipeline(sw, report), quiet = FALSE), type = "output")
  expect_equal(run$status, "Completed")
  expect_true(any(grepl("best: 0.3 0", out)))
  trials <- run_trials(run)
  expect_s3_class(trials, "amlr_trials")
  expect_equal(nrow(trials), 6L)
  expect_equal(sort(unique(trials$alpha)), c(0.1, 0.3, 9))
  expect_equal(sum(trials$status == "Failed"), 2L)
  expect_equal(trials$objective[trials$best], 0)
  expect_s3_class(trials$duration, "difftime")
  expect_message(capture.output(print(trials)), "4/6 trials completed")
  expect_output(suppressMessages(print(trials)), "exit code 1")
  pdf(NULL)
  on.exit(grDevices::dev.off(), add = TRUE)
  expect_silent(plot(run))
})

test_that("a rerun with one more value runs one trial; random sampling is seeded and recorded", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(fit.R = fit_script)
  fit <- r_step(file.path(dir, "fit.R"), args = c("${{search_space.alpha}}", "${{search_space.depth}}"),
                outputs = "model")
  submit_r_pipeline(r_sweep(fit, list(alpha = c(0.1, 0.3), depth = 1), "loss"), quiet = TRUE)
  run <- submit_r_pipeline(r_sweep(fit, list(alpha = c(0.1, 0.3, 0.5), depth = 1), "loss"), quiet = TRUE)
  expect_equal(run_trials(run)$reused, c(TRUE, TRUE, FALSE))

  rnd <- r_sweep(fit, list(alpha = uniform(0, 1), depth = randint(3)), "loss", sampling = "random", max_trials = 3)
  expect_true(is.numeric(rnd$fanout$seed))
  expect_message(print(rnd), "seed")
  a <- submit_r_pipeline(rnd, quiet = TRUE)
  b <- submit_r_pipeline(rnd, quiet = TRUE)
  expect_equal(attr(run_trials(a), "seed"), rnd$fanout$seed)
  expect_true(all(run_trials(b)$reused))
  expect_equal(run_trials(a)$alpha, run_trials(b)$alpha)
})

test_that("r_map() over the files of a folder gathers a folder per item and lists failed items", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(
    count.R = c('f <- commandArgs(TRUE)[1]', 'if (grepl("bad", f)) stop("unreadable")',
                'writeLines(as.character(nrow(read.csv(f))), file.path(amlr::step_output("n"), "n.txt"))'),
    total.R = 'cat(sort(list.files(amlr::step_input("n"), recursive = TRUE)), sep = "\\n")'
  )
  data <- withr::local_tempdir("scans-")
  write.csv(mtcars[1:3, ], file.path(data, "a.csv"))
  write.csv(mtcars[1:5, ], file.path(data, "b.csv"))
  writeLines("x", file.path(data, "bad.csv"))
  m <- r_map(r_step(file.path(dir, "count.R"), args = "${{item}}", outputs = "n"), over = files_of(data))
  expect_s3_class(m, "amlr_map")
  expect_message(print(m), "the files of")
  total <- r_step(file.path(dir, "total.R"), inputs = list(n = output_of(m, "n")))
  run <- submit_r_pipeline(r_pipeline(m, total), quiet = TRUE)
  expect_equal(run$status, "Completed")
  items <- run_trials(run, "count")
  expect_equal(items$item, c("a.csv", "b.csv", "bad.csv"))
  expect_equal(items$status, c("Completed", "Completed", "Failed"))
  expect_equal(as.vector(unclass(run_logs(run, "total")))[1:2], c("a.csv/n.txt", "b.csv/n.txt"))
  expect_error(plot(items), class = "amlr_error_bad_request")
})

test_that("bad sweeps and maps are classed errors naming the fix", {
  dir <- write_scripts(fit.R = "1")
  fit <- r_step(file.path(dir, "fit.R"), args = "${{search_space.alpha}}")
  expect_error(r_sweep(fit, list(alhpa = 1:3), "loss"), "names no parameter", class = "amlr_error_invalid_spec")
  expect_error(r_sweep(fit, list(alpha = numeric()), "loss"), "no values", class = "amlr_error_invalid_spec")
  expect_error(r_sweep(fit, list(alpha = 1:3, beta = 1:3), "loss", max_trials = 4), "sampling = \"random\"",
               class = "amlr_error_invalid_spec")
  expect_error(r_sweep(fit, list(alpha = 1:100, b = 1:100), "loss"), "limit of 1000",
               class = "amlr_error_invalid_spec")
  expect_error(r_sweep(fit, list(alpha = c(1, NA)), "loss"), "NA", class = "amlr_error_invalid_spec")
  expect_error(r_sweep(fit, list(`learning rate` = 1, alpha = 1), "loss"), "learning_rate",
               class = "amlr_error_invalid_spec")
  expect_error(r_sweep(fit, list(1:3), "loss"), "named list", class = "amlr_error_invalid_spec")
  expect_error(r_sweep(fit, list(alpha = 1), "loss", early_termination = list(type = "bandit")), "policy",
               class = "amlr_error_invalid_spec")
  expect_error(r_sweep(r_sweep(fit, list(alpha = 1), "loss"), list(alpha = 1), "loss"), "Nesting",
               class = "amlr_error_invalid_spec")
  one <- r_step(file.path(dir, "fit.R"), args = "${{item}}")
  expect_error(r_map(one, over = character()), "empty", class = "amlr_error_invalid_spec")
  expect_error(r_map(one, over = list(1, 2)), "vector of values", class = "amlr_error_invalid_spec")
  expect_error(r_map(fit, over = 1:3), "not in an r_sweep", class = "amlr_error_invalid_spec")
  expect_error(files_of(file.path(dir, "nope")), "not a folder", class = "amlr_error_invalid_spec")
  expect_error(submit_r_pipeline(fit, quiet = TRUE), "not in an r_sweep", class = "amlr_error_invalid_spec")
})

test_that("distribution helpers and policies print what Azure ML will get", {
  expect_output(print(choice(0.1, 1)), "choice\\(0.1, 1\\)")
  expect_output(print(loguniform(log(1e-4), 0)), "loguniform")
  expect_output(print(randint(5)), "randint\\(5\\)")
  expect_output(print(bandit_policy(slack_factor = 0.1)), "bandit")
  expect_s3_class(median_stopping_policy(), "amlr_policy")
  expect_s3_class(truncation_selection_policy(20), "amlr_policy")
})

test_that("a sweep exports to YAML that names the sweep node", {
  dir <- write_scripts(fit.R = "1")
  fit <- r_step(file.path(dir, "fit.R"), args = c("${{search_space.alpha}}"), outputs = "model",
                environment = r_environment(image = "rocker/r-ver:4.4.1"))
  sw <- r_sweep(fit, list(alpha = c(0.1, 1)), "loss", goal = "maximize",
                early_termination = bandit_policy(slack_factor = 0.2))
  path <- file.path(withr::local_tempdir(), "p.yml")
  export_pipeline(r_pipeline(sw), path)
  text <- readLines(path)
  expect_true(any(grepl("type: sweep", text)))
  expect_true(any(grepl("primary_metric: loss", text)))
  expect_true(any(grepl("goal: maximize", text)))
  expect_error(submit_r_pipeline(sw, backend = "azureml", quiet = TRUE), class = "amlr_error")
})

test_that("waiting counts a sweep's trials and announces only failed ones", {
  state <- new.env(parent = emptyenv())
  state$steps <- list(); state$done <- 0L; state$running <- character(); state$fan <- list(); state$many <- TRUE
  state$bar <- NULL
  st <- function(name, status, error = NULL) list(name = name, status = status, error = error)
  trials <- sprintf("fit__%010x", 1:3)
  expect_equal(amlr:::fanout_group(c(trials[1], "fit", "a__b")), c("fit", NA, NA))
  amlr:::report_steps(lapply(c(trials, "fit"), st, status = "Queued"), state, 4L)
  expect_equal(state$fan$fit, c(0L, 3L))
  expect_silent(amlr:::report_steps(list(st(trials[1], "Completed")), state, 4L))
  expect_message(amlr:::report_steps(list(st(trials[2], "Failed", "exit code 1")), state, 4L), "fit__0000000002")
  expect_equal(state$fan$fit, c(2L, 3L))
  expect_message(amlr:::report_steps(list(st("fit", "Completed")), state, 4L), "Step fit completed")
})

test_that("a pipeline's listing marks sweeps and maps", {
  dir <- write_scripts(fit.R = "1")
  fit <- r_step(file.path(dir, "fit.R"), args = "${{search_space.alpha}}", outputs = "model")
  each <- r_map(r_step(file.path(dir, "fit.R"), args = "${{item}}", name = "each"), over = c("a", "b"))
  files <- r_map(r_step(file.path(dir, "fit.R"), args = "${{item}}", name = "files"), over = files_of(dir))
  text <- format(r_pipeline(r_sweep(fit, list(alpha = 1:4), "loss"), each, files))
  expect_true(any(grepl("fit (fit.R) [sweep: 4 trials] -> model", text, fixed = TRUE)))
  expect_true(any(grepl("[map: 2 items]", text, fixed = TRUE)))
  expect_true(any(grepl("[map: the files of", text, fixed = TRUE)))
})
