# deploy_r_model() and endpoint_*(): real local servers, real HTTP, real processes.

skip_if_not_installed("plumber")
skip_if_not_installed("curl")

cars_model <- function(env = parent.frame()) {
  dir <- withr::local_tempdir("amlr-model-", .local_envir = env)
  saveRDS(stats::lm(mpg ~ wt + hp, data = mtcars), file.path(dir, "model.rds"))
  dir
}

write_score <- function(lines, env = parent.frame()) {
  path <- withr::local_tempfile(fileext = ".R", .local_envir = env)
  writeLines(lines, path)
  path
}

score_lines <- c(
  'init <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))',
  "score <- function(model, data) {",
  '  if (!all(c("wt", "hp") %in% names(data))) stop("data needs columns wt and hp")',
  "  unname(predict(model, newdata = data))",
  "}"
)

# A process that runs (a zombie has ended).
process_running <- function(pid) {
  stat <- file.path("/proc", pid, "stat")
  if (!file.exists(stat)) return(FALSE)
  text <- tryCatch(readLines(stat, warn = FALSE), error = function(e) "")
  !grepl("^\\S+ \\(.*\\) Z", text[1])
}

# Deployed once for the read-only tests below, deleted when the test run ends.
shared <- new.env()
shared_endpoint <- function() {
  if (is.null(shared$ep)) {
    model <- cars_model(env = testthat::teardown_env())
    score <- write_score(score_lines, env = testthat::teardown_env())
    shared$model <- model
    shared$ep <- suppressMessages(deploy_r_model(model, score, name = "cars-shared"))
    withr::defer(try(suppressMessages(endpoint_delete("cars-shared")), silent = TRUE), envir = testthat::teardown_env())
  }
  shared$ep
}

test_that("a local endpoint answers with what score() gives in R", {
  ep <- shared_endpoint()
  expect_s3_class(ep, "amlr_endpoint")
  expect_identical(ep$status, "Healthy")
  expect_match(ep$url, "^http://127\\.0\\.0\\.1:[0-9]+$")
  newdata <- data.frame(wt = c(2.5, 3.2, 4.1), hp = c(110, 150, 200))
  direct <- unname(predict(readRDS(file.path(shared$model, "model.rds")), newdata = newdata))
  got <- endpoint_invoke(ep, newdata)
  expect_s3_class(got, "data.frame")
  expect_named(got, "prediction")
  expect_equal(got$prediction, direct, tolerance = 1e-12)
  # By name: the same answer, through the bridge.
  expect_equal(endpoint_invoke("cars-shared", newdata), got, tolerance = 1e-12)
})

test_that("real HTTP requests get JSON answers and status codes", {
  ep <- shared_endpoint()
  get <- function(path, body = NULL) {
    h <- curl::new_handle()
    if (!is.null(body)) {
      curl::handle_setopt(h, post = TRUE, postfields = body)
      curl::handle_setheaders(h, "Content-Type" = "application/json")
    }
    res <- curl::curl_fetch_memory(paste0(ep$url, path), handle = h)
    list(status = res$status_code, body = jsonlite::fromJSON(rawToChar(res$content)))
  }
  expect_identical(get("/live")$status, 200L)
  expect_identical(get("/ready")$body$ready, TRUE)
  ok <- get("/score", '{"data": [{"wt": 3, "hp": 120}, {"wt": 2, "hp": 90}]}')
  expect_identical(ok$status, 200L)
  expect_length(ok$body$predictions, 2)
  bad <- get("/score", '{"data": "three rows"}')
  expect_identical(bad$status, 400L)
  expect_identical(bad$body$error$class, "bad_input")
  broken <- get("/score", "{{{")
  expect_identical(broken$status, 400L)
  failing <- get("/score", '{"data": [{"x": 1}]}')
  expect_identical(failing$status, 500L)
  expect_identical(failing$body$error$message, "score() failed: data needs columns wt and hp")
})

test_that("a failing score() is a classed error carrying the R message", {
  ep <- shared_endpoint()
  err <- expect_error(endpoint_invoke(ep, data.frame(x = 1:2)), class = "amlr_error_score_failed")
  expect_match(conditionMessage(err), "data needs columns wt and hp", fixed = TRUE)
  err <- expect_error(endpoint_invoke("cars-shared", data.frame(x = 1)), class = "amlr_error_score_failed")
  expect_match(conditionMessage(err), "data needs columns wt and hp", fixed = TRUE)
  expect_true(any(grepl("data needs columns", endpoint_logs(ep))))
})

