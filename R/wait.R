#' Follow a run until it ends
#'
#' Streams the steps' log lines as they are written and reports each step as
#' it finishes. Interrupting (Esc in RStudio, Ctrl+C in a terminal) detaches
#' without cancelling the run; call `run_wait()` again to reattach, or
#' [run_cancel()] to stop it.
#'
#' @inheritParams run_status
#' @param timeout Seconds to wait at most; the run goes on afterwards.
#' @param quiet Do not print log lines or progress.
#' @return The `amlr_run` with its latest status, invisibly.
#' @family runs
#' @export
#' @examples
#' \dontshow{Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("job"); dir.create(dir); script <- file.path(dir, "job.R")
#' writeLines('for (i in 1:3) { cat("tick", i, "\\n"); Sys.sleep(0.2) }', script)
#' run <- submit_r_pipeline(script, wait = FALSE)
#' run_wait(run)
#' \dontshow{Sys.unsetenv("AMLR_HOME")}
run_wait <- function(run = "latest", timeout = Inf, quiet = FALSE) {
  id <- run_ref(run)
  state <- new.env(parent = emptyenv())
  state$cursor <- structure(list(), names = character())
  state$run <- NULL
  state$seen <- character()
  state$bar <- NULL
  start <- Sys.time()
  interval <- getOption("amlr.poll_interval", 0.05)
  max_interval <- getOption("amlr.poll_max", if (identical(state_backend(run), "local")) 0.5 else 5)
  detached <- FALSE
  tryCatch(
    {
      repeat {
        res <- amlr_call("follow", list(run = id, cursor = state$cursor))
        state$cursor <- res$cursor %||% state$cursor
        if (is.list(state$cursor) && !length(state$cursor)) state$cursor <- structure(list(), names = character())
        state$run <- new_amlr_run(res$run)
        if (!quiet) report_progress(state, res)
        if (state$run$status %in% terminal_statuses) break
        if (as.numeric(difftime(Sys.time(), start, units = "secs")) > timeout) {
          if (!quiet) cli::cli_alert_warning("Stopped waiting after {timeout}s; run {.val {id}} goes on.")
          break
        }
        Sys.sleep(interval)
        interval <- min(interval * 1.5, max_interval)
      }
    },
    interrupt = function(e) {
      detached <<- TRUE
    }
  )
  if (!is.null(state$bar)) cli::cli_progress_done(id = state$bar)
  if (detached) {
    cli::cli_alert_info(c(
      "Detached from run {.val {id}}; it goes on. ",
      "Reattach with {.code run_wait(\"{id}\")}, stop it with {.code run_cancel(\"{id}\")}."
    ))
    return(invisible(state$run %||% run_info(id)))
  }
  if (!quiet && state$run$status %in% terminal_statuses) {
    took <- format_duration(run_duration(state$run$started, state$run$ended))
    switch(state$run$status,
      Completed = cli::cli_alert_success("Run {.val {id}} completed in {took}."),
      Failed = cli::cli_alert_danger("Run {.val {id}} failed after {took}."),
      Canceled = cli::cli_alert_warning("Run {.val {id}} was canceled.")
    )
  }
  invisible(state$run)
}

state_backend <- function(run) {
  if (inherits(run, "amlr_run")) run$backend else NA_character_
}

report_progress <- function(state, res) {
  steps <- res$steps %||% list()
  many <- length(steps) > 1L
  lines <- res$lines %||% list()
  if (length(lines)) {
    text <- vapply(lines, function(l) if (many) paste0("[", l$step, "] ", l$line) else l$line, "")
    emit_lines(text, state)
  }
  done <- 0L
  current <- character()
  for (s in steps) {
    if (s$status %in% terminal_statuses) {
      done <- done + 1L
      if (!s$name %in% state$seen) {
        state$seen <- c(state$seen, s$name)
        if (many || !identical(s$status, "Completed")) announce_step(s)
      }
    } else if (identical(s$status, "Running")) {
      current <- c(current, s$name)
    }
  }
  if (many && interactive()) {
    if (is.null(state$bar)) {
      state$bar <- cli::cli_progress_bar(
        total = length(steps), format = "{cli::pb_bar} {cli::pb_current}/{cli::pb_total} steps {cli::pb_status}",
        clear = TRUE, .envir = globalenv()
      )
    }
    cli::cli_progress_update(id = state$bar, set = done,
                             status = if (length(current)) paste("|", paste(current, collapse = ", ")) else "",
                             .envir = globalenv())
  }
}

emit_lines <- function(text, state) {
  if (!is.null(state$bar)) {
    cli::cli_verbatim(text)
  } else {
    cat(text, sep = "\n")
    utils::flush.console()
  }
}

announce_step <- function(s) {
  took <- format_duration(run_duration(s$started, s$ended))
  switch(s$status,
    Completed = if (isTRUE(s$reused)) {
      cli::cli_alert_success("Step {.strong {s$name}} reused from run {.val {s$reused_from}}.")
    } else {
      cli::cli_alert_success("Step {.strong {s$name}} completed ({took}).")
    },
    Failed = cli::cli_alert_danger("Step {.strong {s$name}} failed ({s$error %||% 'see its log'})."),
    Canceled = cli::cli_alert_warning("Step {.strong {s$name}} canceled ({s$error %||% ''}).")
  )
}
