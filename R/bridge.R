# The bridge: one JSON request in, one JSON response out.
#
# Two transports carry the same request to the same Python function
# (`amlr.api.handle_json`): `system2` to `python -m amlr call` (the default; a
# fresh process keeps the heavy Azure SDKs out of the R session) and
# reticulate (`options(amlr.bridge = "reticulate")`; one embedded Python
# session, so repeated calls cost well under a millisecond).

amlr_python_path <- function() {
  system.file("python", package = "amlr", mustWork = TRUE)
}

amlr_bridge <- function() {
  bridge <- getOption("amlr.bridge", Sys.getenv("AMLR_BRIDGE", "system2"))
  if (!identical(bridge, "") && !bridge %in% c("system2", "reticulate")) {
    amlr_abort(c(
      "Unknown bridge {.val {bridge}}.",
      i = "Set {.code options(amlr.bridge = \"system2\")} (default) or {.val reticulate}."
    ), "bad_option")
  }
  if (identical(bridge, "")) "system2" else bridge
}

# The params every request carries: where the registry lives.
amlr_home <- function() {
  home <- Sys.getenv("AMLR_HOME", "")
  if (nzchar(home)) return(path.expand(home))
  tools::R_user_dir("amlr", "data")
}

# The request both entry points send: every request says where the registry is.
bridge_request <- function(method, params) {
  params$home <- params$home %||% amlr_home()
  jsonlite::toJSON(
    list(method = method, params = params),
    auto_unbox = TRUE, null = "null", na = "null", digits = NA
  )
}

amlr_call <- function(method, params = list(), call = rlang::caller_env()) {
  request <- bridge_request(method, params)
  text <- switch(amlr_bridge(),
    system2 = bridge_system2(request, call = call),
    reticulate = bridge_reticulate(request, call = call)
  )
  response <- tryCatch(
    jsonlite::fromJSON(text, simplifyVector = TRUE, simplifyDataFrame = FALSE, simplifyMatrix = FALSE),
    error = function(e) {
      amlr_abort(c(
        "amlr's Python side answered with something that is not JSON.",
        i = "First characters: {.val {substr(paste(text, collapse = ' '), 1, 200)}}",
        i = "Run {.run amlr::amlr_doctor()} to check the Python set-up."
      ), "bridge", call = call)
    }
  )
  if (!is.null(response$error)) bridge_abort(response$error, call = call)
  response$result
}

bridge_system2 <- function(request, call = rlang::caller_env()) {
  f <- request_files(request, call)
  on.exit(unlink(c(f$req, f$err)), add = TRUE)
  old <- set_bridge_env()
  on.exit(restore_env(old), add = TRUE)
  out <- suppressWarnings(system2(
    f$python, c("-S", "-m", "amlr", "call"),
    stdin = f$req, stdout = TRUE, stderr = f$err
  ))
  status <- attr(out, "status") %||% 0L
  if (!identical(as.integer(status), 0L) || length(out) == 0L) {
    err <- if (file.exists(f$err)) readLines(f$err, warn = FALSE) else character()
    amlr_abort(c(
      "amlr's Python side failed (exit status {status}) before it could answer.",
      i = "Python: {.path {f$python}}",
      if (length(err)) c(x = "{utils::tail(err, 5)}"),
      i = "Run {.run amlr::amlr_doctor()} to check the set-up."
    ), "bridge", call = call)
  }
  paste(out, collapse = "\n")
}

# What `python -m amlr` needs in its environment; returns the old values.
set_bridge_env <- function() {
  old <- Sys.getenv(c("PYTHONPATH", "PYTHONIOENCODING", "PYTHONPYCACHEPREFIX", "PYTHONDONTWRITEBYTECODE"), unset = NA)
  path <- amlr_python_path()
  pythonpath <- if (is.na(old[["PYTHONPATH"]]) || !nzchar(old[["PYTHONPATH"]])) {
    path
  } else {
    paste(path, old[["PYTHONPATH"]], sep = .Platform$path.sep)
  }
  Sys.setenv(PYTHONPATH = pythonpath, PYTHONIOENCODING = "utf-8", PYTHONPYCACHEPREFIX = pycache_dir())
  # amlr's modules sit in the R library, often read-only: their bytecode goes to
  # amlr's own cache instead, so each bridge call does not recompile them.
  Sys.unsetenv("PYTHONDONTWRITEBYTECODE")
  old
}

