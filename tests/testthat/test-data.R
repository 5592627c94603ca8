# Data assets and models on the local backend, end to end with real Rscript runs.

train_script <- c(
  'd <- read.csv(file.path(amlr::step_input("cars"), "cars.csv"))',
  'fit <- lm(mpg ~ wt, d)',
  'saveRDS(fit, file.path(amlr::step_output("model"), "model.rds"))',
  'cat("trained on", nrow(d), "rows\\n")'
)

cars_folder <- function(rows = 32, env = parent.frame()) {
  dir <- withr::local_tempdir("cars-", .local_envir = env)
  utils::write.csv(mtcars[seq_len(rows), ], file.path(dir, "cars.csv"), row.names = FALSE)
  dir
}

run_steps_fingerprint <- function(run) {
  # The fingerprint the registry holds for the step (the bridge's view, not R's).
  amlr:::amlr_call("steps", list(run = run$id))[[1]]$fingerprint
}

test_that("register a folder, run a pipeline reading it by name, register the model, list both with lineage", {
  skip_if_no_rscript()
  local_amlr_home()
  data <- cars_folder()
  expect_message(asset <- register_data(data, "cars", description = "mtcars"), "Registered data asset")
  expect_s3_class(asset, "amlr_data_asset")
  expect_equal(asset$version, "1")
  expect_equal(asset$type, "uri_folder")
  expect_true(file.exists(file.path(asset$path, "cars.csv")))
  expect_output(print(asset), 'aml_data\\("cars", version = "1"\\)')
  expect_message(again <- register_data(data, "cars"), "Identical content is already")
  expect_equal(again$version, "1")
  expect_true(again$existing)

  dir <- write_scripts(train.R = train_script)
  train <- r_step(file.path(dir, "train.R"), inputs = list(cars = aml_data("cars")), outputs = "model",
                  register = c(model = "cars-fit"))
  expect_message(print(train), "registers model as data asset")
  run <- submit_r_pipeline(train, quiet = TRUE)
  expect_equal(run$status, "Completed")
  expect_true("trained on 32 rows" %in% run_logs(run))
  expect_true(any(grepl("registered as data asset `cars-fit` version 1", run_logs(run))))

  expect_message(model <- register_model(run, "train", "model", "cars-model", tags = c(team = "risk")),
                 "Registered model")
  expect_s3_class(model, "amlr_model")
  expect_equal(model$name, "cars-model")
  expect_equal(model$version, "1")
  expect_null(model$azure_id)
  expect_equal(model$lineage$run, run$id)
  expect_equal(model$lineage$step, "train")
  expect_equal(model$lineage$output, "model")
  expect_equal(model$lineage$fingerprint, run_steps_fingerprint(run))
  expect_equal(model$lineage$data_assets[[1]]$name, "cars")
  expect_equal(model$lineage$data_assets[[1]]$version, "1")
  fit <- readRDS(file.path(model$path, "model.rds"))
  expect_s3_class(fit, "lm")
  printed <- capture.output(print(model))
  expect_match(printed[1], "cars-model version 1")
  expect_true(any(grepl(paste0("lineage: run ", run$id, ", step train, output model"), printed, fixed = TRUE)))
  expect_true(any(grepl("data read: cars:1", printed, fixed = TRUE)))

  data_list <- list_data()
  expect_equal(data_list$name, c("cars", "cars-fit"))
  expect_equal(data_list$run, c(NA, run$id))
  expect_equal(data_list$data_assets, c("", "cars:1"))
  models <- list_models()
  expect_equal(models$name, "cars-model")
  expect_equal(models$run, run$id)
  expect_equal(models$data_assets, "cars:1")
  expect_equal(models$location, model$path)
})

test_that("a step reading latest is reused until latest means other content", {
  skip_if_no_rscript()
  local_amlr_home()
  data <- cars_folder()
  suppressMessages(register_data(data, "cars"))
  dir <- write_scripts(train.R = train_script)
  train <- r_step(file.path(dir, "train.R"), inputs = list(cars = aml_data("cars")), outputs = "model")
  first <- submit_r_pipeline(train, quiet = TRUE)
  second <- submit_r_pipeline(train, quiet = TRUE)
  expect_true(run_steps(second)$reused)
  suppressMessages(register_data(data, "cars")) # identical: still version 1
  expect_true(run_steps(submit_r_pipeline(train, quiet = TRUE))$reused)
  utils::write.csv(mtcars[1:10, ], file.path(data, "cars.csv"), row.names = FALSE)
  suppressMessages(register_data(data, "cars"))
  third <- submit_r_pipeline(train, quiet = TRUE)
  expect_false(run_steps(third)$reused)
  expect_true("trained on 10 rows" %in% run_logs(third))
  # Pinned to version 1: the same content as the first runs, so reused.
  pinned <- r_step(file.path(dir, "train.R"), inputs = list(cars = aml_data("cars", 1)), outputs = "model")
  expect_true(run_steps(submit_r_pipeline(pinned, quiet = TRUE))$reused)
})

