# The catalogue of bad inputs through the R API (issue 12), table-driven.
#
# Each row: an id, what the user does, the class (`amlr_error_<class>`), key
# words of the message, and the call. Every row asserts the class and the
# words, and that nothing was recorded or lost: the runs the registry lists
# and the run folders are the same before and after. The rows (and the
# `cat_fault()` rows below) are rendered into docs/catalogue.md together with
# the Python table; tests/python/test_catalogue.py fails when they drift.
# Keep each `cat_row("id", "what", "class",` on one line: the page is read from it.

cat_row <- function(id, what, class, words, expr) {
  list(id = id, what = what, class = class, words = words, expr = substitute(expr))
}

catalogue <- list(
  # -- submit_r_pipeline() ------------------------------------------------------------------
  cat_row("r-submit-backend-unknown", "`backend = \"aws\"`", "bad_request", c("backend", "local"),
          submit_r_pipeline(script, backend = "aws")),
  cat_row("r-submit-backend-na", "`backend = NA`", "bad_request", c("backend", "NA"),
          submit_r_pipeline(script, backend = NA_character_)),
  cat_row("r-submit-backend-two", "`backend = c(\"local\", \"azureml\")`", "bad_request", c("backend"),
          submit_r_pipeline(script, backend = c("local", "azureml"))),
  cat_row("r-submit-wait-na", "`wait = NA`", "bad_request", c("wait", "TRUE", "NA"),
          submit_r_pipeline(script, wait = NA)),
  cat_row("r-submit-wait-string", "`wait = \"yes\"`", "bad_request", c("wait"),
          submit_r_pipeline(script, wait = "yes")),
  cat_row("r-submit-experiment-number", "`experiment = 5`", "bad_request", c("experiment"),
          submit_r_pipeline(script, experiment = 5)),
  cat_row("r-submit-experiment-slash", "`experiment = \"a/b\"`", "bad_request", c("Experiment name"),
          submit_r_pipeline(script, experiment = "a/b", quiet = TRUE)),
  cat_row("r-submit-max-parallel-text", "`max_parallel = \"abc\"`", "bad_option", c("max_parallel", "whole number"),
          submit_r_pipeline(script, max_parallel = "abc")),
  cat_row("r-submit-max-parallel-zero", "`max_parallel = 0`", "bad_option", c("max_parallel", "1 or more"),
          submit_r_pipeline(script, max_parallel = 0)),
  cat_row("r-submit-max-parallel-negative", "`max_parallel = -3`", "bad_option", c("max_parallel"),
          submit_r_pipeline(script, max_parallel = -3)),
  cat_row("r-submit-max-parallel-fraction", "`max_parallel = 1.5`", "bad_option", c("max_parallel"),
          submit_r_pipeline(script, max_parallel = 1.5)),
  cat_row("r-submit-max-parallel-na", "`max_parallel = NA`", "bad_option", c("max_parallel", "NA"),
          submit_r_pipeline(script, max_parallel = NA)),
  cat_row("r-submit-quiet-na", "`quiet = NA`", "bad_request", c("quiet"),
          submit_r_pipeline(script, quiet = NA)),
  cat_row("r-submit-unnamed-option", "An unnamed value in `...`", "bad_option", c("needs a name"),
          submit_r_pipeline(script, experiment = NULL, backend = "local", workspace = NULL, wait = TRUE, 3)),
  cat_row("r-submit-option-twice", "The same option twice", "bad_option", c("twice"),
          submit_r_pipeline(script, max_parallel = 1, max_parallel = 2)),
  cat_row("r-submit-option-typo", "A misspelt option (`max_paralel = 2`)", "bad_option", c("Unknown option", "max_paralel"),
          submit_r_pipeline(script, max_paralel = 2, quiet = TRUE)),
  cat_row("r-submit-pipeline-number", "`submit_r_pipeline(42)`", "invalid_spec", c("pipeline", "r_step"),
          submit_r_pipeline(42)),
  cat_row("r-submit-pipeline-na", "`submit_r_pipeline(NA_character_)`", "invalid_spec", c("pipeline"),
          submit_r_pipeline(NA_character_)),
  cat_row("r-submit-arg-too-long", "An argument over 128 kB", "argument_too_long", c("128 kB", "as a file"),
          submit_r_pipeline(r_step(script, args = strrep("x", 200000)), quiet = TRUE)),
  cat_row("r-submit-script-ignored", "The script excluded by `.amlignore`", "script_excluded", c(".amlignore", "!ignored.R"),
          submit_r_pipeline(file.path(ignored_dir, "ignored.R"), quiet = TRUE)),
  # -- r_step() -----------------------------------------------------------------------------
  cat_row("r-step-script-na", "`r_step(NA)`", "invalid_spec", c("script"), r_step(NA_character_)),
  cat_row("r-step-script-missing", "A script that does not exist", "invalid_spec", c("does not exist"),
          r_step(file.path(src, "ghost.R"))),
  cat_row("r-step-script-folder", "A folder given as the script", "invalid_spec", c("is a folder", "main.R"),
          r_step(src)),
  cat_row("r-step-script-not-r", "A script that is not `.R`", "invalid_spec", c("not an R script"),
          r_step(file.path(src, "notes.txt"))),
  cat_row("r-step-source-dir-missing", "`source_dir` that does not exist", "invalid_spec", c("source_dir", "not a folder"),
          r_step(script, source_dir = file.path(src, "nope"))),
  cat_row("r-step-outside-source-dir", "A script outside its `source_dir`", "invalid_spec", c("outside"),
          r_step(script, source_dir = file.path(src, "sub"))),
  cat_row("r-step-name-bad", "`name = \"My Step\"`", "invalid_spec", c("not allowed", "my_step"),
          r_pipeline(r_step(script, name = "My Step"))),
  cat_row("r-step-name-na", "`name = NA`", "invalid_spec", c("name"), r_step(script, name = NA_character_)),
  cat_row("r-step-allow-reuse-string", "`allow_reuse = \"yes\"`", "bad_request", c("allow_reuse", "TRUE"),
          r_step(script, allow_reuse = "yes")),
  cat_row("r-step-allow-reuse-na", "`allow_reuse = NA`", "bad_request", c("allow_reuse"),
          r_step(script, allow_reuse = NA)),
  cat_row("r-step-step-type", "`step_type = \"spark\"`", "bad_request", c("step_type", "command"),
          r_step(script, step_type = "spark")),
  cat_row("r-step-compute-number", "`compute = 5`", "bad_request", c("compute"), r_step(script, compute = 5)),
  cat_row("r-step-inputs-vector", "`inputs = \"data.csv\"` (not a list)", "invalid_spec", c("named list"),
          r_step(script, inputs = "data.csv")),
  cat_row("r-step-inputs-unnamed", "`inputs = list(\"data.csv\")`", "invalid_spec", c("needs a name"),
          r_step(script, inputs = list("data.csv"))),
  cat_row("r-step-input-number", "`inputs = list(d = 42)`", "invalid_spec", c("\"d\"", "path, a URI", "42"),
          r_step(script, inputs = list(d = 42))),
  cat_row("r-step-input-na", "`inputs = list(d = NA)`", "invalid_spec", c("\"d\"", "NA"),
          r_step(script, inputs = list(d = NA))),
  cat_row("r-step-input-whole-step", "An input that is a whole step", "invalid_spec", c("whole step", "output_of"),
          r_step(script, inputs = list(d = r_step(script)))),
  cat_row("r-step-input-missing-path", "An input path that does not exist", "invalid_spec", c("does not exist"),
          r_pipeline(r_step(script, inputs = list(d = file.path(src, "nope.csv"))))),
  cat_row("r-step-environment-string", "`environment = \"rocker/r-ver\"` (not an r_environment())", "invalid_environment", c("r_environment()"),
          r_step(script, environment = "rocker/r-ver")),
  cat_row("r-pipeline-environment-number", "`r_pipeline(environment = 3)`", "invalid_environment", c("r_environment()"),
          r_pipeline(r_step(script), environment = 3)),
  cat_row("r-submit-workspace-number", "`submit_r_pipeline(workspace = 3)`", "bad_request", c("aml_workspace()"),
          submit_r_pipeline(script, workspace = 3)),
  cat_row("r-submit-timeout-option", "`submit_r_pipeline(timeout = 5)` (not a local option)", "bad_option", c("Unknown option", "timeout"),
          submit_r_pipeline(script, timeout = 5, quiet = TRUE)),
  cat_row("r-step-outputs-na", "`outputs = NA`", "invalid_spec", c("outputs"), r_step(script, outputs = NA)),
  cat_row("r-step-outputs-number", "`outputs = 1`", "invalid_spec", c("outputs"), r_step(script, outputs = 1)),
  cat_row("r-output-of-unknown", "`output_of(step, \"ghost\")`", "invalid_spec", c("no output", "ghost"),
          output_of(r_step(script, outputs = "m"), "ghost")),
  # -- r_pipeline() ------------------------------------------------------------------------
  cat_row("r-pipeline-empty", "`r_pipeline()` with no steps", "invalid_spec", c("at least one"), r_pipeline()),
  cat_row("r-pipeline-not-step", "`r_pipeline(\"a.R\")` (a path, not a step)", "invalid_spec", c("r_step"),
          r_pipeline("a.R")),
  cat_row("r-pipeline-name-number", "`r_pipeline(name = 5)`", "bad_request", c("name"),
          r_pipeline(r_step(script), name = 5)),
  cat_row("r-pipeline-duplicate", "Two steps with one name", "invalid_spec", c("unique"),
          r_pipeline(r_step(script), r_step(script))),
  cat_row("r-pipeline-cycle", "Two steps reading each other", "invalid_spec", c("cycle"),
          r_pipeline(r_step(script, name = "a", outputs = "x", inputs = list(i = output_of("b", "y"))),
                     r_step(script, name = "b", outputs = "y", inputs = list(i = output_of("a", "x"))))),
  cat_row("r-pipeline-format", "`format(p, format = \"svg\")`", "bad_request", c("format", "mermaid"),
          format(r_pipeline(r_step(script)), format = "svg")),
  # -- runs ----------------------------------------------------------------------------------
  cat_row("r-run-number", "`run_status(5)`", "bad_request", c("run", "latest"), run_status(5)),
  cat_row("r-run-na", "`run_logs(NA)`", "bad_request", c("run"), run_logs(NA_character_)),
  cat_row("r-run-unknown", "`run_status(\"amlr_nope\")`", "run_not_found", c("No run", "run_list()"),
          run_status("amlr_nope")),
  cat_row("r-logs-step-number", "`run_logs(step = 5)`", "bad_request", c("step"), run_logs(seed, step = 5)),
  cat_row("r-logs-step-unknown", "`run_logs(step = \"ghost\")`", "step_not_found", c("no step", "ghost"),
          run_logs(seed, step = "ghost")),
  cat_row("r-list-limit-text", "`run_list(limit = \"abc\")`", "bad_request", c("limit", "whole number"),
          run_list(limit = "abc")),
  cat_row("r-list-limit-negative", "`run_list(limit = -1)`", "bad_request", c("limit"), run_list(limit = -1)),
  cat_row("r-list-limit-na", "`run_list(limit = NA)`", "bad_request", c("limit"), run_list(limit = NA)),
  cat_row("r-list-experiment-number", "`run_list(experiment = 5)`", "bad_request", c("experiment"),
          run_list(experiment = 5)),
  cat_row("r-download-output-ghost", "`run_download(output = \"ghost\")`", "output_not_found", c("no output", "ghost", "out"),
          run_download(seed, output = "ghost", dest = scratch)),
  cat_row("r-download-output-number", "`run_download(output = 5)`", "bad_request", c("output"),
          run_download(seed, output = 5, dest = scratch)),
  cat_row("r-download-dest-file", "`run_download(dest = <a file>)`", "destination_unusable", c("is a file"),
          run_download(seed, dest = a_file)),
  cat_row("r-download-dest-na", "`run_download(dest = NA)`", "bad_request", c("dest"),
          run_download(seed, dest = NA_character_)),
  cat_row("r-download-overwrite-na", "`run_download(overwrite = NA)`", "bad_request", c("overwrite"),
          run_download(seed, dest = scratch, overwrite = NA)),
  cat_row("r-wait-timeout-negative", "`run_wait(timeout = -1)`", "bad_request", c("timeout"),
          run_wait(seed, timeout = -1)),
  cat_row("r-wait-timeout-text", "`run_wait(timeout = \"1m\")`", "bad_request", c("timeout"),
          run_wait(seed, timeout = "1m")),
  cat_row("r-wait-quiet-na", "`run_wait(quiet = NA)`", "bad_request", c("quiet"), run_wait(seed, quiet = NA)),
  # -- export_pipeline() ---------------------------------------------------------------------
  cat_row("r-export-format", "`export_pipeline(format = \"cwl\")`", "bad_request", c("format", "azureml_v2"),
          export_pipeline(script, file.path(scratch, "x.yml"), format = "cwl")),
  cat_row("r-export-overwrite-na", "`export_pipeline(overwrite = NA)`", "bad_request", c("overwrite"),
          export_pipeline(script, file.path(scratch, "x.yml"), overwrite = NA)),
  cat_row("r-export-path-na", "`export_pipeline(path = NA)`", "bad_request", c("path"),
          export_pipeline(script, NA_character_)),
  cat_row("r-export-below-file", "`export_pipeline()` below a file", "destination_unusable", c("is a file"),
          export_pipeline(script, file.path(a_file, "x.yml"))),
  cat_row("r-export-script-ignored", "`export_pipeline()` of a script `.amlignore` excludes", "script_excluded", c(".amlignore", "!ignored.R"),
          export_pipeline(file.path(ignored_dir, "ignored.R"), file.path(scratch, "x.yml"))),
  # -- in a step -----------------------------------------------------------------------------
  cat_row("r-metric-value-list", "`log_metric(\"x\", list(1))`", "bad_request", c("single number or string"),
          log_metric("x", list(1))),
  cat_row("r-metric-name-na", "`log_metric(NA, 1)`", "bad_request", c("name"), log_metric(NA_character_, 1)),
  cat_row("r-step-input-outside", "`step_input(\"d\")` outside a step", "not_in_step", c("not running as an amlr step"),
          step_input("d")),
  # -- AMLR_HOME -----------------------------------------------------------------------------
  cat_row("r-home-file", "`AMLR_HOME` is a file", "home_unusable", c("is a file", "AMLR_HOME"),
          withr::with_envvar(c(AMLR_HOME = a_file), run_list())),
  cat_row("r-home-below-file", "`AMLR_HOME` below a file", "home_unusable", c("part of that path is a file"),
          withr::with_envvar(c(AMLR_HOME = file.path(a_file, "home")), submit_r_pipeline(script, quiet = TRUE)))
)

