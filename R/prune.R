#' Delete old runs and the stored files only they use
#'
#' Local runs keep their snapshots, logs, metrics and outputs under
#' `AMLR_HOME`; unchanged files are stored once and shared between runs (hard
#' links into a content store). `run_prune()` deletes the runs you name by age
#' or count -- their folders and their records -- and then the stored files no
#' remaining run uses. Runs still active are never pruned, nor a run whose
#' outputs a run you keep reused (its outputs would vanish under it). For a
#' run on Azure ML only the local record goes; the job stays on Azure ML.
#'
#' @param keep Keep this many of the newest runs (of `experiment`, if given).
#' @param older_than Prune only runs created more than this many days ago.
#' @param experiment Only runs of this experiment; `NULL` for all.
#' @param dry_run List what would go and how much space it would free, and
#'   delete nothing.
#' @return A list, invisibly: `runs` (the ids pruned, or that would be),
#'   `kept_for_reuse` (ids kept because a kept run reused their outputs),
#'   `bytes` (space freed) and `dry_run`.
#' @family runs
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("job"); dir.create(dir); script <- file.path(dir, "job.R")
#' writeLines('cat("hi\\n")', script)
#' for (i in 1:3) submit_r_pipeline(r_step(script, allow_reuse = FALSE), quiet = TRUE)
#' run_prune(keep = 1, dry_run = TRUE)
#' run_prune(keep = 1)
#' nrow(run_list())
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
run_prune <- function(keep = NULL, older_than = NULL, experiment = NULL, dry_run = FALSE) {
  if (is.null(keep) && is.null(older_than)) {
    amlr_abort(c("Say which runs to prune.",
                 i = "For example {.code run_prune(keep = 20)} or {.code run_prune(older_than = 30)} (days)."),
               "bad_request")
  }
  if (!is.null(keep) && (!is.numeric(keep) || length(keep) != 1L || is.na(keep) || keep < 0 || keep != round(keep))) {
    amlr_abort("{.arg keep} must be a whole number of runs (0 or more).", "bad_request")
  }
  if (!is.null(older_than) && (!is.numeric(older_than) || length(older_than) != 1L || is.na(older_than) ||
                               older_than < 0)) {
    amlr_abort("{.arg older_than} must be a number of days (0 or more).", "bad_request")
  }
  if (!is.logical(dry_run) || length(dry_run) != 1L || is.na(dry_run)) {
    amlr_abort("{.arg dry_run} must be TRUE or FALSE.", "bad_request")
  }
  res <- amlr_call("prune", list(keep = keep, older_than = older_than, experiment = experiment, dry_run = dry_run))
  runs <- as.character(unlist(res$runs))
  size <- format_bytes(res$bytes %||% 0)
  if (isTRUE(res$dry_run)) {
    cli::cli_alert_info("Would prune {length(runs)} run{?s}, freeing {size}.")
    if (length(runs)) cli::cli_text("{.val {runs}}")
  } else {
    cli::cli_alert_success("Pruned {length(runs)} run{?s}, freed {size}.")
  }
  kept <- as.character(unlist(res$kept_for_reuse))
  if (length(kept)) {
    cli::cli_alert_info("Kept {length(kept)} run{?s} whose outputs a kept run reused: {.val {kept}}.")
  }
  invisible(list(runs = runs, kept_for_reuse = kept, bytes = res$bytes %||% 0, dry_run = isTRUE(res$dry_run)))
}

format_bytes <- function(n) {
  units <- c("B", "KB", "MB", "GB", "TB")
  i <- if (n > 0) min(length(units), floor(log(n, 1024)) + 1) else 1
  if (i == 1) paste(n, "B") else sprintf("%.1f %s", n / 1024^(i - 1), units[i])
}
