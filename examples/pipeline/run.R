# Rscript examples/pipeline/run.R -- the README tour, on the local backend.
here <- local({
  file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
  if (is.na(file)) "examples/pipeline" else dirname(normalizePath(file))
})
source(file.path(here, "pipeline.R"))
p <- example_pipeline(here)
print(p)
run <- submit_r_pipeline(p, experiment = "cars")
print(run_steps(run))
print(run_metrics(run))
dest <- tempfile("cars-report")
run_download(run, step = "report", dest = dest)
cat(readLines(file.path(dest, "report", "report", "report.md")), sep = "\n")
