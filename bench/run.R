# amlr benchmarks (`make bench`), printed plainly:
#
# 1. The cost of one run_status("latest") through each bridge, after a
#    warm-up call (which starts Python for reticulate): milliseconds, and the
#    ratio reticulate / system2 (target: <= 0.1).
# 2. A trivial script run by amlr's local backend (submit, wait, read back)
#    against bare Rscript on the same script, in the same R process.
#
# Runs in a private AMLR_HOME; needs Python (AMLR_PYTHON or amlr_python())
# and, for the reticulate numbers, the reticulate package.

suppressPackageStartupMessages(library(amlr))

here <- local({
  file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
  if (is.na(file)) "bench" else dirname(normalizePath(file))
})
source(file.path(here, "timing.R"))

STATUS_CALLS <- c(system2 = 30L, reticulate = 300L)
RUNS <- 5L

home <- tempfile("amlr-bench-home-")
dir.create(home)
Sys.setenv(AMLR_HOME = home)
on.exit(unlink(home, recursive = TRUE), add = TRUE)

bridges <- c("system2", if (requireNamespace("reticulate", quietly = TRUE)) "reticulate")
python <- amlr_python()
if (is.na(python$path)) stop("No Python for amlr: run amlr::install_amlr_python() or set AMLR_PYTHON.")

src <- tempfile("amlr-bench-src-")
dir.create(src)
script <- file.path(src, "trivial.R")
writeLines('cat("hello from a trivial step\\n")', script)
# No reuse: every run must really start R.
step <- r_step(script, allow_reuse = FALSE)

with_bridge <- function(bridge, code) {
  old <- options(amlr.bridge = bridge)
  on.exit(options(old))
  code
}

cat("amlr benchmarks\n")
cat(sprintf("  amlr %s, %s, Python %s (%s)\n\n", utils::packageVersion("amlr"), R.version.string,
            amlr:::python_version(python$path), python$path))

# -- 1. One run_status("latest") per bridge ----------------------------------------
# "latest" must exist: one run first.
invisible(submit_r_pipeline(step, experiment = "bench", quiet = TRUE))

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
  ratio <- status_ms$reticulate$median / status_ms$system2$median
  report_line("ratio reticulate / system2", sprintf("%.3f", ratio),
              sprintf("(target <= 0.1: %s)", if (ratio <= 0.1) "met" else "NOT met"))
} else {
  report_line("ratio reticulate / system2", "n/a", "(reticulate is not installed)")
}

# -- 2. A trivial script: amlr local run vs bare Rscript --------------------------------
rscript <- file.path(R.home("bin"), "Rscript")
bare <- time_calls(function() {
  status <- system2(rscript, c("--no-site-file", "--no-environ", "--no-restore", shQuote(script)),
                    stdout = FALSE, stderr = FALSE)
  if (!identical(status, 0L)) stop("bare Rscript failed with status ", status)
}, RUNS, warmup = 1L)

amlr_runs <- list()
for (bridge in bridges) {
  amlr_runs[[bridge]] <- with_bridge(bridge, time_calls(function() {
    run <- submit_r_pipeline(step, experiment = "bench", quiet = TRUE)
    if (!identical(run$status, "Completed")) stop("the benchmark run ended ", run$status)
  }, RUNS, warmup = 1L))
}

cat(sprintf("\n2. A trivial script, start to finish (median of %d, after a warm-up run)\n", RUNS))
report_line("bare Rscript", format_ms(bare$median))
for (bridge in names(amlr_runs)) {
  t <- amlr_runs[[bridge]]
  report_line(sprintf("amlr local run (%s bridge)", bridge), format_ms(t$median),
              sprintf("ratio to bare Rscript %.1f", t$median / bare$median))
}
cat("\n  An amlr local run is: submit (validate, snapshot, registry, start the runner), the step through\n",
    "  the bootstrapper, waiting (polling over the bridge), and reading the status back.\n", sep = "")
