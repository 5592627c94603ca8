run_statuses <- c("NotStarted", "Queued", "Running", "Completed", "Failed", "Canceled")
terminal_statuses <- c("Completed", "Failed", "Canceled")

new_amlr_run <- function(x) {
  fields <- c("id", "backend", "experiment", "pipeline", "status", "created", "started", "ended",
              "run_dir", "portal_url", "remote_id", "error", "n_steps", "published")
  out <- lapply(stats::setNames(fields, fields), function(f) x[[f]])
  structure(out, class = "amlr_run", warnings = x$warnings)
}

# A run id from an amlr_run, an id or "latest".
run_ref <- function(run, call = rlang::caller_env()) {
  if (inherits(run, "amlr_run")) return(run$id)
  if (is.character(run) && length(run) == 1L && !is.na(run) && nzchar(run)) return(run)
  amlr_abort(c("{.arg run} must be an {.cls amlr_run}, a run id or {.val latest}.",
               x = "Got {.cls {class(run)}}."), "bad_request", call = call)
}

as_time <- function(x) {
  x <- as.numeric(x %||% NA_real_)
  x[is.na(x)] <- NA_real_
  as.POSIXct(x, origin = "1970-01-01")
}

run_duration <- function(started, ended) {
  started <- as.numeric(started %||% NA)
  ended <- as.numeric(ended %||% NA)
  if (is.na(started)) return(NA_real_)
  if (is.na(ended)) ended <- as.numeric(Sys.time())
  ended - started
}

format_duration <- function(secs) {
  if (is.na(secs)) return("-")
  if (secs < 60) return(sprintf("%.1fs", secs))
  if (secs < 3600) return(sprintf("%dm %02ds", secs %/% 60, round(secs %% 60)))
  sprintf("%dh %02dm", secs %/% 3600, round((secs %% 3600) / 60))
}

#' @export
format.amlr_run <- function(x, ...) {
  status_fn <- switch(x$status %||% "",
    Completed = cli::col_green, Failed = cli::col_red, Canceled = cli::col_yellow, cli::col_blue)
  field <- function(label, value) paste0("  ", format(label, width = 12), value)
  c(
    paste0(cli::style_dim("<amlr_run> "), cli::style_bold(x$id)),
    field("backend:", x$backend),
    field("experiment:", x$experiment),
    field("pipeline:", x$pipeline),
    field("status:", status_fn(x$status %||% "?")),
    field("duration:", format_duration(run_duration(x$started, x$ended))),
    if (!is.null(x$error) && !identical(x$status, "Completed")) field("reason:", x$error),
    if (identical(x$backend, "local") && !is.null(x$run_dir)) field("logs:", file.path(x$run_dir, "logs")),
    if (!is.null(x$portal_url)) field("portal:", cli::style_hyperlink(x$portal_url, x$portal_url)),
    if (!is.null(x$published)) field("published:", format_published(x$published))
  )
}

#' @export
print.amlr_run <- function(x, ...) {
  cat(format(x, ...), sep = "\n")
  invisible(x)
}

#' Status of a run
#'
#' @param run An `amlr_run`, a run id, or `"latest"` (the newest run this
#'   machine submitted, on any backend).
#' @return One of `"NotStarted"`, `"Queued"`, `"Running"`, `"Completed"`,
#'   `"Failed"`, `"Canceled"`.
#' @family runs
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("job"); dir.create(dir); script <- file.path(dir, "job.R")
#' writeLines('cat("hi\\n")', script)
#' submit_r_pipeline(script, quiet = TRUE)
#' run_status()
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
run_status <- function(run = "latest") {
  run_info(run)$status
}

run_info <- function(run = "latest", call = rlang::caller_env()) {
  res <- amlr_call("status", list(run = run_ref(run, call)), call = call)
  if (isTRUE(res$folder_missing)) {
    cli::cli_warn(c("The folder of run {.val {res$id}} ({.path {res$run_dir}}) is gone: its logs and outputs are lost.",
                    i = "The registry still lists the run; restore the folder from a backup, or submit again."),
                  class = c("amlr_warning_run_folder_missing", "amlr_warning"))
  }
  new_amlr_run(res)
}

