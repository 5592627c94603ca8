# The smallest amlr step: runs the same locally and on Azure ML.
args <- commandArgs(trailingOnly = TRUE)
who <- if (length(args)) args[[1]] else "world"
cat(sprintf("Hello, %s, from %s on %s\n", who, R.version.string, Sys.info()[["sysname"]]))
message("this line goes to stderr and is streamed too")
if (requireNamespace("amlr", quietly = TRUE)) amlr::log_metric("greetings", 1)
