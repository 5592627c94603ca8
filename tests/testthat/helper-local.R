# Helpers for tests that run real local pipelines.

# A fresh amlr home for the calling test, so runs and "latest" never leak.
local_amlr_home <- function(env = parent.frame()) {
  home <- withr::local_tempdir("amlr-home-", .local_envir = env)
  withr::local_envvar(AMLR_HOME = home, .local_envir = env)
  home
}

# A folder with R scripts: write_scripts(a.R = "cat(1)", b.R = "...").
write_scripts <- function(..., env = parent.frame()) {
  dir <- withr::local_tempdir("amlr-src-", .local_envir = env)
  scripts <- list(...)
  for (name in names(scripts)) writeLines(scripts[[name]], file.path(dir, name))
  dir
}

skip_if_no_rscript <- function() {
  testthat::skip_if(!nzchar(Sys.which("Rscript")), "Rscript is not on the PATH")
}

# Is this R process root? Permissions do not bind root.
running_as_root <- function() {
  .Platform$OS.type == "unix" && identical(unname(Sys.info()[["effective_user"]]), "root")
}

# Runs R code as the unprivileged user `nobody` (permission checks when the
# tests run as root, as `make test` does here) and returns its output lines.
# It fails, never skips, when it cannot: a permission check that skips cannot fail.
run_r_as_nobody <- function(code) {
  setpriv <- Sys.which("setpriv")
  if (!nzchar(setpriv)) {
    testthat::fail("this permission check runs as root here; it needs setpriv (util-linux) to drop to `nobody`")
  }
  home <- tempfile("amlr-nobody-", tmpdir = "/tmp")
  dir.create(home)
  Sys.chmod(home, "777")
  withr::defer(unlink(home, recursive = TRUE))
  out <- suppressWarnings(system2(
    setpriv, c("--reuid=nobody", "--regid=nogroup", "--clear-groups",
               file.path(R.home("bin"), "Rscript"), "--vanilla", "-e", shQuote(code)),
    stdout = TRUE, stderr = TRUE, env = c(paste0("HOME=", home), paste0("TMPDIR=", home),
                                          paste0("R_LIBS=", paste(.libPaths(), collapse = ":")))
  ))
  testthat::expect_null(attr(out, "status"), label = paste(out, collapse = "\n"))
  out
}

# A folder that `nobody` can reach (R's own tempdir is private to its user).
shared_tempdir <- function(env = parent.frame()) {
  dir <- tempfile("amlr-shared-", tmpdir = "/tmp")
  dir.create(dir)
  Sys.chmod(dir, "755")
  withr::defer(unlink(dir, recursive = TRUE), envir = env)
  dir
}