#' Steps of a run
#'
#' @inheritParams run_status
#' @return A data frame with one row per step, in run order: `step`,
#'   `status`, `reused` (the step's results came from an earlier run),
#'   `reused_from`, `exit_code`, `started`, `ended`, `duration` (seconds).
#' @family runs
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("job"); dir.create(dir); script <- file.path(dir, "job.R")
#' writeLines('cat("hi\\n")', script)
#' submit_r_pipeline(script, quiet = TRUE)
#' run_steps()
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
run_steps <- function(run = "latest") {
  steps_frame(amlr_call("steps", list(run = run_ref(run))))
}

steps_frame <- function(rows) {
  col <- function(name, default) row_col(rows, name, default)
  started <- col("started", NA_real_)
  ended <- col("ended", NA_real_)
  df <- data.frame(
    step = col("name", NA_character_),
    status = col("status", NA_character_),
    reused = col("reused", NA),
    reused_from = col("reused_from", NA_character_),
    exit_code = col("exit_code", NA_integer_),
    started = as_time(started),
    ended = as_time(ended),
    duration = as_seconds(mapply(run_duration, started, ended, USE.NAMES = FALSE)),
    stringsAsFactors = FALSE
  )
  if (!length(rows)) df$duration <- as_seconds(numeric())
  class(df) <- c("amlr_steps", "data.frame")
  df
}

#' @export
print.amlr_steps <- function(x, ...) {
  out <- as.data.frame(unclass(x), stringsAsFactors = FALSE)
  if ("duration" %in% names(out)) out$duration <- vapply(as.numeric(out$duration), format_duration, "")
  for (col in intersect(c("started", "ended"), names(out))) {
    if (inherits(out[[col]], "POSIXct")) out[[col]] <- format(out[[col]], "%H:%M:%S")
  }
  print.data.frame(out, row.names = FALSE)
  invisible(x)
}

#' Logs of a run
#'
#' @inheritParams run_status
#' @param step A step name, or `NULL` for every step.
#' @param n At most this many lines per step: the first ones, or the last
#'   ones with `tail = TRUE`. amlr reads no more of a log than that, so
#'   `run_logs(tail = TRUE, n = 20)` is cheap on a log of any size.
#' @param tail Take the last `n` lines instead of the first.
#' @return The log lines (stdout and stderr of R, in order) as a character
#'   vector of class `amlr_logs`; attribute `step` says which step each line
#'   came from.
#' @family runs
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("job"); dir.create(dir); script <- file.path(dir, "job.R")
#' writeLines('cat("hi\\n")', script)
#' submit_r_pipeline(script, quiet = TRUE)
#' run_logs()
#' run_logs(n = 1, tail = TRUE)
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
run_logs <- function(run = "latest", step = NULL, n = Inf, tail = FALSE) {
  check_optional_string(step, "step")
  if (!is.numeric(n) || length(n) != 1L || is.na(n) || n < 0 || (is.finite(n) && n != round(n))) {
    amlr_abort("{.arg n} must be a whole number of lines (or {.code Inf}).", "bad_request")
  }
  check_flag(tail, "tail")
  res <- amlr_call("logs", list(run = run_ref(run), step = step, n = if (is.finite(n)) n, tail = tail))
  lines <- unlist(lapply(res, function(x) as.character(unlist(x))), use.names = FALSE)
  steps <- rep(names(res), vapply(res, length, integer(1)))
  structure(lines %||% character(), step = steps, class = "amlr_logs")
}

#' @export
print.amlr_logs <- function(x, ...) {
  steps <- attr(x, "step")
  if (!length(x)) {
    cli::cli_text("{.emph (no log lines)}")
    return(invisible(x))
  }
  for (s in unique(steps)) {
    if (length(unique(steps)) > 1L) cli::cli_rule(left = s)
    cat(unclass(x)[steps == s], sep = "\n")
  }
  invisible(x)
}

#' @export
`[.amlr_logs` <- function(x, i) {
  structure(unclass(x)[i], step = attr(x, "step")[i], class = "amlr_logs")
}

#' @export
tail.amlr_logs <- function(x, n = 6L, ...) {
  keep <- utils::tail(seq_along(x), n)
  x[keep]
}

