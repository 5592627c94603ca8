# amlr benchmarks (`make bench`), printed plainly. Each one is a ratio of two
# timings taken in this one process, so it says something about amlr rather
# than about how fast the machine is:
#
# 1. The cost of one run_status("latest") through each bridge, after a
#    warm-up call (which starts Python for reticulate): milliseconds, and the
#    ratio reticulate / system2 (target: <= 0.1).
# 2. examples/hello/hello.R run as a single-step local run (submit, wait,
#    read back) through each bridge against bare Rscript on the same script
#    (issue 3 item 9a, target: <= 1.3; issue 13: <= 1.15 over reticulate).
# 3. Resubmitting an unchanged 5-step pipeline against its first run: every
#    step is reused (issue 3 item 9b, target: <= 0.1).
# 4. Four independent 1-second steps with max_parallel = 2 against the same
#    four one after another (issue 3 item 9c, target: <= 0.6).
#
# Nothing here asserts a time: a missed target is printed, not raised. A run
# that fails, or a resubmission that re-runs a step, stops the benchmark,
# because its numbers would mean nothing.
#
# Runs in a private AMLR_HOME; needs Python (AMLR_PYTHON or amlr_python())
# and, for the reticulate numbers, the reticulate package.

suppressPackageStartupMessages(library(amlr))

here <- local({
  file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
  if (is.na(file)) "bench" else dirname(normalizePath(file))
})
source(file.path(here, "timing.R"))
HELLO_TARGET <- c(system2 = 1.3, reticulate = 1.15)  # issue 13

STATUS_CALLS <- c(system2 = 30L, reticulate = 300L)
RUNS <- 10L
PIPELINE_REPS <- 3L     # first run + resubmission pairs, each on freshly written scripts
CHAIN_STEP_SLEEP <- 0.3 # seconds of "work" per chain step, on top of its computation
PARALLEL_REPS <- 3L     # sequential + parallel pairs
PARALLEL_STEPS <- 4L
PARALLEL_SLEEP <- 1     # seconds per independent step

home <- tempfile("amlr-bench-home-")
dir.create(home)
Sys.setenv(AMLR_HOME = home)

bridges <- c("system2", if (requireNamespace("reticulate", quietly = TRUE)) "reticulate")
python <- amlr_python()
if (is.na(python$path)) stop("No Python for amlr: run amlr::install_amlr_python() or set AMLR_PYTHON.")

hello <- normalizePath(file.path(dirname(here), "examples", "hello", "hello.R"), mustWork = TRUE)
# No reuse: every run must really start R.
hello_step <- r_step(hello, allow_reuse = FALSE)
rscript <- file.path(R.home("bin"), "Rscript")

with_bridge <- function(bridge, code) {
  old <- options(amlr.bridge = bridge)
  on.exit(options(old))
  code
}

# One submit_r_pipeline() that must end Completed; its run.
submit_quietly <- function(pipeline, ...) {
  run <- submit_r_pipeline(pipeline, experiment = "bench", quiet = TRUE, ...)
  if (!identical(run$status, "Completed")) stop("the benchmark run ", run$id, " ended ", run$status)
  run
}

cat("amlr benchmarks, ", format(Sys.time(), "%Y-%m-%d %H:%M %Z"), "\n", sep = "")
cat(sprintf("  amlr %s, %s, Python %s (%s)\n", utils::packageVersion("amlr"), R.version.string,
            amlr:::python_version(python$path), python$path))
cat(sprintf("  %s\n\n", machine_summary()))

# -- 1. One run_status("latest") per bridge ----------------------------------------
# "latest" must exist: one run first.
invisible(submit_quietly(hello_step))

status_ms <- list()
for (bridge in bridges) {
  first <- with_bridge(bridge, 1000 * elapsed(run_status("latest")))
  timing <- with_bridge(bridge, time_calls(function() run_status("latest"), STATUS_CALLS[[bridge]], warmup = 1L))
  status_ms[[bridge]] <- c(first = first, timing)
}

