spec_json <- function(env) {
  jsonlite::toJSON(env$spec, auto_unbox = TRUE, null = "null")
}

resolved_name <- function(spec) {
  amlr:::amlr_call("environment_resolve", list(environment = spec))$name
}

test_that("the default environment builds amlr's own Dockerfile, installed with the package", {
  env <- r_environment()
  expect_s3_class(env, "amlr_environment")
  path <- system.file("docker", "Dockerfile", package = "amlr")
  expect_true(nzchar(path))
  expect_equal(env$spec$dockerfile, normalizePath(path, winslash = "/"))
  expect_true(file.exists(system.file("docker", "requirements.txt", package = "amlr")))
  expect_true(file.exists(system.file("docker", "install-amlr.R", package = "amlr")))
  expect_match(paste(readLines(path), collapse = "\n"), "FROM rocker/r-ver:4\\.[0-9]+\\.[0-9]+")
  expect_equal(
    jsonlite::fromJSON(spec_json(env), simplifyVector = FALSE),
    list(image = NULL, registry = NULL, dockerfile = env$spec$dockerfile, cran_packages = list(), name = NULL)
  )
})

test_that("cran_packages are sorted, unique and always a JSON array", {
  env <- r_environment(cran_packages = c("zoo", "DBI", "zoo"))
  expect_equal(as.character(env$spec$cran_packages), c("DBI", "zoo"))
  one <- jsonlite::fromJSON(spec_json(r_environment(cran_packages = "DBI")), simplifyVector = FALSE)
  expect_equal(one$cran_packages, list("DBI"))
})

test_that("the identity follows the content: same packages same name, new packages new name", {
  a <- resolved_name(r_environment(cran_packages = c("zoo", "DBI"))$spec)
  b <- resolved_name(r_environment(cran_packages = c("DBI", "zoo", "DBI"))$spec)
  c <- resolved_name(r_environment(cran_packages = c("DBI", "zoo", "lubridate"))$spec)
  expect_equal(a, b)
  expect_false(identical(a, c))
  expect_match(a, "^amlr-r-[0-9a-f]{12}$")
  expect_equal(resolved_name(r_environment(cran_packages = "DBI", name = "sales-r")$spec), "sales-r")
})

test_that("invalid environments are classed errors that say what to do", {
  df <- withr::local_tempfile(lines = "FROM rocker/r-ver:4.4.1")
  expect_error(r_environment(image = "r:1", dockerfile = df), class = "amlr_error_invalid_environment")
  expect_error(r_environment(image = "r:1", cran_packages = "DBI"), "prebuilt image",
               class = "amlr_error_invalid_environment")
  expect_error(r_environment(cran_packages = c("DBI", "stats")), "with R",
               class = "amlr_error_invalid_environment")
  expect_error(r_environment(cran_packages = "not a name"), class = "amlr_error_invalid_environment")
  expect_error(r_environment(dockerfile = file.path(tempdir(), "none", "Dockerfile")),
               class = "amlr_error_invalid_environment")
  expect_error(r_environment(image = "r:1", registry = list(address = "x")),
               class = "amlr_error_invalid_environment")
})

test_that("a dockerfile may be given by its folder", {
  dir <- withr::local_tempdir()
  writeLines("FROM rocker/r-ver:4.4.1", file.path(dir, "Dockerfile"))
  env <- r_environment(dockerfile = dir)
  expect_equal(env$spec$dockerfile, normalizePath(file.path(dir, "Dockerfile"), winslash = "/"))
})

test_that("registry credentials keep the password in an environment variable, never in the object", {
  withr::local_envvar(AMLR_REGISTRY_PASSWORD = NA, MYACR_PASSWORD = NA)
  secret <- "pa55-Never-Shown"
  reg <- registry_credentials("https://myacr.azurecr.io/", "myacr", password = secret)
  expect_equal(Sys.getenv("AMLR_REGISTRY_PASSWORD"), secret)
  expect_equal(unclass(reg), list(address = "myacr.azurecr.io", username = "myacr",
                                  password_env = "AMLR_REGISTRY_PASSWORD"))
  env <- r_environment(image = "myacr.azurecr.io/amlr-r:4.4.1", registry = reg)
  shown <- c(cli::cli_fmt(print(reg)), cli::cli_fmt(print(env)), format(reg),
             as.character(spec_json(env)), rawToChar(serialize(env, NULL, ascii = TRUE)))
  expect_false(any(grepl(secret, shown, fixed = TRUE)))
  expect_true(any(grepl("password: <set in $AMLR_REGISTRY_PASSWORD>", cli::cli_fmt(print(reg)), fixed = TRUE)))
  expect_equal(jsonlite::fromJSON(spec_json(env))$registry$password_env, "AMLR_REGISTRY_PASSWORD")

  other <- registry_credentials("other.azurecr.io", "u", password_env = "MYACR_PASSWORD")
  expect_true(any(grepl("not set", cli::cli_fmt(print(other)), fixed = TRUE)))
  expect_equal(Sys.getenv("MYACR_PASSWORD"), "")
  expect_error(registry_credentials("a.io", "u", password_env = "not-a-var"), class = "amlr_error_invalid_environment")
})