#' List runs
#'
#' @param experiment Only runs of this experiment; `NULL` for all.
#' @param limit At most this many runs, newest first; `Inf` (or 0) for all.
#' @return A data frame: `id`, `experiment`, `pipeline`, `backend`, `status`,
#'   `created`, `duration` (a `difftime` in seconds), newest first.
#' @family runs
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' run_list()
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
run_list <- function(experiment = NULL, limit = 20) {
  check_optional_string(experiment, "experiment")
  check_count(limit, "limit", min = 0, inf = TRUE)
  res <- amlr_call("list", list(experiment = experiment, limit = if (is.finite(limit)) limit else 0,
                                with_warnings = TRUE))
  for (w in unlist(res$warnings)) {
    cli::cli_warn(cli_escape(w), class = c("amlr_warning_unrecorded_runs", "amlr_warning"))
  }
  rows <- res$runs
  col <- function(name, default) row_col(rows, name, default)
  started <- col("started", NA_real_)
  ended <- col("ended", NA_real_)
  df <- data.frame(
    id = col("id", NA_character_),
    experiment = col("experiment", NA_character_),
    pipeline = col("pipeline", NA_character_),
    backend = col("backend", NA_character_),
    status = col("status", NA_character_),
    created = as_time(col("created", NA_real_)),
    duration = as_seconds(if (length(rows)) mapply(run_duration, started, ended, USE.NAMES = FALSE) else numeric()),
    stringsAsFactors = FALSE
  )
  df
}

as_seconds <- function(x) as.difftime(as.numeric(x), units = "secs")

# One column of bridge rows (a list of named lists), `default` where a row lacks it.
row_col <- function(rows, name, default) {
  vapply(rows, function(r) r[[name]] %||% default, default)
}

#' Metrics a run logged
#'
#' Values that steps recorded with [log_metric()]; repeated names form a
#' series (`index` 0, 1, ...).
#'
#' @inheritParams run_status
#' @return A data frame: `step`, `name`, `value` (always numeric; `NaN`/`Inf`
#'   as such), `text` (the value of string metrics, whose `value` is `NA`),
#'   `index`, `time`.
#' @family runs
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("job"); dir.create(dir); script <- file.path(dir, "job.R")
#' writeLines('amlr::log_metric("rmse", 0.25)', script)
#' submit_r_pipeline(script, quiet = TRUE)
#' run_metrics()
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
run_metrics <- function(run = "latest") {
  rows <- amlr_call("metrics", list(run = run_ref(run)))
  col <- function(name, default) row_col(rows, name, default)
  num <- col("value_num", NA_real_)
  txt <- col("value_str", NA_character_)
  # Numbers stay numbers: a string metric (or NaN / Inf, which JSON cannot
  # carry as numbers) goes to `text`, and never turns `value` into character.
  special <- c("NaN" = NaN, "Inf" = Inf, "-Inf" = -Inf, "NA" = NA_real_)
  is_special <- !is.na(txt) & txt %in% names(special)
  num[is_special] <- special[txt[is_special]]
  txt[is_special] <- NA_character_
  data.frame(
    step = col("step", NA_character_),
    name = col("name", NA_character_),
    value = num,
    text = txt,
    index = col("idx", NA_integer_),
    time = parse_metric_time(col("time", NA_character_)),
    stringsAsFactors = FALSE
  )
}

#' Cancel a run
#'
#' Stops every step process of the run (R and whatever it started); steps
#' that had not finished end `Canceled`. Cancelling a run that has already
#' ended only says so, so `run_cancel()` is safe in clean-up code.
#'
#' @inheritParams run_status
#' @return The `amlr_run`, invisibly.
#' @family runs
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("job"); dir.create(dir); script <- file.path(dir, "job.R")
#' writeLines("Sys.sleep(30)", script)
#' run <- submit_r_pipeline(script, wait = FALSE, quiet = TRUE)
#' run_cancel(run)
#' run_status(run)
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
run_cancel <- function(run = "latest") {
  ref <- run_ref(run)
  out <- tryCatch(
    new_amlr_run(amlr_call("cancel", list(run = ref))),
    amlr_error_run_not_active = function(e) NULL
  )
  if (is.null(out)) {
    out <- run_info(ref)
    cli::cli_alert_info("Run {.val {out$id}} had already ended ({out$status}); nothing to cancel.")
  } else {
    cli::cli_alert_success("Run {.val {out$id}} is {out$status}.")
  }
  invisible(out)
}