test_that("download mode gives the step a private writable copy", {
  skip_if_no_rscript()
  local_amlr_home()
  suppressMessages(asset <- register_data(cars_folder(), "cars"))
  dir <- write_scripts(edit.R = c(
    'p <- file.path(amlr::step_input("cars"), "cars.csv")',
    'cat("x\\n", file = p, append = TRUE)',
    'cat("edited", length(readLines(p)), "\\n")'
  ))
  run <- submit_r_pipeline(r_step(file.path(dir, "edit.R"), inputs = list(cars = aml_data("cars", mode = "download"))),
                           quiet = TRUE)
  expect_equal(run$status, "Completed")
  expect_true("edited 34 " %in% run_logs(run))
  expect_equal(length(readLines(file.path(asset$path, "cars.csv"))), 33L) # the store is untouched
})

test_that("bad names, unknown assets and unfinished steps are classed errors naming the fix", {
  skip_if_no_rscript()
  local_amlr_home()
  data <- cars_folder()
  expect_error(register_data(data, "my cars"), "letters, digits", class = "amlr_error_invalid_asset_name")
  expect_error(register_data(file.path(data, "nope"), "cars"), class = "amlr_error_output_not_found")
  expect_equal(nrow(list_data()), 0L)
  dir <- write_scripts(train.R = train_script, fail.R = c(train_script, "quit(status = 2)"))
  step <- r_step(file.path(dir, "train.R"), inputs = list(cars = aml_data("cars")), outputs = "model")
  expect_error(submit_r_pipeline(step, quiet = TRUE), "register_data", class = "amlr_error_asset_not_found")
  expect_equal(nrow(run_list()), 0L)
  expect_error(r_pipeline(r_step(file.path(dir, "train.R"), inputs = list(cars = aml_data("cars data")))),
               class = "amlr_error_invalid_spec")
  expect_error(r_step(file.path(dir, "train.R"), outputs = "model", register = c(modle = "x")),
               class = "amlr_error_invalid_spec")
  suppressMessages(register_data(data, "cars"))
  expect_error(submit_r_pipeline(r_step(file.path(dir, "train.R"), inputs = list(cars = aml_data("cars", 3)),
                                        outputs = "model"), quiet = TRUE),
               "its versions: 1", class = "amlr_error_asset_not_found")
  fail <- r_step(file.path(dir, "fail.R"), inputs = list(cars = aml_data("cars")), outputs = "model",
                 register = c(model = "cars-fit"))
  run <- suppressMessages(tryCatch(submit_r_pipeline(fail, quiet = TRUE), amlr_run_failed = function(e) e$run))
  expect_equal(run$status, "Failed")
  expect_equal(nrow(list_data(name = "cars-fit")), 0L)
  expect_error(register_model(run, "fail", "model", "cars-model"), class = "amlr_error_step_not_completed")
  ok <- submit_r_pipeline(step, quiet = TRUE)
  expect_error(register_model(ok, "train", "weights", "cars-model"), class = "amlr_error_output_not_found")
  expect_error(register_model(ok, "train", "model", "cars model"), class = "amlr_error_invalid_asset_name")
  expect_equal(nrow(list_models()), 0L)
})

test_that("a damaged store index is reported and rebuilt from its records", {
  local_amlr_home()
  suppressMessages(register_data(cars_folder(), "cars"))
  index <- file.path(Sys.getenv("AMLR_HOME"), "store", "index.sqlite")
  unlink(paste0(index, c("-wal", "-shm")))
  writeBin(charToRaw(strrep("not a database ", 100)), index)
  expect_error(list_data(), "rebuild_store", class = "amlr_error_store_damaged")
  expect_message(res <- rebuild_store(), "Indexed 1 asset version")
  expect_equal(list_data()$name, "cars")
})

test_that("aml_data() prints and validates its arguments", {
  ref <- aml_data("cars", 2, mode = "download")
  expect_equal(ref$version, "2")
  expect_output(print(ref), "azureml:cars:2")
  expect_error(aml_data("cars", mode = "rw"), "should be one of.*ro_mount.*download")
  expect_error(aml_data(character()), class = "amlr_error_invalid_asset_name")
})

test_that("a model and a data asset come back by name and version", {
  skip_if_no_rscript()
  local_amlr_home()
  suppressMessages(register_data(cars_folder(), "cars"))
  dir <- write_scripts(train.R = train_script)
  run <- submit_r_pipeline(r_step(file.path(dir, "train.R"), inputs = list(cars = aml_data("cars")),
                                  outputs = "model"), quiet = TRUE)
  suppressMessages(registered <- register_model(run, "train", "model", "cars-model"))
  got <- amlr:::model_get("cars-model")
  expect_s3_class(got, "amlr_model")
  expect_equal(got[c("name", "version", "path", "lineage")], registered[c("name", "version", "path", "lineage")])
  expect_equal(amlr:::model_get("cars-model", 1)$version, "1")
  expect_error(amlr:::model_get("cars-model", 2), class = "amlr_error_asset_not_found")
  expect_equal(amlr:::data_get("cars")$version, "1")
})