test_that("the backends see the password only through the variable", {
  withr::local_envvar(AMLR_REGISTRY_PASSWORD = NA)
  env <- r_environment(image = "myacr.azurecr.io/amlr-r:4.4.1",
                       registry = registry_credentials("myacr.azurecr.io", "myacr", password = "from-R-999"))
  res <- amlr:::amlr_call("environment_resolve", list(environment = env$spec))
  expect_true(res$registry$password_set)
  expect_equal(res$registry$password_env, "AMLR_REGISTRY_PASSWORD")
  expect_false(grepl("from-R-999", jsonlite::toJSON(res), fixed = TRUE))
})

test_that("cran_packages = 'auto' is resolved from the scripts before Python sees it", {
  dir <- withr::local_tempdir()
  writeLines(c("library(DBI)", "zoo::zoo(1)"), file.path(dir, "main.R"))
  env <- r_environment(cran_packages = c("auto", "xgboost"))
  expect_true(env$spec$auto)
  expect_equal(as.character(env$spec$cran_packages), "xgboost")
  expect_match(paste(cli::cli_fmt(print(env)), collapse = "\n"), "auto")
  # Python refuses an unresolved marker...
  expect_error(amlr:::amlr_call("environment_resolve", list(environment = env$spec)),
               class = "amlr_error_invalid_environment")
  # ...and gets the resolved list.
  spec <- amlr:::resolve_environment_spec(env, r_step(file.path(dir, "main.R")))
  expect_null(spec$auto)
  expect_equal(as.character(spec$cran_packages), c("DBI", "xgboost", "zoo"))
  expect_equal(amlr:::amlr_call("environment_resolve", list(environment = spec))$cran_packages,
               c("DBI", "xgboost", "zoo"))
})

test_that("a pipeline's default environment serves only the steps without their own", {
  a <- withr::local_tempdir()
  b <- withr::local_tempdir()
  writeLines("library(DBI)", file.path(a, "a.R"))
  writeLines("library(zoo)", file.path(b, "b.R"))
  own <- r_environment(cran_packages = "zoo")
  p <- r_pipeline(r_step(file.path(a, "a.R")), r_step(file.path(b, "b.R"), environment = own),
                  environment = r_environment(cran_packages = "auto"))
  spec <- amlr:::resolve_environment_spec(p$environment, p)
  expect_equal(as.character(spec$cran_packages), "DBI")
  expect_null(amlr:::resolve_environment_spec(NULL, p))
  expect_identical(amlr:::resolve_environment_spec(own, p), own$spec)
})

test_that("export_environment writes a build context with the packages baked in", {
  dest <- file.path(withr::local_tempdir(), "ctx")
  expect_message(path <- export_environment(r_environment(cran_packages = c("zoo", "DBI")), dest),
                 "docker build")
  expect_equal(normalizePath(path), normalizePath(dest))
  expect_setequal(list.files(dest), c("Dockerfile", "requirements.txt", "install-amlr.R", "amlr_package.tar.gz"))
  dockerfile <- readLines(file.path(dest, "Dockerfile"))
  expect_true("ARG CRAN_PACKAGES=\"DBI zoo\"" %in% dockerfile)
  files <- utils::untar(file.path(dest, "amlr_package.tar.gz"), list = TRUE)
  expect_true(all(c("amlr/DESCRIPTION", "amlr/NAMESPACE") %in% files))
  expect_error(export_environment(r_environment(cran_packages = "auto"), tempfile()),
               class = "amlr_error_invalid_environment")
  expect_error(export_environment(r_environment(image = "r:1"), tempfile()), class = "amlr_error_build_context")
})

test_that("export_environment resolves 'auto' from the given pipeline", {
  dir <- withr::local_tempdir()
  writeLines("library(lubridate)", file.path(dir, "main.R"))
  dest <- file.path(withr::local_tempdir(), "ctx")
  suppressMessages(export_environment(r_environment(cran_packages = "auto"), dest,
                                      pipeline = file.path(dir, "main.R")))
  expect_true("ARG CRAN_PACKAGES=\"lubridate\"" %in% readLines(file.path(dest, "Dockerfile")))
})