test_that("data that is not a data frame is refused before any request", {
  ep <- shared_endpoint()
  expect_error(endpoint_invoke(ep, list(wt = 1, hp = 2)), class = "amlr_error_bad_input")
  expect_error(endpoint_invoke(ep, c(wt = 1, hp = 2)), class = "amlr_error_bad_input")
  expect_error(endpoint_invoke(ep, matrix(1:4, 2)), class = "amlr_error_bad_input")
  expect_error(endpoint_invoke(ep, mtcars[0, ]), class = "amlr_error_bad_input")
})

test_that("status, list and print show the endpoint", {
  ep <- shared_endpoint()
  expect_identical(as.character(endpoint_status(ep)), "Healthy")
  expect_s3_class(attr(endpoint_status("cars-shared"), "endpoint"), "amlr_endpoint")
  eps <- endpoint_list()
  expect_true("cars-shared" %in% eps$name)
  expect_identical(eps$status[eps$name == "cars-shared"], "Healthy")
  expect_output(print(ep), "Healthy")
  expect_output(print(ep), ep$url, fixed = TRUE)
  expect_output(print(eps), "cars-shared")
  expect_output(print(endpoint_status(ep)), "^Healthy")
})

test_that("odd inputs in the rows survive the trip: NA, factors, strings, dates, many rows", {
  model <- cars_model()
  score <- write_score(c(
    "init <- function(model_dir) NULL",
    "score <- function(model, data) data.frame(n = nrow(data), cols = paste(sort(names(data)), collapse = ','),",
    "  na_wt = sum(is.na(data$wt)), first_label = as.character(data$label[1]))"
  ))
  ep <- suppressMessages(deploy_r_model(model, score, name = "echo-rows"))
  withr::defer(suppressMessages(endpoint_delete(ep)))
  rows <- data.frame(wt = c(NA, 2, 3), hp = 1:3, label = factor(c("a \"quoted\" {x}", "b", "\u00e9t\u00e9")),
                     day = as.Date("2024-01-01") + 0:2)
  got <- endpoint_invoke(ep, rows)
  expect_identical(got$n, 3L)
  expect_identical(got$cols, "day,hp,label,wt")
  expect_identical(got$na_wt, 1L)
  expect_identical(got$first_label, "a \"quoted\" {x}")
  many <- data.frame(wt = runif(20000), hp = runif(20000), label = "x", day = "2024-01-01")
  expect_identical(endpoint_invoke(ep, many)$n, 20000L)
})

test_that("a registered model (amlr_model) is served from its path", {
  model <- structure(list(name = "cars-model", version = 3L, path = cars_model(),
                          azure_id = "azureml:cars-model:3"), class = "amlr_model")
  ep <- suppressMessages(deploy_r_model(model, write_score(score_lines), name = "cars-registered"))
  withr::defer(try(suppressMessages(endpoint_delete(ep)), silent = TRUE))
  expect_identical(ep$model$name, "cars-model")
  expect_output(print(ep), "cars-model:3")
  expect_equal(nrow(endpoint_invoke(ep, data.frame(wt = 3, hp = 100))), 1L)
})

test_that("endpoint_delete() leaves no process, and a deleted endpoint is a classed error", {
  ep <- suppressMessages(deploy_r_model(cars_model(), write_score(score_lines), name = "to-delete"))
  expect_true(process_running(ep$pid))
  suppressMessages(endpoint_delete(ep))
  expect_false(process_running(ep$pid))
  expect_false("to-delete" %in% endpoint_list()$name)
  expect_error(endpoint_invoke(ep, data.frame(wt = 1, hp = 1)), class = "amlr_error_endpoint_not_found")
  expect_error(endpoint_status("to-delete"), class = "amlr_error_endpoint_not_found")
  expect_error(endpoint_delete("to-delete"), class = "amlr_error_endpoint_not_found")
})

