#' Follow a run until it ends
#'
#' Streams the steps' log lines as they are written and reports each step as
#' it finishes. Interrupting (Esc in RStudio, Ctrl+C in a terminal) detaches
#' without cancelling the run -- it says how to reattach (`run_wait()`) or stop
#' it ([run_cancel()]) -- and then interrupts as usual, so the code after the
#' call does not run against an unfinished run.
#'
#' @inheritParams run_status
#' @param timeout Seconds to wait at most; the run goes on afterwards.
#' @param quiet Do not print log lines or progress.
#' @return The `amlr_run` with its latest status, invisibly.
#' @family runs
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("job"); dir.create(dir); script <- file.path(dir, "job.R")
#' writeLines('for (i in 1:3) { cat("tick", i, "\\n"); Sys.sleep(0.2) }', script)
#' run <- submit_r_pipeline(script, wait = FALSE)
#' run_wait(run)
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
run_wait <- function(run = "latest", timeout = Inf, quiet = FALSE) {
  check_seconds(timeout, "timeout")
  check_flag(quiet, "quiet")
  id <- run_ref(run)
  follow_run("wait", list(run = id, timeout = if (is.finite(timeout)) timeout), quiet = quiet,
             fallback = function() run_info(id))
}

# Follow a stream of run events ("wait", or "submit" with wait = TRUE) to its
# end: render log lines and step changes, detach on interrupt.
follow_run <- function(method, params, quiet = FALSE, fallback = NULL, on_submitted = NULL,
                       call = rlang::caller_env()) {
  state <- new.env(parent = emptyenv())
  state$run <- NULL
  state$seen <- character()
  state$bar <- NULL
  state$many <- FALSE
  on_event <- function(event) {
    switch(event$event %||% "",
      submitted = {
        state$run <- new_amlr_run(event$run)
        if (!is.null(on_submitted)) on_submitted(state$run)
      },
      log = if (!quiet) emit_log(event$lines, state),
      steps = {
        state$run <- new_amlr_run(event$run)
        if (!quiet) report_steps(event$steps, state)
      },
      NULL
    )
  }
  detached <- FALSE
  result <- tryCatch(
    amlr_stream(method, params, on_event = on_event, call = call),
    interrupt = function(e) {
      detached <<- TRUE
      NULL
    }
  )
  if (!is.null(state$bar)) cli::cli_progress_done(id = state$bar)
  if (detached) {
    run <- state$run %||% if (!is.null(fallback)) fallback()
    id <- run$id %||% params$run
    cli::cli_alert_info(c(
      "Detached from run {.val {id}}; it goes on. ",
      "Reattach with {.code run_wait(\"{id}\")}, stop it with {.code run_cancel(\"{id}\")}."
    ))
    # The interrupt still means "stop what you are doing": the rest of a
    # sourced script or of an Rscript does not run against an unfinished run.
    rlang::interrupt()
    return(invisible(run))
  }
  run <- new_amlr_run(result)
  if (!quiet) {
    took <- format_duration(run_duration(run$started, run$ended))
    switch(run$status,
      Completed = cli::cli_alert_success("Run {.val {run$id}} completed in {took}."),
      Failed = cli::cli_alert_danger("Run {.val {run$id}} failed after {took}."),
      Canceled = cli::cli_alert_warning("Run {.val {run$id}} was canceled."),
      cli::cli_alert_warning("Stopped waiting; run {.val {run$id}} is {run$status} and goes on.")
    )
  }
  invisible(run)
}

emit_log <- function(lines, state) {
  if (!length(lines)) return(invisible())
  text <- vapply(lines, function(l) if (state$many) paste0("[", l$step, "] ", l$line) else l$line, "")
  emit_lines(text, state)
}

report_steps <- function(steps, state) {
  state$many <- length(steps) > 1L
  done <- 0L
  current <- character()
  for (s in steps) {
    if (s$status %in% terminal_statuses) {
      done <- done + 1L
      if (!s$name %in% state$seen) {
        state$seen <- c(state$seen, s$name)
        if (state$many || !identical(s$status, "Completed")) announce_step(s)
      }
    } else if (identical(s$status, "Running")) {
      current <- c(current, s$name)
    }
  }
  if (state$many && interactive()) {
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
