# aml_workspace(): finding the workspace and keeping the secret out of sight.
# Nothing here contacts Azure: ids are resolved locally, and the one submit
# fails on a missing compute target before any SDK call.

ids <- list(subscription_id = "00000000-aaaa-bbbb-cccc-000000000001", resource_group = "rg-r",
            workspace_name = "ws-r")

write_config <- function(dir, content = ids) {
  dir.create(dir, recursive = TRUE, showWarnings = FALSE)
  path <- file.path(dir, "config.json")
  if (is.character(content)) writeLines(content, path) else jsonlite::write_json(content, path, auto_unbox = TRUE)
  normalizePath(path, winslash = "/")
}

# Credentials from the developer's own environment must not leak into these tests.
local_no_credentials <- function(env = parent.frame()) {
  withr::local_envvar(AZURE_TENANT_ID = NA, AZURE_CLIENT_ID = NA, AZURE_CLIENT_SECRET = NA, .local_envir = env)
}

test_that("with no arguments the config is found walking up from the working directory", {
  local_no_credentials()
  root <- withr::local_tempdir("amlr-ws-")
  path <- write_config(file.path(root, ".azureml"))
  deep <- file.path(root, "analysis", "R")
  dir.create(deep, recursive = TRUE)
  withr::local_dir(deep)
  ws <- aml_workspace()
  expect_s3_class(ws, "amlr_workspace")
  expect_equal(ws[c("subscription_id", "resource_group", "workspace_name")], ids)
  expect_equal(ws$auth, "default")
  expect_equal(normalizePath(ws$config_path, winslash = "/"), path)
  expect_named(ws, c("subscription_id", "resource_group", "workspace_name", "auth", "tenant_id", "client_id",
                     "config_path"))
})

test_that("config may name a file or a folder, and explicit ids win over it", {
  local_no_credentials()
  root <- withr::local_tempdir("amlr-ws-")
  path <- write_config(file.path(root, "settings"))
  expect_equal(aml_workspace(config = path)$workspace_name, "ws-r")
  expect_equal(aml_workspace(config = dirname(path))$workspace_name, "ws-r")
  ws <- aml_workspace(config = path, workspace_name = "other-ws", auth = "cli")
  expect_equal(c(ws$resource_group, ws$workspace_name, ws$auth), c("rg-r", "other-ws", "cli"))
})

test_that("explicit ids need no config file", {
  local_no_credentials()
  withr::local_dir(withr::local_tempdir("amlr-ws-"))
  ws <- do.call(aml_workspace, c(ids, auth = "managed_identity", client_id = "mi-1"))
  expect_null(ws$config_path)
  expect_equal(ws$auth, "managed_identity")
  expect_equal(ws$client_id, "mi-1")
})

test_that("a missing or malformed config is a classed error naming the file or the ids to give", {
  local_no_credentials()
  empty <- withr::local_tempdir("amlr-ws-")
  withr::with_dir(empty, {
    err <- expect_error(aml_workspace(), class = "amlr_error_workspace_config")
  })
  expect_match(conditionMessage(err), ".azureml/config.json", fixed = TRUE)
  expect_match(conditionMessage(err), "subscription_id")
  expect_s3_class(err, "amlr_error")

  bad <- write_config(file.path(withr::local_tempdir("amlr-ws-"), ".azureml"), "{ not json")
  err <- expect_error(aml_workspace(config = bad), class = "amlr_error_workspace_config")
  expect_match(conditionMessage(err), bad, fixed = TRUE)
  expect_match(conditionMessage(err), "not valid JSON")

  partial <- write_config(withr::local_tempdir("amlr-ws-"), ids[1:2])
  err <- expect_error(aml_workspace(config = partial), class = "amlr_error_workspace_config")
  expect_match(conditionMessage(err), "lacks workspace_name")

  expect_error(aml_workspace(config = file.path(empty, "nope.json")), class = "amlr_error_workspace_config")
  expect_error(aml_workspace(workspace_name = 3), class = "amlr_error_workspace_config")
  # base match.arg() (not yet a classed amlr error): the message must name the allowed methods
  expect_error(aml_workspace(auth = "password"), "should be one of.*service_principal.*managed_identity")
})