test_that("a killed server shows as Dead and invoking it is a classed error", {
  ep <- suppressMessages(deploy_r_model(cars_model(), write_score(score_lines), name = "to-kill"))
  withr::defer(try(suppressMessages(endpoint_delete("to-kill")), silent = TRUE))
  tools::pskill(ep$pid, tools::SIGKILL)
  for (i in 1:100) if (process_running(ep$pid)) Sys.sleep(0.05)
  expect_identical(as.character(endpoint_status(ep)), "Dead")
  expect_output(print(endpoint_status(ep)), "Dead (the server process", fixed = TRUE)
  expect_error(endpoint_invoke(ep, data.frame(wt = 1, hp = 1)), class = "amlr_error_endpoint_down")
  suppressMessages(endpoint_delete(ep))
  expect_false(dir.exists(file.path(Sys.getenv("AMLR_HOME"), "endpoints", "to-kill")))
})

test_that("bad score files are refused before anything starts", {
  model <- cars_model()
  no_init <- write_score("score <- function(model, data) 1")
  no_score <- write_score("init <- function(model_dir) 1")
  wrong_args <- write_score(c("init <- function() 1", "score <- function(model, data) 1"))
  too_many <- write_score(c("init <- function(model_dir) 1", "score <- function(model, data, extra) 1"))
  not_r <- write_score("init <- function(model_dir) {")
  err <- expect_error(deploy_r_model(model, no_init, name = "bad-score"), class = "amlr_error_score_file")
  expect_match(conditionMessage(err), "init()", fixed = TRUE)
  err <- expect_error(deploy_r_model(model, no_score, name = "bad-score"), class = "amlr_error_score_file")
  expect_match(conditionMessage(err), "score(model, data)", fixed = TRUE)
  expect_error(deploy_r_model(model, wrong_args, name = "bad-score"), class = "amlr_error_score_file")
  expect_error(deploy_r_model(model, too_many, name = "bad-score"), class = "amlr_error_score_file")
  expect_error(deploy_r_model(model, not_r, name = "bad-score"), class = "amlr_error_score_file")
  expect_error(deploy_r_model(model, tempfile(fileext = ".R"), name = "bad-score"), class = "amlr_error_score_file")
  expect_error(deploy_r_model(model, NA_character_, name = "bad-score"), class = "amlr_error_score_file")
  # Defaults and ... are fine; so is a function the file builds some other way.
  ok <- write_score(c("init <- function(model_dir, ...) 1", "score = function(model, data, verbose = FALSE) 1"))
  expect_identical(amlr:::check_score_file(ok), normalizePath(ok, winslash = "/"))
  expect_false("bad-score" %in% endpoint_list()$name)
})

test_that("a missing model, odd names and a port in use are classed errors", {
  score <- write_score(score_lines)
  expect_error(deploy_r_model(file.path(tempdir(), "no-such-model"), score, name = "no-model"),
               class = "amlr_error_model_not_found")
  expect_error(deploy_r_model(42, score, name = "no-model"), class = "amlr_error_model_not_found")
  model <- cars_model()
  for (name in c("../up", "a b", "x", "-x-", strrep("a", 40), "caf\u00e9")) {
    expect_error(deploy_r_model(model, score, name = name), class = "amlr_error_endpoint_name")
  }
  expect_error(deploy_r_model(model, score, name = c("a", "b")), class = "amlr_error_endpoint_name")
  held <- NULL
  for (i in 1:50) {
    port <- 20000L + sample.int(30000L, 1L)
    held <- tryCatch(serverSocket(port), error = function(e) NULL)
    if (!is.null(held)) break
  }
  withr::defer(close(held))
  err <- expect_error(deploy_r_model(model, score, name = "busy-port", port = port), class = "amlr_error_port_in_use")
  expect_match(conditionMessage(err), as.character(port))
  expect_false("busy-port" %in% endpoint_list()$name)
})

