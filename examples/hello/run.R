# make run: submit hello.R on the local backend, then show the run.
library(amlr)
here <- local({
  file <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)[1])
  if (is.na(file)) "examples/hello" else dirname(normalizePath(file))
})
run <- submit_r_pipeline(file.path(here, "hello.R"), experiment = "hello")
print(run)
print(run_steps(run))
