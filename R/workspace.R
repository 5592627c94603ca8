#' An Azure Machine Learning workspace to submit to
#'
#' Names the workspace that the `"azureml"` and `"azureml_v2"` backends of
#' [submit_r_pipeline()] use, and how to sign in to it. Nothing is contacted
#' here: the ids are resolved locally and checked when a run is submitted.
#'
#' With no ids, the workspace comes from a `config.json` (the file the Azure ML
#' studio offers under the workspace menu, "Download config file"), found as
#' `Workspace.from_config()` finds it: `.azureml/config.json`, then
#' `aml_config/config.json`, then `config.json`, in the working directory or
#' any folder above it. Ids given as arguments win over those in the file.
#'
#' Sign-in (`auth`):
#' * `"default"`: a service principal when `AZURE_TENANT_ID`, `AZURE_CLIENT_ID`
#'   and `AZURE_CLIENT_SECRET` are all set; otherwise azure-identity's
#'   `DefaultAzureCredential` chain (a managed identity, an `az login`
#'   session, ...). It never prompts.
#' * `"service_principal"`: `tenant_id`, `client_id` and `client_secret`, or the
#'   three variables above.
#' * `"cli"`: the account of `az login`.
#' * `"interactive"`: a browser sign-in (best with
#'   `options(amlr.bridge = "reticulate")`, so the prompt reaches you).
#' * `"managed_identity"`: the identity of the Azure VM or compute instance
#'   this runs on (`client_id` selects a user-assigned one).
#'
#' A `client_secret` given here is placed in the environment variable
#' `AZURE_CLIENT_SECRET` of this R session and read from there when a run is
#' submitted; it is never stored in the returned object, printed, written to
#' the run registry or sent in a request. Prefer setting it in `~/.Renviron`
#' over writing it in a script.
#'
#' @param config Path to a workspace config file, or a folder to start the
#'   search in. `NULL` searches up from the working directory (unless all three
#'   ids are given).
#' @param subscription_id,resource_group,workspace_name The workspace's ids.
#' @param auth How to sign in; see Details.
#' @param tenant_id,client_id Service principal (or user-assigned managed
#'   identity) ids; default to `AZURE_TENANT_ID` / `AZURE_CLIENT_ID`.
#' @param client_secret The service principal's secret; default
#'   `AZURE_CLIENT_SECRET`. Giving it implies `auth = "service_principal"`.
#' @return An `amlr_workspace`: a list with `subscription_id`,
#'   `resource_group`, `workspace_name`, `auth`, `tenant_id`, `client_id` and
#'   `config_path` (the file the ids came from, or `NULL`). Errors of class
#'   `amlr_error_workspace_config` say which file or ids to provide;
#'   `amlr_error_credentials` names the missing environment variable.
#' @family azure
#' @export
#' @examples
#' # Explicit ids: nothing is looked up and nothing is contacted.
#' ws <- aml_workspace(
#'   subscription_id = "00000000-0000-0000-0000-000000000000",
#'   resource_group = "my-rg", workspace_name = "my-ws", auth = "cli"
#' )
#' ws
#'
#' # From a config.json in this folder or above (as downloaded from the studio).
#' dir <- tempfile("project")
#' dir.create(file.path(dir, ".azureml"), recursive = TRUE)
#' writeLines('{"subscription_id": "00000000-0000-0000-0000-000000000000",
#'   "resource_group": "my-rg", "workspace_name": "my-ws"}',
#'   file.path(dir, ".azureml", "config.json"))
#' aml_workspace(config = dir)
aml_workspace <- function(config = NULL, subscription_id = NULL, resource_group = NULL, workspace_name = NULL,
                          auth = c("default", "service_principal", "cli", "interactive", "managed_identity"),
                          tenant_id = NULL, client_id = NULL, client_secret = NULL) {
  secret_given <- !is.null(client_secret)
  if (secret_given) {
    if (!is.character(client_secret) || length(client_secret) != 1L || is.na(client_secret) || !nzchar(client_secret)) {
      # Never echo the value: it may be a secret of the wrong shape.
      amlr_abort("{.arg client_secret} must be a single non-empty string.", "credentials")
    }
    Sys.setenv(AZURE_CLIENT_SECRET = client_secret)
  }
  auth <- if (missing(auth) && secret_given) "service_principal" else match.arg(auth)
  args <- list(subscription_id = subscription_id, resource_group = resource_group,
               workspace_name = workspace_name, tenant_id = tenant_id, client_id = client_id)
  for (arg in names(args)) if (!is.null(args[[arg]])) check_workspace_string(args[[arg]], arg)
  if (!is.null(config)) {
    check_workspace_string(config, "config")
    config <- normalizePath(path.expand(config), winslash = "/", mustWork = FALSE)
  }
  spec <- c(args, list(config = config, auth = auth))
  spec <- spec[!vapply(spec, is.null, logical(1))]
  res <- amlr_call("workspace_resolve", list(workspace = spec, cwd = getwd()))
  new_amlr_workspace(res)
}

check_workspace_string <- function(x, arg, call = rlang::caller_env()) {
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    amlr_abort("{.arg {arg}} must be a single non-empty string.", "workspace_config", call = call)
  }
  invisible(x)
}

workspace_fields <- c("subscription_id", "resource_group", "workspace_name", "auth", "tenant_id",
                      "client_id", "config_path")

new_amlr_workspace <- function(x) {
  out <- lapply(stats::setNames(workspace_fields, workspace_fields), function(f) x[[f]])
  structure(out, class = "amlr_workspace")
}

#' @export
format.amlr_workspace <- function(x, ...) {
  field <- function(label, value) paste0("  ", format(label, width = 16), value)
  # Whether the secret is there, never what it is.
  secret_set <- nzchar(Sys.getenv("AZURE_CLIENT_SECRET"))
  secret <- if (identical(x$auth, "service_principal") || (identical(x$auth, "default") && secret_set)) {
    if (secret_set) "from AZURE_CLIENT_SECRET (set)" else "AZURE_CLIENT_SECRET is not set"
  }
  c(
    paste0(cli::style_dim("<amlr_workspace> "), cli::style_bold(x$workspace_name)),
    field("subscription:", x$subscription_id),
    field("resource group:", x$resource_group),
    field("auth:", x$auth),
    if (!is.null(x$tenant_id)) field("tenant:", x$tenant_id),
    if (!is.null(x$client_id)) field("client id:", x$client_id),
    if (!is.null(secret)) field("client secret:", secret),
    if (!is.null(x$config_path)) field("config:", x$config_path)
  )
}

#' @export
print.amlr_workspace <- function(x, ...) {
  cat(format(x, ...), sep = "\n")
  invisible(x)
}
