# submit_r_pipeline(backend = "azureml_v2") from R, through the bridge, azure-ai-ml and a real
# socket to the loopback Azure ML service (tests/python/aml_loopback.py, run as a process of its
# own; tests/python/test_loopback_v2.py tests the backend in depth). The bridge's Python gets the
# loopback environment and a socket guard, so nothing leaves the machine.

loopback_script <- function() {
  testthat::test_path("..", "python", "aml_loopback.py")
}

# The service in a child process; `send()` writes one control command and reads its answer.
local_loopback <- function(env = parent.frame()) {
  python <- amlr_python()$path
  ok <- suppressWarnings(system2(python, c("-c", shQuote("import azure.ai.ml, azure.identity")),
                                 stdout = FALSE, stderr = FALSE))
  testthat::skip_if_not(identical(ok, 0L), "azure-ai-ml is not installed in amlr's Python")
  server <- processx::process$new(python, c(loopback_script(), "--max-seconds", "300"),
                                  stdin = "|", stdout = "|", stderr = "|")
  withr::defer(if (server$is_alive()) server$kill(), envir = env)
  read_line <- function() {
    deadline <- Sys.time() + 30
    while (Sys.time() < deadline) {
      server$poll_io(1000)
      line <- server$read_output_lines(n = 1)
      if (length(line)) return(jsonlite::fromJSON(line, simplifyVector = FALSE))
      if (!server$is_alive()) break
    }
    stop("the loopback service did not answer: ", server$read_all_error(), call. = FALSE)
  }
  info <- read_line()
  info$send <- function(...) {
    server$write_input(paste0(jsonlite::toJSON(list(...), auto_unbox = TRUE), "\n"))
    read_line()
  }
  info
}

# What sends the bridge's Python to the loopback service and keeps it there.
local_loopback_python <- function(info, env = parent.frame()) {
  withr::local_envvar(unlist(info$env), .local_envir = env)
  dir <- normalizePath(dirname(loopback_script()), winslash = "/")
  code <- c(
    "import os, sys",
    sprintf("os.environ.update(%s)", jsonlite::toJSON(info$env, auto_unbox = TRUE)),
    sprintf("sys.path.insert(0, %s)", jsonlite::toJSON(dir, auto_unbox = TRUE)),
    "import aml_loopback",
    "aml_loopback.BRIDGE_GUARD = aml_loopback.SocketGuard().__enter__()"
  )
  undo <- c(
    "import os, aml_loopback",
    "aml_loopback.BRIDGE_GUARD.__exit__(None, None, None)",
    sprintf("[os.environ.pop(k, None) for k in %s]", jsonlite::toJSON(names(info$env)))
  )
  local_python_patch(amlr_test_bridge(), code, undo, env = env)
}

test_that("submit_r_pipeline(backend = 'azureml_v2') sends Azure ML a pipeline job it accepts, then follows it", {
  skip_on_cran()
  skip_if_not(file.exists(loopback_script()), "tests/python is not part of the built package")
  # Over system2 every call starts a Python that imports azure-ai-ml (seconds each, five calls here);
  # the reticulate run drives the same R code through one embedded Python.
  skip_if(identical(amlr_test_bridge(), "system2"), "runs under the reticulate bridge (make test-r-reticulate)")
  skip_if_not_installed("processx")
  info <- local_loopback()
  local_loopback_python(info)
  dir <- write_scripts(hello.R = 'cat("Hello from R\\n")')
  p <- r_pipeline(r_step(file.path(dir, "hello.R"), args = c("it's", "$HOME", "a,b")), name = "hello",
                  compute = "cpu-cluster", environment = r_environment(image = "rocker/r-ver:4.4.1"))
  ws <- info$workspace
  workspace <- aml_workspace(subscription_id = ws$subscription_id, resource_group = ws$resource_group,
                             workspace_name = ws$workspace_name, auth = "managed_identity")

  run <- submit_r_pipeline(p, experiment = "loopback", backend = "azureml_v2", workspace = workspace,
                           wait = FALSE, quiet = TRUE)
  expect_s3_class(run, "amlr_run")
  expect_identical(run$backend, "azureml_v2")
  expect_identical(run$status, "NotStarted")

  requests <- info$send(op = "requests")
  job_puts <- Filter(function(r) r$method == "PUT" && grepl("/jobs/[^/]+$", r$path), requests)
  expect_length(job_puts, 1L)
  job <- job_puts[[1]]$body$properties
  expect_identical(job$jobType, "Pipeline")
  expect_identical(job$experimentName, "loopback")
  expect_match(job$settings$default_compute, "/computes/cpu-cluster$")
  expect_identical(names(job$jobs), "hello")
  expect_match(job$jobs$hello$componentId, "/components/azureml_anonymous/versions/")
  component <- Filter(function(r) r$method == "PUT" && grepl("/components/", r$path), requests)[[1]]
  spec <- component$body$properties$componentSpec
  expect_match(spec$command, "_amlr/bootstrapper.py", fixed = TRUE)
  expect_match(spec$code, "/codes/[^/]+/versions/")
  expect_match(spec$environment, "/environments/amlr-r-[^/]+/versions/")
  expect_identical(info$send(op = "problems"), list(unhandled = list(), rejected = list()))

  remote <- sub(".*/jobs/", "", job_puts[[1]]$path)
  child <- info$send(op = "child", parent = remote, step = "hello", status = "Completed",
                     log = "Hello from R\nPipeline step execution returned 0\n")
  info$send(op = "job_status", job = remote, status = "Completed")
  expect_identical(run_status(run), "Completed")
  expect_identical(run_steps(run)$status, "Completed")
  expect_identical(c(unclass(run_logs(run, step = "hello"))),
                   c("Hello from R", "Pipeline step execution returned 0"))
  expect_true(is.character(child$run_id))
})
