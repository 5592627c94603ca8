write_script <- function(dir, name, lines) {
  path <- file.path(dir, name)
  dir.create(dirname(path), recursive = TRUE, showWarnings = FALSE)
  writeLines(lines, path)
  normalizePath(path, winslash = "/")
}

test_that("every way of naming a package is found, with its line and how", {
  dir <- withr::local_tempdir()
  script <- write_script(dir, "analysis.R", c(
    "library(DBI)",                                      # 1
    "library(\"lubridate\")",                            # 2
    "suppressPackageStartupMessages(require(zoo))",      # 3
    "if (requireNamespace('RSQLite', quietly = TRUE)) {",  # 4
    "  x <- magrittr::`%>%`",                            # 5
    "}",                                                 # 6
    "y <- data.table:::setDT",                           # 7
    "base::library(RPostgreSQL)",                        # 8
    "library(package = \"jsonlite\")",                   # 9
    "loadNamespace(\"yaml\")"                            # 10
  ))
  deps <- r_dependencies(script)
  expect_s3_class(deps, "data.frame")
  expect_named(deps, c("package", "file", "line", "how"))
  expect_equal(deps$package, c("data.table", "DBI", "jsonlite", "lubridate", "magrittr", "RPostgreSQL",
                               "RSQLite", "yaml", "zoo"))
  expect_equal(deps$line, c(7L, 1L, 9L, 2L, 5L, 8L, 4L, 10L, 3L))
  expect_equal(deps$how, c(":::", "library", "library", "library", "::", "library", "requireNamespace",
                           "loadNamespace", "require"))
  expect_equal(unique(deps$file), script)
})

test_that("base and recommended packages, amlr and computed names are left out", {
  dir <- withr::local_tempdir()
  write_script(dir, "main.R", c(
    "library(stats); library(MASS); library(Matrix); library(amlr)",
    "utils::head(1); tools::file_ext('a'); amlr::step_input('x')",
    "pkg <- 'zoo'; library(pkg, character.only = TRUE); requireNamespace(pkg)",
    "library(survival)",
    "library(ggplot2)"
  ))
  deps <- r_dependencies(dir)
  expect_equal(deps$package, "ggplot2")
  expect_equal(deps$line, 5L)
})

test_that("an unparseable script warns with its name and the rest is still read", {
  dir <- withr::local_tempdir()
  bad <- write_script(dir, "broken.R", c("library(zoo)", "x <- ("))
  write_script(dir, "good.R", "library(DBI)")
  expect_warning(deps <- r_dependencies(dir), class = "amlr_warning_parse")
  expect_equal(deps$package, "DBI")
  w <- tryCatch(r_dependencies(dir), amlr_warning_parse = function(w) w)
  expect_match(conditionMessage(w), "broken.R", fixed = TRUE)
  expect_equal(w$file, bad)
})

test_that("R Markdown chunks are read with the file's line numbers; other engines are not", {
  dir <- withr::local_tempdir()
  write_script(dir, "report.Rmd", c(
    "---", "title: t", "---", "",
    "library(notcode) in prose", "",
    "```{r setup, include=FALSE}",  # 7
    "library(knitr)",               # 8
    "```", "",
    "```{python}", "import pandas", "```",
    "```{r}", "x <- 1", "ggplot2::qplot(x)", "```"  # 16
  ))
  deps <- r_dependencies(dir)
  expect_equal(deps$package, c("ggplot2", "knitr"))
  expect_equal(deps$line, c(16L, 8L))
})

test_that("renv.lock adds its CRAN packages; others are reported", {
  dir <- withr::local_tempdir()
  write_script(dir, "main.R", "library(DBI)")
  lock <- list(
    R = list(Version = "4.4.1"),
    Packages = list(
      DBI = list(Package = "DBI", Version = "1.2.3", Source = "Repository", Repository = "CRAN"),
      zoo = list(Package = "zoo", Version = "1.8-12", Source = "Repository", Repository = "CRAN"),
      MASS = list(Package = "MASS", Version = "7.3", Source = "Repository", Repository = "CRAN"),
      mypkg = list(Package = "mypkg", Version = "0.1", Source = "GitHub", RemoteRepo = "mypkg")
    )
  )
  jsonlite::write_json(lock, file.path(dir, "renv.lock"), auto_unbox = TRUE, pretty = TRUE)
  expect_warning(deps <- r_dependencies(dir), class = "amlr_warning_renv_source")
  expect_equal(deps$package, c("DBI", "DBI", "zoo"))
  expect_equal(deps$how, c("library", "renv.lock", "renv.lock"))
  lock_lines <- readLines(file.path(dir, "renv.lock"))
  expect_match(lock_lines[deps$line[deps$package == "zoo"]], "\"Package\": \"zoo\"", fixed = TRUE)
})

test_that("only what the snapshot holds is read", {
  dir <- withr::local_tempdir()
  write_script(dir, "main.R", "library(DBI)")
  write_script(dir, "scratch/old.R", "library(oldpkg)")
  write_script(dir, "renv/library/R-4.4/x86_64/zoo/R/zoo.R", "library(lattice2)")
  write_script(dir, ".Rproj.user/shared/notebooks/x.R", "library(secretpkg)")
  writeLines("scratch/", file.path(dir, ".amlignore"))
  expect_equal(r_dependencies(dir)$package, "DBI")
})

test_that("steps and pipelines are read folder by folder", {
  a <- withr::local_tempdir()
  b <- withr::local_tempdir()
  sa <- r_step(write_script(a, "prepare.R", "library(DBI)"), outputs = "data")
  sb <- r_step(write_script(b, "train.R", c("x <- 1", "zoo::zoo(x)")),
               inputs = list(data = output_of(sa, "data")))
  expect_equal(r_dependencies(sb)$package, "zoo")
  deps <- r_dependencies(r_pipeline(sa, sb))
  expect_equal(deps$package, c("DBI", "zoo"))
  expect_equal(deps$file, c(file.path(sa$source_dir, "prepare.R"), file.path(sb$source_dir, "train.R")))
})

test_that("the example pipeline's packages are found", {
  dir <- testthat::test_path("..", "..", "examples", "pipeline")
  skip_if_not(dir.exists(dir), "examples/ is not part of this copy of the package")
  deps <- r_dependencies(dir)
  expect_true("jsonlite" %in% deps$package)
  row <- deps[deps$package == "jsonlite", ]
  expect_equal(basename(row$file), "report.R")
  expect_equal(row$how, "::")
  expect_false(any(c("amlr", "stats", "utils", "datasets") %in% deps$package))
})

test_that("a wrong argument is a classed error", {
  expect_error(r_dependencies(file.path(tempdir(), "nope.R")), class = "amlr_error_invalid_spec")
  expect_error(r_dependencies(42), class = "amlr_error_invalid_spec")
})
