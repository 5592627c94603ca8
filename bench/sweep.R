# A 9-trial sweep of 1-second trials with max_concurrent = 2, against the same
# 9 runs one after another (9 single-step local runs, what a loop around
# submit_r_pipeline() did before r_sweep()), and, for information, the sweep
# with max_concurrent = 1. Target (issue 16): sweep / sequential <= 0.6 on 2
# cores. The two sides take turns, REPS rounds; medians. Nothing is asserted.
#
#   R_LIBS=$PWD/.Rlib AMLR_PYTHON=$PWD/.venv/bin/python Rscript bench/sweep.R

suppressPackageStartupMessages(library(amlr))
here <- local({
  file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
  if (is.na(file)) "bench" else dirname(normalizePath(file))
})
source(file.path(here, "timing.R"))

REPS <- 2L
home <- tempfile("amlr-bench-sweep-")
dir.create(home)
Sys.setenv(AMLR_HOME = home)
on.exit(unlink(home, recursive = TRUE), add = TRUE)

dir <- tempfile("sweep-src-")
dir.create(dir)
writeLines(c('a <- as.numeric(commandArgs(TRUE))', 'Sys.sleep(1)', 'amlr::log_metric("loss", (a[1] - 2)^2 + a[2])'),
           file.path(dir, "trial.R"))
# No reuse: every trial must really run.
trial <- r_step(file.path(dir, "trial.R"), args = c("${{search_space.a}}", "${{search_space.b}}"), allow_reuse = FALSE)
params <- list(a = 1:3, b = 1:3)
grid <- expand.grid(a = 1:3, b = 1:3)

check <- function(run) if (!identical(run$status, "Completed")) stop("run ", run$id, " ended ", run$status)
sweep_of <- function(n) function() check(submit_r_pipeline(r_sweep(trial, params, "loss", max_concurrent = n),
                                                           quiet = TRUE, max_parallel = 2))
one_by_one <- function() {
  for (i in seq_len(nrow(grid))) {
    check(submit_r_pipeline(r_step(file.path(dir, "trial.R"), args = c(grid$a[i], grid$b[i]), allow_reuse = FALSE),
                            quiet = TRUE))
  }
}

cat(sprintf("amlr sweep benchmark, %s; %d cores; load %s\n", format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC"),
            parallel::detectCores(), paste(readLines("/proc/loadavg", warn = FALSE), collapse = " ")))
t <- time_rounds(list(sequential = one_by_one, sweep1 = sweep_of(1L), sweep2 = sweep_of(2L)), times = REPS,
                 warmup = 0L)
overlap <- local({
  s <- run_steps()
  s <- s[grepl("__", s$step), ]
  max(vapply(seq_len(nrow(s)), function(i) sum(s$started <= s$started[i] & s$ended > s$started[i]), numeric(1)))
})
line <- function(label, x) cat(sprintf("  %-34s %8s  min %s\n", label, format_ms(x$median), format_ms(x$min)))
cat("9 trials of 1 s (median of", REPS, "rounds)\n")
line("9 single-step runs, one by one", t$sequential)
line("r_sweep(), max_concurrent = 1", t$sweep1)
line("r_sweep(), max_concurrent = 2", t$sweep2)
cat(sprintf("  at most %d trials at once in the last sweep\n", overlap))
ratio <- t$sweep2$median / t$sequential$median
cat(sprintf("  ratio sweep (2) / one by one        %6.2f  (target <= 0.6: %s)\n", ratio,
            if (ratio <= 0.6) "met" else "NOT met"))
cat(sprintf("  ratio sweep (2) / sweep (1)         %6.2f\n", t$sweep2$median / t$sweep1$median))
cat(sprintf("load at the end: %s\n", paste(readLines("/proc/loadavg", warn = FALSE), collapse = " ")))