test_that("export_endpoint() writes endpoint, deployment and build context", {
  out <- withr::local_tempdir("amlr-export-")
  model <- cars_model()
  path <- suppressMessages(export_endpoint(model, write_score(score_lines), "cars-model", out))
  expect_identical(normalizePath(path), normalizePath(out))
  expect_true(all(file.exists(file.path(out, c("endpoint.yml", "deployment.yml", "environment/Dockerfile",
                                               "environment/amlr-serve/serve.R", "environment/amlr-serve/score.R",
                                               "model/model.rds")))))
  dep <- yaml::read_yaml(file.path(out, "deployment.yml"))
  expect_identical(dep$endpoint_name, "cars-model")
  expect_identical(dep$environment$inference_config$scoring_route$path, "/score")
  expect_identical(dep$environment$inference_config$readiness_route$path, "/ready")
  expect_identical(dep$environment$inference_config$liveness_route$path, "/live")
  expect_error(suppressMessages(export_endpoint(model, write_score(score_lines), "cars-model", out)),
               class = "amlr_error_file_exists")
  expect_error(export_endpoint(model, write_score("x <- 1"), "cars-model", tempfile()), class = "amlr_error_score_file")
})

test_that("a slow score() is a classed timeout, and the endpoint keeps serving", {
  score <- write_score(c("init <- function(model_dir) 1",
                         "score <- function(model, data) { Sys.sleep(data$s[1]); data$s * 2 }"))
  ep <- suppressMessages(deploy_r_model(cars_model(), score, name = "slow-score"))
  withr::defer(suppressMessages(endpoint_delete(ep)))
  started <- Sys.time()
  expect_error(endpoint_invoke(ep, data.frame(s = 3), timeout = 1), class = "amlr_error_endpoint_timeout")
  expect_lt(as.numeric(difftime(Sys.time(), started, units = "secs")), 2.9)
  expect_equal(endpoint_invoke(ep, data.frame(s = 0))$prediction, 0)
})

test_that("an endpoint outlives the R session that deployed it", {
  home <- Sys.getenv("AMLR_HOME")
  model <- cars_model()
  score <- write_score(score_lines)
  script <- withr::local_tempfile(fileext = ".R")
  writeLines(c(
    sprintf("Sys.setenv(AMLR_HOME = %s)", deparse(home)),
    sprintf("options(amlr.bridge = %s)", deparse(amlr:::amlr_bridge())),
    sprintf("ep <- amlr::deploy_r_model(%s, %s, name = 'outlives')", deparse(model), deparse(score)),
    "cat(ep$pid)"
  ), script)
  out <- system2(file.path(R.home("bin"), "Rscript"), script, stdout = TRUE, stderr = FALSE)
  withr::defer(try(suppressMessages(endpoint_delete("outlives")), silent = TRUE))
  pid <- as.integer(utils::tail(out, 1))
  expect_true(process_running(pid))
  expect_identical(as.character(endpoint_status("outlives")), "Healthy")
  expect_equal(nrow(endpoint_invoke("outlives", data.frame(wt = 3, hp = 100))), 1L)
  suppressMessages(endpoint_delete("outlives"))
  expect_false(process_running(pid))
})

test_that("an old endpoint object never gets another endpoint's answers on a reused port", {
  first <- suppressMessages(deploy_r_model(cars_model(), write_score(score_lines), name = "first-one"))
  suppressMessages(endpoint_delete(first))
  other <- write_score(c("init <- function(model_dir) NULL", "score <- function(model, data) rep(\"from the other\", nrow(data))"))
  second <- suppressMessages(deploy_r_model(cars_model(), other, name = "second-one", port = first$port))
  withr::defer(suppressMessages(endpoint_delete(second)))
  expect_identical(second$port, first$port)
  expect_error(endpoint_invoke(first, data.frame(wt = 1, hp = 1)), class = "amlr_error_endpoint_not_found")
  expect_identical(endpoint_invoke(second, data.frame(wt = 1))$prediction, "from the other")
})

test_that("azureml_v2 checks the score file, then needs a workspace, before anything is recorded", {
  dir <- withr::local_tempdir("amlr-no-ws-")
  withr::local_dir(dir)
  model <- cars_model()
  expect_error(deploy_r_model(model, write_score("init <- function(model_dir) 1"), name = "cloud-cars",
                              backend = "azureml_v2"), class = "amlr_error_score_file")
  expect_error(deploy_r_model(model, write_score(score_lines), name = "cloud-cars", backend = "azureml_v2"),
               class = "amlr_error_workspace_config")
  expect_false("cloud-cars" %in% endpoint_list()$name)
})
