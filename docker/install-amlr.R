# Installs amlr's R package in the job image, with the packages its DESCRIPTION
# imports, from the pinned CRAN snapshot. Run by docker/Dockerfile as
#   Rscript install-amlr.R /path/to/amlr_package.tar.gz
# The tarball is a source package (a checkout, or R CMD build) or an installed
# (binary) amlr; see docker/README.md.
args <- commandArgs(trailingOnly = TRUE)
tarball <- args[[1]]
exdir <- tempfile("amlr-description-")
utils::untar(tarball, files = "amlr/DESCRIPTION", exdir = exdir)
desc <- read.dcf(file.path(exdir, "amlr", "DESCRIPTION"), fields = c("Depends", "Imports"))
deps <- trimws(sub("\\(.*$", "", unlist(strsplit(paste(stats::na.omit(desc), collapse = ","), ","))))
base <- rownames(utils::installed.packages(priority = "base"))
deps <- setdiff(deps[nzchar(deps)], c("R", base, rownames(utils::installed.packages())))
if (length(deps)) {
  utils::install.packages(deps, repos = Sys.getenv("CRAN"), Ncpus = max(1L, parallel::detectCores()))
}
utils::install.packages(tarball, repos = NULL, type = "source", INSTALL_opts = c("--no-docs", "--no-html", "--no-demo"))
ok <- requireNamespace("amlr", quietly = TRUE)
if (!ok || any(!vapply(deps, requireNamespace, logical(1), quietly = TRUE))) {
  stop("amlr or one of its dependencies did not install: ", paste(c("amlr", deps), collapse = ", "))
}
