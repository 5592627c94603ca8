# How amlr's costs grow with the work (issue 13): ratios against a baseline
# measured in this same run, never absolute targets. `make bench` runs it
# after bench/run.R.
#
# 1. Waiting: R CPU (the submitting R session only) per step for chains and
#    fan-outs of 10, 50 and 200 trivial steps, first run and rerun (all
#    reused). Linear growth means the per-step cost at 200 is within 2x of
#    the per-step cost at 50.
# 2. Logs: a step printing 10 MB and 50 MB through submit_r_pipeline()
#    (streamed to a sink) against bare Rscript writing the same to a file;
#    and run_logs(tail = TRUE, n = 20) against reading the whole log.
# 3. Snapshots: a folder of 50,000 small files and one of 200 MB, first
#    submit and unchanged resubmit, against `tar -cf` of the same folder;
#    and the bytes an unchanged resubmission adds to AMLR_HOME.
# 4. run_status(id) with 10 runs in the registry against 100,000.
#
# Nothing here asserts a time; a missed target is printed.

suppressPackageStartupMessages(library(amlr))
here <- local({
  file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
  if (is.na(file)) "bench" else dirname(normalizePath(file))
})
source(file.path(here, "timing.R"))

STEPS <- c(10L, 50L, 200L)
LOG_MB <- c(10L, 50L)
SMALL_FILES <- 50000L
BIG_MB <- 200L
RUNS_MANY <- 100000L

home <- tempfile("amlr-bench-growth-")
dir.create(home)
Sys.setenv(AMLR_HOME = home)
on.exit(unlink(home, recursive = TRUE), add = TRUE)
python <- amlr_python()$path

cat("amlr growth benchmarks, ", format(Sys.time(), "%Y-%m-%d %H:%M %Z"), "\n", sep = "")
cat(sprintf("  %s\n\n", machine_summary()))

r_cpu <- function(expr) {
  before <- proc.time()
  force(expr)
  after <- proc.time()
  (after[["user.self"]] - before[["user.self"]]) + (after[["sys.self"]] - before[["sys.self"]])
}

write_steps <- function(n, shape) {
  dir <- tempfile("growth-")
  dir.create(dir)
  writeLines('cat("step", Sys.getenv("AMLR_STEP_NAME"), "\\n")', file.path(dir, "s.R"))
  steps <- list()
  for (i in seq_len(n)) {
    name <- sprintf("s%03d", i)
    inputs <- if (shape == "chain" && i > 1) list(x = output_of(steps[[i - 1]], "o")) else list()
    steps[[i]] <- r_step(file.path(dir, "s.R"), name = name, inputs = inputs, outputs = "o")
  }
  do.call(r_pipeline, c(steps, list(name = paste0(shape, n))))
}

# -- 1. waiting ------------------------------------------------------------------------------------
cat("1. R CPU while waiting, per step (ms)\n")
per_step <- list()
for (shape in c("chain", "fanout")) {
  for (n in STEPS) {
    p <- write_steps(n, shape)
    first <- r_cpu(suppressMessages(utils::capture.output(submit_r_pipeline(p, max_parallel = 2))))
    again <- r_cpu(suppressMessages(utils::capture.output(submit_r_pipeline(p))))
    per_step[[paste(shape, n)]] <- c(first = 1000 * first / n, again = 1000 * again / n)
    report_line(sprintf("%s of %d, first run", shape, n), sprintf("%.2f", 1000 * first / n))
    report_line(sprintf("%s of %d, rerun (reused)", shape, n), sprintf("%.2f", 1000 * again / n))
  }
  big <- STEPS[length(STEPS)]
  mid <- STEPS[length(STEPS) - 1L]
  ratio_line(sprintf("%s: per step %d / per step %d (first)", shape, big, mid),
             per_step[[paste(shape, big)]][["first"]] / per_step[[paste(shape, mid)]][["first"]], 2)
  ratio_line(sprintf("%s: per step %d / per step %d (rerun)", shape, big, mid),
             per_step[[paste(shape, big)]][["again"]] / per_step[[paste(shape, mid)]][["again"]], 2)
}
cat("\n")

# -- 2. logs ---------------------------------------------------------------------------------------
cat("2. Big logs\n")
rscript <- file.path(R.home("bin"), "Rscript")
log_dir <- tempfile("growth-log-")
dir.create(log_dir)
for (mb in LOG_MB) {
  script <- file.path(log_dir, sprintf("log%d.R", mb))
  writeLines(sprintf('line <- strrep("x", 99); for (i in seq_len(%d * 10000)) cat(line, "\\n", sep = "")', mb), script)
  out <- tempfile()
  bare <- elapsed(system2(rscript, c("--no-site-file", "--no-environ", "--no-restore", shQuote(script)),
                          stdout = out))
  sink_file <- file(tempfile(), open = "w")
  amlr <- elapsed({
    sink(sink_file)
    run <- tryCatch(suppressMessages(submit_r_pipeline(r_step(script, allow_reuse = FALSE))), finally = sink())
  })
  close(sink_file)
  ratio_line(sprintf("%d MB log: submit / bare Rscript", mb), amlr / bare, 2)
  whole <- elapsed(lines <- run_logs(run))
  tail20 <- elapsed(run_logs(run, n = 20, tail = TRUE))
  report_line(sprintf("%d MB log: run_logs() whole / tail 20", mb), sprintf("%.0f / %.0f ms", 1000 * whole, 1000 * tail20))
  rm(lines)
}
cat("\n")

