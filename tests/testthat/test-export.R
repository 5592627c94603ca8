# export_pipeline() from R: the Azure ML v2 YAML (checked in depth by
# tests/python/test_export.py) and the JSON spec.

three_step_pipeline <- function(env = parent.frame()) {
  dir <- write_scripts(
    prepare.R = 'writeLines("x", file.path(amlr::step_output("data"), "x.txt"))',
    train.R = 'cat(readLines(file.path(amlr::step_input("data"), "x.txt")), "\\n")',
    report.R = 'cat("report", commandArgs(TRUE), "\\n")',
    env = env
  )
  prepare <- r_step(file.path(dir, "prepare.R"), outputs = "data")
  train <- r_step(file.path(dir, "train.R"), inputs = list(data = output_of(prepare, "data")),
                  outputs = "model", compute = "gpu-cluster")
  report <- r_step(file.path(dir, "report.R"), args = c("final", "run"),
                   inputs = list(model = output_of(train, "model")))
  r_pipeline(prepare, train, report, name = "three", compute = "cpu-cluster",
             environment = r_environment(image = "myacr.azurecr.io/amlr-r:4.4.1"))
}

test_that("export_pipeline() writes a v2 pipeline job with one command job per step", {
  skip_if_not_installed("yaml")
  p <- three_step_pipeline()
  out <- withr::local_tempdir("amlr-export-")
  path <- file.path(out, "three.yml")
  expect_message(res <- export_pipeline(p, path), "az ml job create --file")
  expect_identical(res, normalizePath(path, winslash = "/"))
  expect_true(file.exists(path))
  expect_true(dir.exists(file.path(out, "three_snapshots")))

  job <- yaml::read_yaml(path)
  expect_identical(job$type, "pipeline")
  expect_identical(job$display_name, "three")
  expect_identical(job$settings$default_compute, "azureml:cpu-cluster")
  expect_setequal(names(job$jobs), c("prepare", "train", "report"))
  for (name in names(job$jobs)) {
    step <- job$jobs[[name]]
    expect_identical(step$type, "command")
    expect_match(step$command, paste0("^python _amlr/bootstrapper\\.py --step _amlr/steps/", name, "\\.json"))
    expect_true(file.exists(file.path(out, step$code, "_amlr", "bootstrapper.py")))
    contract <- jsonlite::read_json(file.path(out, step$code, "_amlr", "steps", paste0(name, ".json")))
    expect_identical(contract$script, paste0(name, ".R"))
    expect_identical(contract$metrics_sink, "mlflow")
    expect_identical(step$environment$image, "myacr.azurecr.io/amlr-r:4.4.1")
  }
  expect_identical(job$jobs$train$compute, "azureml:gpu-cluster")
  expect_identical(job$jobs$train$inputs$data, "${{parent.jobs.prepare.outputs.data}}")
  expect_identical(job$jobs$report$inputs$model, "${{parent.jobs.train.outputs.model}}")
  report <- jsonlite::read_json(file.path(out, job$jobs$report$code, "_amlr", "steps", "report.json"),
                                simplifyVector = TRUE)
  expect_identical(report$args, c("final", "run"))
})

test_that("export_pipeline() refuses to overwrite unless asked, with a classed error", {
  p <- three_step_pipeline()
  out <- withr::local_tempdir("amlr-export-")
  path <- file.path(out, "three.yml")
  suppressMessages(export_pipeline(p, path))
  before <- readLines(path)
  cat("# edited\n", file = path, append = TRUE)
  err <- expect_error(suppressMessages(export_pipeline(p, path)), class = "amlr_error_file_exists")
  expect_s3_class(err, "amlr_error")
  expect_match(conditionMessage(err), "overwrite = TRUE", fixed = TRUE)
  expect_identical(utils::tail(readLines(path), 1), "# edited")
  suppressMessages(export_pipeline(p, path, overwrite = TRUE))
  expect_identical(readLines(path), before)
})

test_that("the same pipeline exports to byte-identical YAML", {
  p <- three_step_pipeline()
  a <- withr::local_tempdir("amlr-export-a-")
  b <- withr::local_tempdir("amlr-export-b-")
  suppressMessages(export_pipeline(p, file.path(a, "p.yml")))
  suppressMessages(export_pipeline(p, file.path(b, "p.yml")))
  expect_identical(readBin(file.path(a, "p.yml"), "raw", 1e6), readBin(file.path(b, "p.yml"), "raw", 1e6))
})

test_that("format = \"json\" writes the pipeline spec with relative paths", {
  p <- three_step_pipeline()
  out <- withr::local_tempdir("amlr-export-")
  path <- file.path(out, "three.json")
  suppressMessages(export_pipeline(p, path, format = "json"))
  spec <- jsonlite::read_json(path)
  expect_identical(vapply(spec$steps, `[[`, "", "name"), c("prepare", "train", "report"))
  expect_false(any(startsWith(vapply(spec$steps, `[[`, "", "source_dir"), "/")))
  expect_identical(spec$steps[[2]]$inputs$data$step, "prepare")
})

test_that("export_pipeline() takes a script path and checks its arguments", {
  dir <- write_scripts(hello.R = 'cat("hi\\n")')
  out <- withr::local_tempdir("amlr-export-")
  path <- suppressMessages(export_pipeline(file.path(dir, "hello.R"), file.path(out, "hello.yml")))
  expect_true(file.exists(path))
  expect_error(export_pipeline(file.path(dir, "hello.R"), NA_character_), class = "amlr_error_bad_request")
  expect_error(export_pipeline(file.path(dir, "hello.R"), file.path(out, "x.yml"), format = "cwl"),
               "`format` must be one of \"azureml_v2\" and \"json\"", fixed = TRUE, class = "amlr_error_bad_request")
  expect_error(export_pipeline(file.path(dir, "hello.R"), file.path(out, "no-such-dir", "x.yml")),
               class = "amlr_error_bad_request")
})

test_that("cran_packages = \"auto\" is resolved from the scripts when exporting", {
  skip_if_not_installed("yaml")
  dir <- write_scripts(fit.R = 'library(zoo)\nx <- DBI::dbDriver\ncat("fit\\n")')
  p <- r_pipeline(r_step(file.path(dir, "fit.R")), name = "fit",
                  environment = r_environment(cran_packages = "auto"))
  out <- withr::local_tempdir("amlr-export-")
  path <- suppressMessages(export_pipeline(p, file.path(out, "fit.yml")))
  context <- file.path(out, yaml::read_yaml(path)$jobs$fit$environment$build$path)
  dockerfile <- readLines(file.path(context, "Dockerfile"))
  expect_true(any(grepl('^ARG CRAN_PACKAGES="DBI zoo"', dockerfile)))
})
