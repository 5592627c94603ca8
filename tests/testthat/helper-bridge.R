# The whole suite runs once per bridge: AMLR_TEST_BRIDGE ("system2", the
# default, or "reticulate") picks the transport for this test session; the
# Makefile runs the suite under each (`make test-r-system2`,
# `make test-r-reticulate`). The session also gets its own AMLR_HOME so no test
# touches the user's registry.

amlr_test_bridge <- function() {
  bridge <- Sys.getenv("AMLR_TEST_BRIDGE", "system2")
  if (!bridge %in% c("system2", "reticulate")) {
    stop("AMLR_TEST_BRIDGE must be \"system2\" or \"reticulate\", not \"", bridge, "\".", call. = FALSE)
  }
  if (identical(bridge, "reticulate") && !requireNamespace("reticulate", quietly = TRUE)) {
    stop("AMLR_TEST_BRIDGE=reticulate needs the reticulate package.", call. = FALSE)
  }
  bridge
}

# Bridges this machine can run (reticulate only when installed), for tests that
# compare both within one session.
available_bridges <- function() {
  c("system2", if (requireNamespace("reticulate", quietly = TRUE)) "reticulate")
}

skip_if_no_reticulate <- function() {
  testthat::skip_if_not_installed("reticulate")
}

# Python code run where the bridge's Python runs: at start-up of every
# `python -m amlr` process (a sitecustomize.py on PYTHONPATH) for system2, in
# the embedded session for reticulate. `undo` reverts it in the embedded
# session when the calling test ends.
local_python_patch <- function(bridge, code, undo, env = parent.frame()) {
  if (identical(bridge, "system2")) {
    # The bridge runs `python -S -m amlr ...`: no site, so no sitecustomize. A stand-in
    # interpreter applies the patch, then runs amlr as that command would.
    dir <- withr::local_tempdir("amlr-pypatch-", .local_envir = env)
    writeLines(code, file.path(dir, "amlr_test_patch.py"))
    wrapper <- file.path(dir, "python")
    writeLines(c(
      paste0("#!", amlr_python()$path, " -S"),
      "import runpy, sys",
      sprintf("sys.path.insert(0, %s)", encodeString(dir, quote = '"')),
      "import amlr_test_patch",
      "args = sys.argv[1:]",
      "while args and args[0] != '-m':  # the interpreter's own flags (-S)",
      "    args.pop(0)",
      "sys.argv = ['amlr'] + args[2:]",
      "runpy.run_module('amlr', run_name='__main__', alter_sys=True)"
    ), wrapper)
    Sys.chmod(wrapper, "755")
    withr::local_options(amlr.python = wrapper, .local_envir = env)
  } else {
    amlr_call("ping") # binds Python and imports amlr.api before patching it
    reticulate::py_run_string(paste(code, collapse = "\n"))
    withr::defer(reticulate::py_run_string(paste(undo, collapse = "\n")), envir = env)
  }
  invisible()
}

local({
  bridge <- amlr_test_bridge()
  home <- tempfile("amlr-test-home-")
  dir.create(home)
  if (testthat::is_testing()) {
    withr::local_options(amlr.bridge = bridge, .local_envir = testthat::teardown_env())
    withr::local_envvar(AMLR_HOME = home, .local_envir = testthat::teardown_env())
    withr::defer(unlink(home, recursive = TRUE), envir = testthat::teardown_env())
  } else {
    options(amlr.bridge = bridge)
    Sys.setenv(AMLR_HOME = home)
  }
  python <- amlr_python()
  if (is.na(python$path)) {
    stop("amlr's tests need Python 3.9+: set AMLR_PYTHON (the Makefile sets it to .venv/bin/python) ",
         "or run amlr::install_amlr_python().", call. = FALSE)
  }
  # Fail here, once and clearly, rather than in every test.
  tryCatch(amlr_call("ping"), error = function(e) {
    stop("The ", bridge, " bridge does not answer with Python ", python$path, ":\n", conditionMessage(e), call. = FALSE)
  })
})
