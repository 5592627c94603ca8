# The system2 bridge streams through processx when it is installed, else through
# a shell pipe; both must deliver the same events and result.
for (transport in c("processx", "pipe")) {
  test_that(paste("a streamed call delivers events then the result, via", transport), {
    if (transport == "processx") skip_if_not_installed("processx")
    withr::local_options(amlr.bridge = "system2", amlr.processx = transport == "processx")
    dir <- withr::local_tempdir("amlr-stream-")
    script <- file.path(dir, "hello.R")
    writeLines(c(paste("# via", transport), 'cat("line one\\n")', 'cat("line two {braces}\\n")'), script)
    run <- suppressMessages(submit_r_pipeline(script, wait = FALSE, quiet = TRUE))
    events <- list()
    result <- amlr_stream("wait", list(run = run$id), on_event = function(e) events[[length(events) + 1L]] <<- e)
    expect_equal(result$status, "Completed")
    logs <- paste(vapply(Filter(function(e) identical(e$event, "log"), events), `[[`, "", "text"), collapse = "")
    expect_match(logs, "line one\nline two {braces}\n", fixed = TRUE)
  })

  test_that(paste("a Python side that fails before answering is a bridge error, via", transport), {
    if (transport == "processx") skip_if_not_installed("processx")
    withr::local_options(amlr.bridge = "system2", amlr.processx = transport == "processx")
    expect_error(amlr_stream("no_such_method"), class = "amlr_error_bad_request")
  })
}