# Faults whose tests follow below (rendered into the docs page too).
cat_fault <- function(id, what, does) NULL
cat_fault("r-fault-nan-metric", "`log_metric(\"loss\", NaN)` next to numeric metrics", "`run_metrics()` keeps `value` numeric (NaN, Inf)")
cat_fault("r-fault-odd-script-names", "Scripts named `_helper.R`, `ünï.R`, `$(x).R`", "valid step and pipeline names are derived (`helper`, `uni`, `x_`)")
cat_fault("r-fault-registry-lost", "`registry.sqlite` deleted or emptied", "`amlr_error_registry_damaged`; `run_registry_rebuild()` brings every run back")
cat_fault("r-fault-folder-gone", "A run folder deleted by hand", "`run_status()` warns, `run_logs()`/`run_download()` fail with `amlr_error_run_folder_missing`")

# -- the table's test ------------------------------------------------------------------------

local_catalogue_world <- function(env = parent.frame()) {
  home <- local_amlr_home(env)
  src <- withr::local_tempdir("amlr-cat-", .local_envir = env)
  writeLines('cat("hi\\n")', file.path(src, "a.R"))
  writeLines("notes", file.path(src, "notes.txt"))
  dir.create(file.path(src, "sub"))
  ignored_dir <- file.path(src, "ignored")
  dir.create(ignored_dir)
  writeLines("1", file.path(ignored_dir, "ignored.R"))
  writeLines("*.R", file.path(ignored_dir, ".amlignore"))
  out <- file.path(src, "out.R")
  writeLines('writeLines("42", file.path(amlr::step_output("out"), "result.txt"))', out)
  seed <- suppressMessages(submit_r_pipeline(r_step(out, outputs = "out"), quiet = TRUE))
  scratch <- withr::local_tempdir("amlr-cat-out-", .local_envir = env)
  a_file <- file.path(scratch, "a-file")
  writeLines("x", a_file)
  list(home = home, src = src, script = file.path(src, "a.R"), ignored_dir = ignored_dir, seed = seed$id,
       scratch = scratch, a_file = a_file)
}