pycache_dir <- function() {
  file.path(tools::R_user_dir("amlr", "cache"), "pycache")
}

restore_env <- function(old) {
  for (name in names(old)) {
    if (is.na(old[[name]])) Sys.unsetenv(name) else do.call(Sys.setenv, stats::setNames(list(old[[name]]), name))
  }
}

bridge_env <- new.env(parent = emptyenv())

bridge_reticulate <- function(request, call = rlang::caller_env()) {
  if (!requireNamespace("reticulate", quietly = TRUE)) {
    amlr_abort(c(
      "The reticulate bridge needs the {.pkg reticulate} package.",
      i = "Install it, or use the default bridge: {.code options(amlr.bridge = \"system2\")}."
    ), "bridge", call = call)
  }
  reticulate_api(call)
  sync_python_environ()
  bridge_env$api$handle_json(enc2utf8(as.character(request)))
}

reticulate_api <- function(call = rlang::caller_env()) {
  if (is.null(bridge_env$api)) {
    # reticulate binds one Python per session: amlr's choice only counts if none is bound yet.
    python <- if (!reticulate::py_available(initialize = FALSE)) amlr_python_or_abort(call = call)
    # A Python that cannot load amlr (too old, no shared library, ...) must
    # fail as system2 does: an amlr_error_bridge, not reticulate's own error.
    bridge_env$api <- tryCatch(
      {
        if (!is.null(python)) reticulate::use_python(python, required = TRUE)
        api <- reticulate::import_from_path("amlr.api", path = amlr_python_path(), convert = TRUE)
        # Local runs take a runner that is already started and warm (see ?amlr_options).
        api$embedded(isTRUE(getOption("amlr.spare_runner", TRUE)))
        api
      },
      error = function(e) {
        amlr_abort(c(
          "The reticulate bridge could not load amlr's Python side.",
          x = "{conditionMessage(e)}",
          i = "Run {.run amlr::amlr_doctor()} to check the set-up,
               or use the default bridge: {.code options(amlr.bridge = \"system2\")}."
        ), "bridge", call = call)
      }
    )
  }
  bridge_env$api
}

# An embedded Python copies the environment once, at start-up; variables that
# R sets later (AMLR_*, AZURE_* credentials) must be handed over explicitly.
# They travel in the environment, never in a request, so no secret is written
# to a request file.
sync_python_environ <- function() {
  vars <- Sys.getenv()
  keep <- grepl("^(AMLR_|AZURE_|MLFLOW_)", names(vars))
  bridge_env$api$sync_environ(as.list(vars[keep]))
  invisible()
}

# Streams: the same protocol, as JSON lines read while they are written --
# events (`log`, `steps`, `tick`, ...) and then the final result or error.
# `on_event` is called for each event; the result is returned. An interrupt
# while streaming stops the reading (the Python follower is ended) and is
# re-signalled to the caller, which decides what it means.
amlr_stream <- function(method, params = list(), on_event = function(event) NULL, call = rlang::caller_env()) {
  # An embedded Python hands the waiting between polls back to R, so that an
  # interrupt lands in R's Sys.sleep() rather than inside Python.
  if (identical(amlr_bridge(), "reticulate")) params$caller_sleeps <- TRUE
  request <- bridge_request(method, params)
  next_line <- switch(amlr_bridge(),
    system2 = stream_system2(request, call = call),
    reticulate = stream_reticulate(request, call = call)
  )
  on.exit(next_line(close = TRUE), add = TRUE)
  repeat {
    line <- next_line()
    if (is.null(line)) {
      amlr_abort(c("amlr's Python side stopped before it answered.",
                   i = "Run {.run amlr::amlr_doctor()} to check the set-up."), "bridge", call = call)
    }
    event <- jsonlite::fromJSON(line, simplifyVector = TRUE, simplifyDataFrame = FALSE, simplifyMatrix = FALSE)
    if (!is.null(event$error)) bridge_abort(event$error, call = call)
    if ("result" %in% names(event)) return(event$result)
    if (identical(event$event, "idle")) {
      Sys.sleep(event$seconds %||% 0.02)
      next
    }
    on_event(event)
  }
}

# The system2 bridge's stream: a Python child whose stdout R reads line by line.
# processx (when installed) runs it without a shell and signals it directly;
# otherwise a pipe() through the shell, whose first line tells R the child's pid.
# `options(amlr.processx = FALSE)` forces the fallback.
stream_system2 <- function(request, call = rlang::caller_env()) {
  use_processx <- isTRUE(getOption("amlr.processx", TRUE)) && requireNamespace("processx", quietly = TRUE)
  if (use_processx) stream_processx(request, call = call) else stream_pipe(request, call = call)
}

# What every system2 call starts from: the interpreter, the request in a file
# (Python's stdin), and a file for Python's stderr.
request_files <- function(request, call) {
  python <- amlr_python_or_abort(call = call)
  req_file <- tempfile("amlr-req-", fileext = ".json")
  writeBin(charToRaw(enc2utf8(request)), req_file)
  list(python = python, req = req_file, err = tempfile("amlr-err-", fileext = ".txt"))
}

# A stream that ended without its answer: what Python said on stderr becomes an
# amlr_error_bridge; with nothing said, NULL (the caller reports the silence).
stream_ended <- function(f, call) {
  err <- if (file.exists(f$err)) readLines(f$err, warn = FALSE) else character()
  if (length(err)) {
    amlr_abort(c("amlr's Python side failed before it could answer.",
                 i = "Python: {.path {f$python}}", x = "{utils::tail(err, 5)}"), "bridge", call = call)
  }
  NULL
}

stream_processx <- function(request, call = rlang::caller_env()) {
  f <- request_files(request, call)
  old <- set_bridge_env()
  proc <- tryCatch(
    processx::process$new(f$python, c("-S", "-m", "amlr", "stream"), stdin = f$req, stdout = "|",
                          stderr = f$err, encoding = "UTF-8"),
    finally = restore_env(old)
  )
  pending <- character()
  function(close = FALSE) {
    if (close) {
      # An interrupted reader: end the follower (the run goes on).
      if (proc$is_alive()) proc$signal(tools::SIGTERM)
      unlink(c(f$req, f$err))
      return(invisible())
    }
    repeat {
      if (length(pending)) {
        line <- pending[[1L]]
        pending <<- pending[-1L]
        if (startsWith(line, "{\"event\": \"hello\"")) next
        return(line)
      }
      if (!proc$is_incomplete_output()) {
        proc$wait(1000)
        return(stream_ended(f, call))
      }
      proc$poll_io(200L) # short waits keep R responsive to an interrupt
      pending <<- c(pending, proc$read_output_lines())
    }
  }
}

stream_pipe <- function(request, call = rlang::caller_env()) {
  f <- request_files(request, call)
  old <- set_bridge_env()
  cmd <- paste(shQuote(f$python), "-S -m amlr stream <", shQuote(f$req), "2>", shQuote(f$err))
  con <- tryCatch(pipe(cmd, open = "r", encoding = "UTF-8"), finally = restore_env(old))
  pid <- NULL
  function(close = FALSE) {
    if (close) {
      # An interrupted reader: end the follower (the run goes on), then the pipe.
      if (!is.null(pid)) tools::pskill(pid, tools::SIGTERM)
      try(base::close(con), silent = TRUE)
      unlink(c(f$req, f$err))
      return(invisible())
    }
    repeat {
      line <- readLines(con, n = 1L, warn = FALSE)
      if (!length(line)) return(stream_ended(f, call))
      if (startsWith(line, "{\"event\": \"hello\"")) {
        pid <<- jsonlite::fromJSON(line)$pid
        next
      }
      return(line)
    }
  }
}

stream_reticulate <- function(request, call = rlang::caller_env()) {
  if (!requireNamespace("reticulate", quietly = TRUE)) return(bridge_reticulate(request, call = call))
  api <- reticulate_api(call)
  sync_python_environ()
  it <- api$stream_json(enc2utf8(as.character(request)))
  function(close = FALSE) {
    if (close) {
      try(it$close(), silent = TRUE)
      return(invisible())
    }
    reticulate::iter_next(it, completed = NULL)
  }
}