cat(sprintf("1. One run_status(\"latest\") call, after a warm-up call (median of n calls)\n"))
for (bridge in names(status_ms)) {
  t <- status_ms[[bridge]]
  report_line(bridge, format_ms(t$median),
              sprintf("mean %s, min %s, n = %d; first call %s", format_ms(t$mean), format_ms(t$min), t$n,
                      format_ms(t$first)))
}
if (all(c("system2", "reticulate") %in% names(status_ms))) {
  ratio_line("ratio reticulate / system2", status_ms$reticulate$median / status_ms$system2$median, 0.1,
             digits = 3L)
} else {
  report_line("ratio reticulate / system2", "n/a", "(reticulate is not installed)")
}

# -- 2. The hello script: amlr local run vs bare Rscript --------------------------------
# Bare Rscript and the local run through each bridge take turns (see
# time_rounds()). The bootstrapper starts the step with these same Rscript
# flags.
bare_hello <- function() {
  status <- system2(rscript, c("--no-site-file", "--no-environ", "--no-restore", shQuote(hello)),
                    stdout = FALSE, stderr = FALSE)
  if (!identical(status, 0L)) stop("bare Rscript failed with status ", status)
}
hello_via <- function(bridge) {
  force(bridge)
  function() with_bridge(bridge, submit_quietly(hello_step))
}
hello_fns <- c(list(bare = bare_hello), lapply(stats::setNames(bridges, bridges), hello_via))
hello_ms <- time_rounds(hello_fns, RUNS, warmup = 1L)
bare <- hello_ms$bare
hello_runs <- hello_ms[bridges]

cat(sprintf("\n2. examples/hello/hello.R, start to finish (median of %d rounds, after a warm-up round)\n", RUNS))
report_line("bare Rscript", format_ms(bare$median), sprintf("min %s", format_ms(bare$min)))
for (bridge in names(hello_runs)) {
  t <- hello_runs[[bridge]]
  report_line(sprintf("amlr local run (%s bridge)", bridge), format_ms(t$median), sprintf("min %s", format_ms(t$min)))
}
for (bridge in names(hello_runs)) {
  ratio_line(sprintf("ratio %s / bare Rscript", bridge), hello_runs[[bridge]]$median / bare$median,
             HELLO_TARGET[[bridge]])
}
cat("  An amlr local run is: submit (validate, snapshot, registry, start the runner), the step through\n",
    "  the bootstrapper, waiting (polling over the bridge), and reading the status back.\n", sep = "")

# -- 3. Resubmitting an unchanged 5-step pipeline ------------------------------------
# A chain simulate -> centre -> scale -> sort -> summarise: each step reads
# the previous step's output, computes, sleeps a little (standing in for
# work that takes time) and writes its own output. The chain's body, one
# element per step; `x` is the data passed along.
CHAIN <- list(
  simulate = "set.seed(42); x <- stats::rnorm(2e5, mean = 10, sd = 3)",
  centre = "x <- x - mean(x)",
  scale = "x <- x / stats::sd(x)",
  sort = "x <- sort(x)",
  summarise = "writeLines(format(stats::quantile(x, c(0.05, 0.5, 0.95))), file.path(amlr::step_output('data'), 'summary.txt'))"
)

# Writes the chain's scripts into a new folder and returns the pipeline.
# `repetition` goes into each script, so every repetition's first run has
# fingerprints no earlier run has (reuse would otherwise find the previous
# repetition's steps).
chain_pipeline <- function(repetition) {
  dir <- tempfile(sprintf("amlr-bench-chain-%d-", repetition))
  dir.create(dir)
  steps <- list()
  for (i in seq_along(CHAIN)) {
    name <- names(CHAIN)[i]
    script <- file.path(dir, paste0(name, ".R"))
    writeLines(c(
      sprintf("# amlr benchmark chain, step %d of %d (repetition %d)", i, length(CHAIN), repetition),
      if (i > 1L) "x <- readRDS(file.path(amlr::step_input('previous'), 'x.rds'))",
      CHAIN[[i]],
      sprintf("Sys.sleep(%s)", CHAIN_STEP_SLEEP),
      if (i < length(CHAIN)) "saveRDS(x, file.path(amlr::step_output('data'), 'x.rds'))"
    ), script)
    inputs <- if (i > 1L) list(previous = output_of(steps[[i - 1L]], "data")) else list()
    steps[[i]] <- r_step(script, name = name, inputs = inputs, outputs = "data")
  }
  r_pipeline(steps, name = "bench_chain")
}