world_state <- function(home) {
  list(runs = sort(run_list(limit = Inf)$id), folders = sort(list.files(file.path(home, "runs"))))
}

test_that("every row of the catalogue is a classed error that records and loses nothing", {
  skip_if_no_rscript()
  world <- local_catalogue_world()
  before <- world_state(world$home)
  expect_identical(anyDuplicated(vapply(catalogue, `[[`, "", "id")), 0L)
  for (row in catalogue) {
    err <- tryCatch(
      suppressMessages(suppressWarnings(eval(row$expr, envir = list2env(world, parent = environment())))),
      error = function(e) e
    )
    expect_s3_class(err, "error")
    if (!inherits(err, "error")) {
      fail(paste0(row$id, ": no error"))
      next
    }
    expect_true(inherits(err, paste0("amlr_error_", row$class)),
                info = paste0(row$id, ": got ", paste(class(err), collapse = "/"), ": ", conditionMessage(err)))
    msg <- cli::ansi_strip(conditionMessage(err))
    for (word in row$words) {
      expect_true(grepl(word, msg, fixed = TRUE), info = paste0(row$id, ": `", word, "` not in: ", msg))
    }
    expect_false(inherits(err, "amlr_error_python"), info = row$id)
    expect_identical(world_state(world$home), before, info = paste0(row$id, ": something was recorded or lost"))
  }
  expect_gte(length(catalogue), 60)
})

