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