first_ms <- second_ms <- numeric()
for (rep in seq_len(PIPELINE_REPS)) {
  p <- chain_pipeline(rep)
  first_run <- NULL
  first_ms[rep] <- 1000 * elapsed(first_run <- submit_quietly(p))
  if (any(run_steps(first_run)$reused)) stop("the first run of repetition ", rep, " reused a step")
  second_ms[rep] <- 1000 * elapsed(second_run <- submit_quietly(p))
  steps <- run_steps(second_run)
  if (!all(steps$reused) || !all(steps$reused_from == first_run$id)) {
    stop("the resubmission of repetition ", rep, " re-ran steps: ",
         paste(steps$step[!steps$reused], collapse = ", "))
  }
}
first <- summarise_ms(first_ms)
second <- summarise_ms(second_ms)

cat(sprintf("\n3. An unchanged %d-step chain resubmitted (median of %d first runs / resubmissions)\n",
            length(CHAIN), PIPELINE_REPS))
report_line("first run", format_ms(first$median), sprintf("min %s", format_ms(first$min)))
report_line("resubmission", format_ms(second$median), sprintf("min %s", format_ms(second$min)))
report_line("steps reused on resubmission", sprintf("%d/%d", length(CHAIN), length(CHAIN)),
            sprintf("(run_steps()$reused all TRUE, from the first run, in all %d)", PIPELINE_REPS))
ratio_line("ratio resubmission / first run", second$median / first$median, 0.1)

# -- 4. Independent steps in parallel vs in sequence -----------------------------------
par_dir <- tempfile("amlr-bench-parallel-")
dir.create(par_dir)
sleep_script <- file.path(par_dir, "sleep.R")
writeLines(sprintf("Sys.sleep(%s)", PARALLEL_SLEEP), sleep_script)
sleepers <- r_pipeline(
  lapply(seq_len(PARALLEL_STEPS), function(i) r_step(sleep_script, name = paste0("sleep_", i), allow_reuse = FALSE)),
  name = "bench_parallel"
)

timed_sleepers <- function(max_parallel) {
  run <- NULL
  ms <- 1000 * elapsed(run <- submit_quietly(sleepers, max_parallel = max_parallel))
  steps <- run_steps(run)
  list(ms = ms, overlap = max_overlap(steps$started, steps$ended))
}
seq_runs <- par_runs <- list()
for (rep in seq_len(PARALLEL_REPS)) {
  seq_runs[[rep]] <- timed_sleepers(1L)
  par_runs[[rep]] <- timed_sleepers(2L)
}
sequential <- summarise_ms(vapply(seq_runs, `[[`, numeric(1), "ms"))
parallel2 <- summarise_ms(vapply(par_runs, `[[`, numeric(1), "ms"))
overlap <- function(runs) max(vapply(runs, `[[`, numeric(1), "overlap"))

cat(sprintf("\n4. %d independent %ss steps (median of %d runs each)\n", PARALLEL_STEPS, PARALLEL_SLEEP, PARALLEL_REPS))
report_line("max_parallel = 1", format_ms(sequential$median),
            sprintf("min %s; at most %d step(s) at once", format_ms(sequential$min), overlap(seq_runs)))
report_line("max_parallel = 2", format_ms(parallel2$median),
            sprintf("min %s; at most %d step(s) at once", format_ms(parallel2$min), overlap(par_runs)))
ratio_line("ratio parallel / sequential", parallel2$median / sequential$median, 0.6)

# -- Summary: the three ratios of issue 3, item 9 ------------------------------------
cat("\nIssue 3, item 9\n")
for (bridge in names(hello_runs)) {
  ratio_line(sprintf("(a) hello %s / Rscript", bridge), hello_runs[[bridge]]$median / bare$median,
             HELLO_TARGET[[bridge]])
}
ratio_line("(b) resubmission / first run", second$median / first$median, 0.1)
ratio_line("(c) max_parallel 2 / sequential", parallel2$median / sequential$median, 0.6)

# Other work on the machine is the main noise in these numbers: say how much
# there was by the end too.
cat(sprintf("\n  %s (at the end)\n", machine_summary()))

# Every run has ended (all were waited for), so nothing writes here any more.
unlink(home, recursive = TRUE)
