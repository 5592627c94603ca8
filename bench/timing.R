# Timing and reporting helpers for bench/run.R: plain base R, so the numbers
# have no dependency of their own.

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
  summarise_ms(vapply(seq_len(times), function(i) 1000 * elapsed(fn()), numeric(1)))
}

# Time several functions in rounds, each round calling every one of them in
# turn, so a change of machine load during the benchmark weighs on all of
# them alike (what a ratio between them needs). `warmup` untimed rounds
# first; a named list of summaries, as time_calls() returns, in milliseconds.
time_rounds <- function(fns, times, warmup = 1L) {
  for (i in seq_len(warmup)) for (fn in fns) fn()
  ms <- matrix(NA_real_, nrow = times, ncol = length(fns), dimnames = list(NULL, names(fns)))
  for (i in seq_len(times)) {
    for (j in seq_along(fns)) ms[i, j] <- 1000 * elapsed(fns[[j]]())
  }
  lapply(stats::setNames(seq_along(fns), names(fns)), function(j) summarise_ms(ms[, j]))
}

# The summary time_calls() returns, for timings taken some other way.
summarise_ms <- function(ms) {
  list(median = stats::median(ms), mean = mean(ms), min = min(ms), max = max(ms), n = length(ms))
}

format_ms <- function(ms) {
  if (is.na(ms)) return("n/a")
  if (ms < 10) sprintf("%.2f ms", ms) else sprintf("%.0f ms", ms)
}

# One aligned line: label, value, extra.
report_line <- function(label, value, extra = "") {
  cat(sprintf("  %-34s %10s  %s\n", label, value, extra))
}

# A ratio against its target (lower is better): the benchmarks' verdict line.
ratio_line <- function(label, ratio, target, digits = 2L) {
  verdict <- if (is.na(ratio)) "n/a" else if (ratio <= target) "met" else "NOT met"
  report_line(label, sprintf("%.*f", digits, ratio), sprintf("(target <= %s: %s)", format(target), verdict))
}

# The largest number of [start, end) intervals open at once: how many steps
# of a run really ran side by side.
max_overlap <- function(start, end) {
  start <- as.numeric(start)
  end <- as.numeric(end)
  max(vapply(start, function(t) sum(start <= t & end > t), numeric(1)))
}

# Where the numbers came from: cores, CPU model and load (Linux; "unknown"
# elsewhere), so a reader can judge them.
machine_summary <- function() {
  cpu <- if (file.exists("/proc/cpuinfo")) grep("^model name", readLines("/proc/cpuinfo"), value = TRUE) else character()
  cpu <- if (length(cpu)) trimws(sub("^[^:]*:", "", cpu[1])) else "unknown CPU"
  load <- if (file.exists("/proc/loadavg")) {
    paste(strsplit(readLines("/proc/loadavg", n = 1L), " ")[[1]][1:3], collapse = " ")
  } else {
    "unknown"
  }
  sprintf("%s cores (%s), load average %s", parallel::detectCores(), cpu, load)
}
