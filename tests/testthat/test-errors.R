# One vocabulary of errors: ?amlr_errors (made from error_kinds()), the kinds R
# raises and the kinds Python defines (inst/python/amlr/errors.py) stay in step.

# Kinds R raises itself: the `kind` of every amlr_abort() and check_string() call
# in the package's functions.
r_raised_kinds <- function() {
  found <- character()
  walk <- function(e) {
    if (!is.call(e)) return(invisible())
    fn <- e[[1]]
    if (is.name(fn) && as.character(fn) %in% c("amlr_abort", "check_string")) {
      args <- as.list(e)[-1]
      nms <- names(args) %||% rep("", length(args))
      positional <- args[nms == ""]
      at <- if (identical(as.character(fn), "amlr_abort")) 2L else 3L
      kind <- if ("kind" %in% nms) args[["kind"]] else if (length(positional) >= at) positional[[at]] else NULL
      if (is.character(kind)) found <<- c(found, kind)
    }
    for (a in as.list(e)) if (!missing(a)) walk(a)
  }
  ns <- asNamespace("amlr")
  for (name in ls(ns, all.names = TRUE)) {
    f <- get(name, envir = ns)
    if (is.function(f)) walk(body(f))
  }
  unique(found)
}

python_kinds <- function() {
  out <- system2(amlr_python()$path, c("-c", shQuote(
    "import json, sys; sys.path.insert(0, sys.argv[1]); from amlr import errors; print(json.dumps(sorted(errors.kinds())))"
  ), shQuote(amlr_python_path())), stdout = TRUE)
  unlist(jsonlite::fromJSON(out))
}

test_that("every kind R raises is in ?amlr_errors, and every R row is raised", {
  table <- error_kinds()
  raised <- r_raised_kinds()
  expect_true(all(c("invalid_spec", "no_script", "run_failed", "bad_option") %in% raised))
  expect_setequal(setdiff(raised, "error"), setdiff(table$kind[table$raised_by %in% c("R", "both")], "error"))
  expect_true("bridge" %in% raised)
})

test_that("every kind Python defines is in ?amlr_errors, and no row claims a kind Python lacks", {
  table <- error_kinds()
  py <- python_kinds()
  expect_true(all(c("azure_request", "run_not_found", "python") %in% py))
  expect_false("azureml" %in% py) # one kind for an Azure failure on both backends
  expect_setequal(setdiff(py, "error"), setdiff(table$kind[table$raised_by %in% c("Python", "both")], "error"))
  expect_false(anyDuplicated(table$kind) > 0)
})

test_that("the installed ?amlr_errors page lists every kind", {
  rd <- tools::Rd_db("amlr")[["amlr_errors.Rd"]]
  skip_if(is.null(rd), "help pages are not installed")
  text <- paste(capture.output(tools::Rd2txt(rd, options = list(underline_titles = FALSE))), collapse = "\n")
  for (kind in error_kinds()$kind) expect_match(text, paste0("amlr_error_", kind), fixed = TRUE)
})

test_that("check_string raises the kind of the function it checks for", {
  expect_error(r_step(42), class = "amlr_error_invalid_spec")
  expect_error(aml_data(NA_character_), class = "amlr_error_invalid_asset_name")
  expect_error(r_environment(image = ""), class = "amlr_error_invalid_environment")
  expect_error(step_input(1), class = "amlr_error_bad_request")
})

# The messages users meet most, locked word for word.
test_that("the most common error messages read as they should", {
  dir <- withr::local_tempdir("amlr-errors-")
  expect_snapshot(error = TRUE, {
    r_step(file.path(dir, "missing.R"))
  }, transform = function(x) gsub(getwd(), "<wd>", gsub(dir, "<dir>", x, fixed = TRUE), fixed = TRUE))
  script <- file.path(dir, "hello.R")
  writeLines('cat("hi\\n")', script)
  expect_snapshot(error = TRUE, submit_r_pipeline(script, wait = FALSE, quiet = TRUE, no_such_option = 1))
  expect_snapshot(error = TRUE, r_pipeline(r_step(script, name = "bad name!")))
  expect_snapshot(error = TRUE, run_status("no-such-run"), transform = function(x) {
    gsub(Sys.getenv("AMLR_HOME"), "<home>", x, fixed = TRUE)
  })
  expect_snapshot(error = TRUE, current_script(doc = NULL, file = NULL))
})

test_that("a failed run's message names the step, the exit status and the log", {
  dir <- withr::local_tempdir("amlr-errors-")
  script <- file.path(dir, "fail.R")
  writeLines('stop("boom")', script)
  err <- expect_error(submit_r_pipeline(script, quiet = TRUE), class = "amlr_error_run_failed")
  id <- err$run$id
  expect_snapshot(error = TRUE, stop(err), transform = function(x) {
    x <- gsub(id, "<run-id>", x, fixed = TRUE)
    x <- gsub(dir, "<dir>", x, fixed = TRUE)
    gsub(normalizePath(Sys.getenv("AMLR_HOME"), mustWork = FALSE), "<home>", x, fixed = TRUE)
  })
})