# -- the faults --------------------------------------------------------------------------------

test_that("NaN and Inf metrics do not turn the other metrics into text", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(m.R = c('amlr::log_metric("rmse", 0.25)', 'amlr::log_metric("loss", NaN)',
                               'amlr::log_metric("loss", Inf)', 'amlr::log_metric("loss", -Inf)'))
  run <- submit_r_pipeline(file.path(dir, "m.R"), quiet = TRUE)
  m <- run_metrics(run)
  expect_type(m$value, "double")
  expect_equal(m$value[m$name == "rmse"], 0.25)
  expect_true(is.nan(m$value[m$name == "loss"][1]))
  expect_identical(m$value[m$name == "loss"][2:3], c(Inf, -Inf))
})

test_that("scripts with odd names get valid step and pipeline names", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(`_helper.R` = 'cat("a\\n")', `$(x).R` = 'cat("b\\n")')
  writeLines('cat("c\\n")', file.path(dir, enc2native("\u00fcn\u00ef.R")))
  expect_identical(amlr:::as_pipeline(file.path(dir, "_helper.R"))$name, "helper")
  expect_identical(amlr:::as_pipeline(file.path(dir, "$(x).R"))$name, "x_")
  uni <- amlr:::as_pipeline(file.path(dir, enc2native("\u00fcn\u00ef.R")))
  expect_match(uni$name, "^[A-Za-z0-9]")
  run <- submit_r_pipeline(file.path(dir, "_helper.R"), quiet = TRUE)
  expect_identical(run$status, "Completed")
  expect_identical(run_steps(run)$step, "_helper")
})

