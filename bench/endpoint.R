# Serving benchmark: what an HTTP round trip through a local endpoint costs
# over calling score() in R directly.
#
# One endpoint serves an lm fit on mtcars (saved with saveRDS). For 1 row and
# for 1,000 rows, endpoint_invoke() on the endpoint object (JSON out, a POST
# to 127.0.0.1, plumber, score(), JSON back, a data frame again) is timed in
# rounds against score(model, data) called in this R session on the same
# rows: milliseconds, and the ratio invoke / direct. The two take turns, so
# load on the machine weighs on both. Nothing asserts a time.
#
#   R_LIBS=$PWD/.Rlib AMLR_PYTHON=$PWD/.venv/bin/python Rscript bench/endpoint.R

suppressPackageStartupMessages(library(amlr))

here <- local({
  file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
  if (is.na(file)) "bench" else dirname(normalizePath(file))
})
source(file.path(here, "timing.R"))

ROUNDS <- c(`1` = 200L, `1000` = 50L)

home <- tempfile("amlr-bench-home-")
dir.create(home)
old_home <- Sys.getenv("AMLR_HOME", NA)
Sys.setenv(AMLR_HOME = home)
model_dir <- file.path(home, "model")
dir.create(model_dir)
saveRDS(lm(mpg ~ wt + hp + disp + qsec, data = mtcars), file.path(model_dir, "model.rds"))
score_file <- file.path(home, "score.R")
writeLines(c(
  'init <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))',
  "score <- function(model, data) unname(predict(model, newdata = data))"
), score_file)

ep <- suppressMessages(deploy_r_model(model_dir, score_file, name = "bench-cars"))
# The server outlives this script unless deleted: whatever happens below.
cleanup <- function() {
  try(suppressMessages(endpoint_delete(ep)), silent = TRUE)
  unlink(home, recursive = TRUE)
  if (is.na(old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = old_home)
}

app <- new.env()
sys.source(score_file, envir = app)
model <- app$init(model_dir)

cat("amlr serving benchmark:", machine_summary(), "\n")
cat(R.version.string, "| plumber", format(utils::packageVersion("plumber")), "| curl",
    format(utils::packageVersion("curl")), "\n\n")
cat("endpoint_invoke() on a local endpoint vs score() in this R session (median of n rounds, taking turns)\n")
set.seed(1)
tryCatch(for (n in names(ROUNDS)) {
  rows <- as.integer(n)
  newdata <- mtcars[sample(nrow(mtcars), rows, replace = TRUE), c("wt", "hp", "disp", "qsec")]
  rownames(newdata) <- NULL
  via_http <- endpoint_invoke(ep, newdata)$prediction
  direct <- app$score(model, newdata)
  if (!isTRUE(all.equal(via_http, direct, tolerance = 1e-12))) stop("the endpoint's predictions differ from score()'s")
  t <- time_rounds(list(
    invoke = function() endpoint_invoke(ep, newdata),
    direct = function() app$score(model, newdata)
  ), times = ROUNDS[[n]], warmup = 3L)
  report_line(sprintf("%s row(s): score() in R", n), format_ms(t$direct$median), sprintf("min %s, n = %d", format_ms(t$direct$min), t$direct$n))
  report_line(sprintf("%s row(s): endpoint_invoke()", n), format_ms(t$invoke$median), sprintf("min %s, n = %d", format_ms(t$invoke$min), t$invoke$n))
  report_line(sprintf("%s row(s): ratio invoke / direct", n), sprintf("%.1f", t$invoke$median / t$direct$median),
              sprintf("(HTTP + JSON cost: %s per call)", format_ms(t$invoke$median - t$direct$median)))
}, finally = cleanup())
cat("\nload average at the end:", machine_summary(), "\n")
