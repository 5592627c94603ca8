#' Follow a run until it ends
#'
#' Streams the steps' log lines as they are written and reports each step as
#' it finishes. Interrupting (Esc in RStudio, Ctrl+C in a terminal) detaches
#' without cancelling the run -- it says how to reattach (`run_wait()`) or stop
#' it ([run_cancel()]). At the console the call then returns the run, so
#' `run <- submit_r_pipeline(...)` keeps it; inside a `source()`d script or an
#' `Rscript` the interrupt goes on as usual, so the rest of the script does not
#' run against an unfinished run.
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
  state$steps <- list()     # step name -> its latest state (events carry only what changed)
  state$done <- 0L
  state$running <- character()
  state$open <- list()      # step name -> TRUE when its last chunk ended inside a line
  state$bar <- NULL
  state$fan <- list()       # sweep/map name -> c(done, total) of its trials or items
  state$many <- FALSE
  # Python reads no log at all when nothing would be printed.
  if (quiet) params$quiet <- TRUE
  on_event <- function(event) {
    switch(event$event %||% "",
      submitted = {
        state$run <- new_amlr_run(event$run)
        state$many <- (state$run$n_steps %||% 1L) > 1L
        if (!is.null(on_submitted)) on_submitted(state$run)
      },
      log = if (!quiet) emit_chunk(event$step, event$text, state),
      steps = {
        state$run <- new_amlr_run(event$run)
        state$many <- (event$n_steps %||% length(state$steps)) > 1L
        if (!quiet) report_steps(event$steps, state, event$n_steps %||% length(event$steps))
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
    # In a sourced script or an Rscript the interrupt still means "stop what you
    # are doing": the rest must not run against an unfinished run. At the
    # console, hand the run back so `run <- submit_r_pipeline()` keeps it.
    if (!interactive() || !is.null(sourced_file())) rlang::interrupt()
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

# One step's chunk of log text; with several steps each line says which step wrote it.
emit_chunk <- function(step, text, state) {
  if (is.null(text) || !nzchar(text)) return(invisible())
  open_end <- !endsWith(text, "\n")
  if (state$many) {
    lines <- strsplit(text, "\n", fixed = TRUE)[[1]]
    prefix <- rep(paste0("[", step, "] "), length(lines))
    if (isTRUE(state$open[[step]])) prefix[1] <- ""
    text <- paste0(paste0(prefix, lines, collapse = "\n"), if (!open_end) "\n")
  }
  state$open[[step]] <- open_end
  emit_text(text, state)
}

# Step changes: only the steps in `changed` are looked at, so a long run costs
# the same per step whatever its length.
report_steps <- function(changed, state, n_steps) {
  for (s in changed) {
    before <- state$steps[[s$name]]$status %||% ""
    state$steps[[s$name]] <- s
    group <- fanout_group(s$name)
    if (!is.na(group) && !nzchar(before)) state$fan[[group]] <- (state$fan[[group]] %||% c(0L, 0L)) + c(0L, 1L)
    if (s$status %in% terminal_statuses && !before %in% terminal_statuses) {
      state$done <- state$done + 1L
      if (!is.na(group)) state$fan[[group]] <- state$fan[[group]] + c(1L, 0L)
      # A sweep's trials and a map's items are counted on the bar; only their failures are announced.
      if ((state$many || !identical(s$status, "Completed")) && (is.na(group) || !identical(s$status, "Completed"))) {
        announce_step(s)
      }
    }
    if (identical(s$status, "Running")) {
      state$running <- union(state$running, s$name)
    } else {
      state$running <- setdiff(state$running, s$name)
    }
  }
  if (state$many && interactive()) {
    if (is.null(state$bar)) {
      state$bar <- cli::cli_progress_bar(
        total = n_steps, format = "{cli::pb_bar} {cli::pb_current}/{cli::pb_total} steps {cli::pb_status}",
        clear = TRUE, .envir = globalenv()
      )
    }
    current <- state$running
    current <- unique(ifelse(is.na(fanout_group(current)), current, fanout_group(current)))
    fan <- vapply(names(state$fan), function(g) sprintf("%s %d/%d", g, state$fan[[g]][1], state$fan[[g]][2]),
                  character(1))
    cli::cli_progress_update(id = state$bar, set = state$done,
                             status = paste(c(if (length(fan)) paste("|", paste(fan, collapse = ", ")),
                                              if (length(current)) paste("|", paste(current, collapse = ", "))),
                                            collapse = " "),
                             .envir = globalenv())
  }
}

# The sweep or map a trial/item step belongs to (its name: `<sweep>__<10 hex digits>`), else NA.
fanout_group <- function(name) {
  ifelse(grepl("__[0-9a-f]{10}$", name), sub("__[0-9a-f]{10}$", "", name), NA_character_)
}

emit_text <- function(text, state) {
  if (!is.null(state$bar)) {
    cli::cli_verbatim(sub("\n$", "", text))
  } else {
    cat(text)
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
