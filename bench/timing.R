# Timing helpers for bench/run.R: plain base R, so the numbers have no
# dependency of their own.

# Elapsed wall-clock seconds of one evaluation of `expr` (Sys.time() has
# microsecond resolution; proc.time() only milliseconds).
elapsed <- function(expr) {
  start <- Sys.time()
  force(expr)
  as.numeric(difftime(Sys.time(), start, units = "secs"))
}

# Time `fn()` `times` times after `warmup` untimed calls; milliseconds.
time_calls <- function(fn, times, warmup = 1L) {
  for (i in seq_len(warmup)) fn()
  ms <- vapply(seq_len(times), function(i) 1000 * elapsed(fn()), numeric(1))
  list(median = stats::median(ms), mean = mean(ms), min = min(ms), max = max(ms), n = times)
}

format_ms <- function(ms) {
  if (is.na(ms)) return("n/a")
  if (ms < 10) sprintf("%.2f ms", ms) else sprintf("%.0f ms", ms)
}

# One aligned line: label, value, extra.
report_line <- function(label, value, extra = "") {
  cat(sprintf("  %-34s %10s  %s\n", label, value, extra))
}