#' Copy a run's outputs and logs out of the run folder
#'
#' @inheritParams run_status
#' @param step A step name, or `NULL` for every step.
#' @param output An output name, or `NULL` for every output (and the logs).
#' @param dest Folder to copy into; files land in `dest/<step>/<output>/`.
#' @param overwrite Replace what is already there. Without it, nothing is
#'   copied when any target exists.
#' @return The paths written, invisibly.
#' @family runs
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("step"); dir.create(dir)
#' writeLines('writeLines("hi", file.path(amlr::step_output("out"), "hi.txt"))', file.path(dir, "s.R"))
#' submit_r_pipeline(r_step(file.path(dir, "s.R"), outputs = "out"), quiet = TRUE)
#' run_download(dest = tempfile("dl"))
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
run_download <- function(run = "latest", step = NULL, output = NULL, dest = ".", overwrite = FALSE) {
  check_optional_string(step, "step")
  check_optional_string(output, "output")
  check_string_arg(dest, "dest")
  check_flag(overwrite, "overwrite")
  if (!is_absolute_path(dest)) dest <- file.path(getwd(), dest)
  dest <- normalize_dest(dest)
  written <- amlr_call("download", list(run = run_ref(run), step = step, output = output, dest = dest,
                                        overwrite = isTRUE(overwrite)))
  written <- vapply(as.character(unlist(written)), normalize_dest, "", USE.NAMES = FALSE)
  cli::cli_alert_success("Copied {length(written)} item{?s} to {.path {dest}}.")
  invisible(written)
}

# An absolute path without `.`/`..` or doubled slashes, also when (part of) it does not exist yet.
normalize_dest <- function(path) {
  path <- normalizePath(path, winslash = "/", mustWork = FALSE)
  parts <- strsplit(path, "/", fixed = TRUE)[[1]]
  out <- character()
  for (p in parts[-1]) {
    if (p %in% c("", ".")) next
    if (p == "..") out <- utils::head(out, -1L) else out <- c(out, p)
  }
  paste0(parts[1], "/", paste(out, collapse = "/"))
}

format_published <- function(p) {
  if (is.character(p)) return(paste(p, collapse = " "))
  paste0("endpoint ", p$endpoint, ", version ", p$version,
         if (isTRUE(p$reused)) " (an identical pipeline was already published)" else "")
}

# Metric times as the step wrote them ("2026-11-28T07:12:24.170+0000"), as date-times.
parse_metric_time <- function(x) {
  out <- as.POSIXct(x, format = "%Y-%m-%dT%H:%M:%OS%z", tz = "UTC")
  plain <- is.na(out) & !is.na(x)
  out[plain] <- as.POSIXct(x[plain], format = "%Y-%m-%dT%H:%M:%OS", tz = "UTC")
  out
}

#' Rebuild the run registry from the run folders
#'
#' The registry (`registry.sqlite` under `AMLR_HOME`) is an index; each local
#' run's folder (`runs/<id>/`, with its `run.json`, logs, outputs and
#' metrics) is the record. When the registry is damaged, emptied or deleted,
#' amlr stops with an error of class `amlr_error_registry_damaged` rather than
#' start a new, empty one, and [run_list()] warns about run folders it does
#' not list. `run_registry_rebuild()` then adds every run folder back: a
#' registry that cannot be opened is first moved aside (to
#' `registry.sqlite.damaged-<time>`, never deleted); a readable one keeps its
#' rows, remote runs included. Runs on Azure ML that were only in a lost
#' registry are not found again this way (they stay on Azure ML).
#'
#' @return A list: `path` (the registry), `added` (run ids added back),
#'   `skipped` (folders that could not be read), `moved_to` (where a damaged
#'   file went, or `NULL`), `runs` (how many runs the registry now lists);
#'   invisibly.
#' @family runs
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("job"); dir.create(dir); script <- file.path(dir, "job.R")
#' writeLines('cat("hi\\n")', script)
#' submit_r_pipeline(script, quiet = TRUE)
#' # The registry file is lost ...
#' unlink(file.path(Sys.getenv("AMLR_HOME"), "registry.sqlite"))
#' try(run_list())
#' # ... and rebuilt from the run folders:
#' run_registry_rebuild()
#' run_list()
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
run_registry_rebuild <- function() {
  res <- amlr_call("registry_rebuild", list())
  added <- as.character(unlist(res$added))
  skipped <- as.character(unlist(res$skipped))
  bullets <- c(v = "Registry {.path {res$path}} lists {res$runs} run{?s};
                    {length(added)} added back from the run folders.")
  if (!is.null(res$moved_to)) bullets <- c(bullets, i = "The damaged file was moved to {.path {res$moved_to}}.")
  if (length(skipped)) bullets <- c(bullets, x = "Could not read {length(skipped)} run folder{?s}: {.val {skipped}}.")
  cli::cli_inform(bullets)
  invisible(list(path = res$path, added = added, skipped = skipped, moved_to = res$moved_to, runs = res$runs))
}
