# The smallest amlr step: runs the same locally and on Azure ML.
print("hello, world")
cat(sprintf("from %s on %s\n", R.version.string, Sys.info()[["sysname"]]))
message("stderr is streamed too")