test_that("a lost registry is an error naming the fix, and run_registry_rebuild() brings the runs back", {
  skip_if_no_rscript()
  home <- local_amlr_home()
  dir <- write_scripts(a.R = 'cat("hi\\n")')
  runs <- vapply(1:2, function(i) submit_r_pipeline(file.path(dir, "a.R"), quiet = TRUE)$id, "")
  unlink(file.path(home, c("registry.sqlite", "registry.sqlite-wal", "registry.sqlite-shm")))
  expect_error(run_list(), class = "amlr_error_registry_damaged", regexp = "run_registry_rebuild")
  expect_error(submit_r_pipeline(file.path(dir, "a.R"), quiet = TRUE), class = "amlr_error_registry_damaged")
  res <- suppressMessages(run_registry_rebuild())
  expect_setequal(res$added, runs)
  expect_setequal(run_list()$id, runs)
  expect_identical(run_status(runs[1]), "Completed")
  writeBin(charToRaw("not sqlite at all"), file.path(home, "registry.sqlite"))
  expect_error(run_status(runs[1]), class = "amlr_error_registry_damaged", regexp = "not a valid SQLite")
  res <- suppressMessages(run_registry_rebuild())
  expect_true(file.exists(res$moved_to))
  expect_setequal(run_list()$id, runs)
})

test_that("a run whose folder is gone says so", {
  skip_if_no_rscript()
  local_amlr_home()
  dir <- write_scripts(a.R = 'writeLines("1", file.path(amlr::step_output("o"), "x"))')
  run <- submit_r_pipeline(r_step(file.path(dir, "a.R"), outputs = "o"), quiet = TRUE)
  unlink(run$run_dir, recursive = TRUE)
  expect_warning(status <- run_status(run), class = "amlr_warning_run_folder_missing")
  expect_identical(status, "Completed")
  expect_error(run_logs(run), class = "amlr_error_run_folder_missing", regexp = "is gone")
  expect_error(run_download(run, dest = withr::local_tempdir()), class = "amlr_error_run_folder_missing")
})