test_that("a client secret goes to the environment only: never stored, printed or echoed", {
  local_no_credentials()
  secret <- "Sup3r-s3cret-amlr-test"
  ws <- do.call(aml_workspace, c(ids, tenant_id = "tenant-1", client_id = "client-1", client_secret = secret))
  expect_equal(Sys.getenv("AZURE_CLIENT_SECRET"), secret)
  expect_equal(ws$auth, "service_principal")
  expect_equal(c(ws$tenant_id, ws$client_id), c("tenant-1", "client-1"))
  printed <- paste(capture.output(print(ws)), collapse = "\n")
  expect_match(printed, "ws-r")
  expect_match(printed, "from AZURE_CLIENT_SECRET (set)", fixed = TRUE)
  stored <- c(printed, capture.output(str(unclass(ws))), capture.output(dput(ws)),
              jsonlite::toJSON(amlr:::workspace_spec(ws), auto_unbox = TRUE))
  expect_false(any(grepl(secret, stored, fixed = TRUE)))

  # Errors name the missing variable, never a value.
  withr::local_envvar(AZURE_CLIENT_ID = NA, AZURE_TENANT_ID = "tenant-1")
  err <- expect_error(do.call(aml_workspace, c(ids, auth = "service_principal")), class = "amlr_error_credentials")
  expect_match(conditionMessage(err), "AZURE_CLIENT_ID")
  expect_false(grepl(secret, conditionMessage(err), fixed = TRUE))
  expect_false(grepl("tenant-1", conditionMessage(err), fixed = TRUE))
  err <- expect_error(aml_workspace(client_secret = c(secret, secret)), class = "amlr_error_credentials")
  expect_false(grepl(secret, conditionMessage(err), fixed = TRUE))
})

test_that("print shows ids and auth", {
  local_no_credentials()
  ws <- do.call(aml_workspace, c(ids, auth = "cli"))
  expect_snapshot(print(ws))
})

test_that("submitting to azureml without a compute target fails at once, offline, with a classed error", {
  local_no_credentials()
  skip_if_not(nzchar(Sys.which("Rscript")))
  home <- withr::local_tempdir("amlr-home-")
  withr::local_envvar(AMLR_HOME = home)
  dir <- withr::local_tempdir("amlr-src-")
  writeLines('cat("hi\\n")', file.path(dir, "hello.R"))
  ws <- do.call(aml_workspace, c(ids, auth = "cli"))
  started <- Sys.time()
  err <- expect_error(
    submit_r_pipeline(file.path(dir, "hello.R"), backend = "azureml", workspace = ws, wait = FALSE),
    class = "amlr_error_invalid_spec"
  )
  expect_lt(as.numeric(difftime(Sys.time(), started, units = "secs")), 60)
  expect_match(conditionMessage(err), "compute")
  expect_equal(list.files(file.path(home, "runs")), character())
})

test_that("publish_r_pipeline checks the pipeline before contacting Azure ML", {
  local_no_credentials()
  home <- withr::local_tempdir("amlr-home-")
  withr::local_envvar(AMLR_HOME = home)
  dir <- withr::local_tempdir("amlr-src-")
  writeLines('cat("hi\\n")', file.path(dir, "hello.R"))
  ws <- do.call(aml_workspace, c(ids, auth = "cli"))
  err <- expect_error(publish_r_pipeline(file.path(dir, "hello.R"), name = "hello", workspace = ws),
                      class = "amlr_error_invalid_spec")
  expect_match(conditionMessage(err), "compute")
  expect_equal(list.files(file.path(home, "published")), character())
})
