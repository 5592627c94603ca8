# make run: submit hello.R on the local backend, then look at the run.
library(amlr)
here <- local({
  file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
  if (is.na(file)) "examples/hello" else dirname(normalizePath(file))
})
run <- submit_r_pipeline(r_step(file.path(here, "hello.R"), args = "amlr user"), experiment = "hello")
print(run)
print(run_steps(run))
print(run_metrics(run))