# -- 3. snapshots ----------------------------------------------------------------------------------
cat("3. Snapshots (first submit and unchanged resubmit, less a submit's fixed cost, vs tar -cf)\n")
du_kb <- function(path) as.numeric(strsplit(system2("du", c("-sk", shQuote(path)), stdout = TRUE), "\t")[[1]][1])
folders <- list(
  small = function(dir) {
    for (d in seq_len(100)) {
      sub <- file.path(dir, sprintf("d%03d", d))
      dir.create(sub)
      for (f in seq_len(SMALL_FILES / 100)) writeLines(strrep("x", f %% 300), file.path(sub, sprintf("f%03d.txt", f)))
    }
  },
  big = function(dir) {
    for (f in seq_len(BIG_MB / 10)) writeBin(as.raw(sample.int(255, 10 * 2^20, TRUE)), file.path(dir, sprintf("b%02d.bin", f)))
  }
)
# A submit also validates, records, starts R and waits for it: that fixed cost, measured on a
# folder holding only main.R, is taken off, so the ratios compare packaging with tar.
submit_time <- function(dir) {
  step <- r_step(file.path(dir, "main.R"), allow_reuse = FALSE)
  elapsed(suppressMessages(submit_r_pipeline(step, quiet = TRUE)))
}
bare_dir <- tempfile("growth-bare-")
dir.create(bare_dir)
writeLines('cat("ok\\n")', file.path(bare_dir, "main.R"))
invisible(submit_time(bare_dir))
fixed <- stats::median(vapply(1:5, function(i) submit_time(bare_dir), numeric(1)))
report_line("a submit of main.R alone (taken off below)", format_ms(1000 * fixed))
for (kind in names(folders)) {
  dir <- tempfile(paste0("growth-", kind, "-"))
  dir.create(dir)
  folders[[kind]](dir)
  writeLines('cat("ok\\n")', file.path(dir, "main.R"))
  Sys.sleep(2.5)  # files older than the digest cache's racy window, as a real project's are
  tar <- elapsed(system2("tar", c("-cf", shQuote(tempfile(fileext = ".tar")), "-C", shQuote(dir), ".")))
  step <- r_step(file.path(dir, "main.R"), allow_reuse = FALSE)
  first <- elapsed(suppressMessages(submit_r_pipeline(step, quiet = TRUE)))
  kb <- du_kb(home)
  again <- elapsed(suppressMessages(submit_r_pipeline(step, quiet = TRUE)))
  added <- du_kb(home) - kb
  label <- if (kind == "small") sprintf("%d small files", SMALL_FILES) else sprintf("%d MB folder", BIG_MB)
  ratio_line(sprintf("%s: first submit / tar", label), (first - fixed) / tar, 1.2)
  ratio_line(sprintf("%s: unchanged resubmit / tar", label), (again - fixed) / tar, 1.2)
  report_line(sprintf("%s: tar, first, resubmit", label),
              sprintf("%s, %s, %s", format_ms(1000 * tar), format_ms(1000 * first), format_ms(1000 * again)))
  report_line(sprintf("%s: stored by the resubmit", label), sprintf("%.0f KB", added), "(target < 1 MB)")
  unlink(dir, recursive = TRUE)
}
cat("\n")

# -- 4. run_status(id) with many runs -------------------------------------------------------------
cat("4. run_status(id): 100,000 runs vs 10\n")
fill <- function(n) {
  code <- sprintf(paste(
    "import sys, time; sys.path.insert(0, %s)",
    "from amlr.registry import Registry",
    "reg = Registry(%s)",
    "with reg.write() as con:",
    "    con.executemany('INSERT INTO runs (id, experiment, pipeline, backend, status, created, run_dir, n_steps)'",
    "                    ' VALUES (?, ?, ?, ?, ?, ?, NULL, 0)',",
    "                    [(f'fake_{i:07d}', 'e', 'p', 'local', 'Completed', time.time() - i) for i in range(%d)])",
    sep = "\n"), shQuote(system.file("python", package = "amlr")), shQuote(home), n)
  system2(python, c("-c", shQuote(code)))
}
status_time <- function(id) time_calls(function() run_status(id), 20L, warmup = 2L)$median
unlink(file.path(home, "registry.sqlite*"))
unlink(file.path(home, "runs"), recursive = TRUE)
fill(10L)
few <- status_time("fake_0000005")
unlink(file.path(home, "registry.sqlite*"))
fill(RUNS_MANY)
many <- status_time(sprintf("fake_%07d", RUNS_MANY - 5L))
report_line("10 runs", format_ms(few))
report_line(sprintf("%s runs", format(RUNS_MANY, big.mark = ",")), format_ms(many))
ratio_line("100,000 runs / 10 runs", many / few, 1.2)
