#' A registered data asset as a step input
#'
#' `aml_data()` names a version of a registered data asset; put it in the
#' `inputs` of [r_step()]. Locally the name is resolved, when the pipeline is
#' submitted, in amlr's store under `AMLR_HOME` (see [register_data()]); on
#' `"azureml_v2"` and in [export_pipeline()] it becomes
#' `azureml:<name>:<version>`; on `"azureml"` the registered dataset of that
#' name. A step reading `"latest"` re-runs when `"latest"` has come to mean
#' other content, and is reused otherwise.
#'
#' @param name The asset's name. Azure ML's rule: letters, digits, `-`, `_`
#'   and `.`, starting with a letter or digit, at most 255 characters.
#' @param version A version (`2`, `"2"`) or `"latest"`.
#' @param mode `"ro_mount"` (read-only, the default) or `"download"` (a
#'   private, writable copy).
#' @param type The asset's Azure ML type, `"uri_folder"`, `"uri_file"` or
#'   `"mltable"`; `NULL` asks the workspace when submitting to
#'   `"azureml_v2"` (and means `"uri_folder"` in [export_pipeline()]).
#' @return An `amlr_data_ref`, for the `inputs` of [r_step()].
#' @family data and models
#' @export
#' @examples
#' aml_data("cars")
#' aml_data("cars", version = 2, mode = "download")
aml_data <- function(name, version = "latest", mode = c("ro_mount", "download"), type = NULL) {
  check_string(name, "name", "invalid_asset_name")
  mode <- match.arg(mode)
  if (!is.null(type)) type <- match.arg(type, c("uri_folder", "uri_file", "mltable"))
  if (is.numeric(version) && length(version) == 1L && !is.na(version)) version <- format(version, scientific = FALSE)
  check_string(version, "version", "invalid_asset_name")
  structure(list(type = "data_asset", name = name, version = version, mode = mode, data_type = type),
            class = c("amlr_data_ref", "amlr_input"))
}

#' @export
print.amlr_data_ref <- function(x, ...) {
  cat(paste0("<amlr_data_ref> aml_data(\"", x$name, "\", version = \"", x$version, "\", mode = \"", x$mode,
             "\"): ", data_ref_text(x), " on Azure ML\n"))
  invisible(x)
}

data_ref_text <- function(x) {
  if (identical(x$version, "latest")) {
    paste0("azureml:", x$name, "@latest")
  } else {
    paste0("azureml:", x$name, ":", x$version)
  }
}

#' Register a file or folder as a data asset
#'
#' Versions are immutable and numbered `1, 2, ...` per name, as on Azure ML.
#' The local store is content-addressed: registering content that a version
#' of `name` already holds returns that version (and says so) instead of
#' making a new one. Two sessions registering the same name at once get
#' distinct versions.
#'
#' @param path A file or a folder.
#' @inheritParams aml_data
#' @param version `NULL` (the next whole number) or an explicit, new version.
#' @param description Free text.
#' @param backend `"local"` (the store under `AMLR_HOME`), or `"azureml_v2"`
#'   / `"azureml"` to create the data asset in the Azure ML workspace (the
#'   same asset serves both SDKs).
#' @param workspace An [aml_workspace()] for the Azure ML backends.
#' @return An `amlr_data_asset`: `name`, `version`, `type` (`"uri_folder"`
#'   or `"uri_file"`), `path` (where the content lives locally), `azure_id`,
#'   `existing` (`TRUE` when identical content was registered already).
#' @family data and models
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("cars"); dir.create(dir)
#' write.csv(mtcars, file.path(dir, "cars.csv"))
#' register_data(dir, "cars")
#' register_data(dir, "cars") # same content: still version 1
#' list_data()
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
register_data <- function(path, name, version = NULL, description = NULL, backend = c("local", "azureml_v2", "azureml"),
                          workspace = NULL) {
  check_string(path, "path", "bad_request")
  check_string(name, "name", "invalid_asset_name")
  backend <- match.arg(backend)
  if (!file.exists(path)) {
    amlr_abort(c("{.path {path}} does not exist.", i = "Give the path of a file or a folder to register."),
               "output_not_found")
  }
  params <- list(path = normalizePath(path, winslash = "/"), name = name, version = version_param(version),
                 description = description, backend = backend)
  if (backend != "local") params$workspace <- workspace_spec(workspace %||% aml_workspace_default(backend))
  asset <- new_amlr_asset(amlr_call("data_register", params))
  if (isTRUE(asset$existing)) {
    cli::cli_inform(c(i = "Identical content is already data asset {.val {asset$name}} version {.val {asset$version}};
                           nothing new was registered."))
  } else {
    cli::cli_inform(c(v = "Registered data asset {.val {asset$name}} version {.val {asset$version}}."))
  }
  invisible(asset)
}

#' List registered data assets and models
#'
#' `list_data()` and `list_models()` read amlr's store under `AMLR_HOME`:
#' local assets and models, and those amlr registered on Azure ML (with their
#' `azure_id`).
#'
#' @param name Only this asset's versions.
#' @return A data frame, one row per version: `name`, `version`, `type`,
#'   `backend`, `location` (local path or Azure ML id), `created`,
#'   `description`, and the lineage: `run`, `step`, `output`, `data_assets`
#'   (for models, and for data registered by `r_step(register = )`).
#' @family data and models
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' list_data()
#' list_models()
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
list_data <- function(name = NULL) {
  assets_frame(amlr_call("data_list", list(name = name)), models = FALSE)
}

#' @rdname list_data
#' @export
list_models <- function(name = NULL) {
  assets_frame(amlr_call("model_list", list(name = name)), models = TRUE)
}

#' Bring an Azure ML data asset into the local store
#'
#' Downloads a version of a workspace's data asset (through azure-ai-ml) and
#' registers it locally under the same name and version, so a pipeline that
#' reads `aml_data(name, version)` then runs locally on the same content.
#'
#' @inheritParams aml_data
#' @param dest Optional folder to copy the content to as well (must not exist).
#' @param workspace An [aml_workspace()]; defaults to the one found in
#'   `config.json` / the environment.
#' @return An `amlr_data_asset` (the local copy).
#' @family data and models
#' @export
#' @examples
#' \dontrun{
#' download_data("accidents", version = 3)
#' }
download_data <- function(name, version = "latest", dest = NULL, workspace = NULL) {
  check_string(name, "name", "invalid_asset_name")
  workspace <- workspace %||% aml_workspace_default("azureml_v2")
  asset <- new_amlr_asset(amlr_call("data_download", list(
    name = name, version = version_param(version), dest = dest, workspace = workspace_spec(workspace)
  )))
  cli::cli_inform(c(v = "Data asset {.val {asset$name}} version {.val {asset$version}} is in the local store."))
  invisible(asset)
}

#' Register a step's output as a model
#'
#' The model records its lineage: the run, the step, the output, the step's
#' fingerprint and the data assets the step read. Locally the output's files
#' are copied into amlr's store (content-addressed, like data assets); for an
#' `"azureml_v2"` run an Azure ML model (`custom_model`) is created on the
#' job's output; for an `"azureml"` run the output is registered with the
#' classic SDK's `Model.register()`. Only a completed step can be registered.
#'
#' @inheritParams run_status
#' @param step The step's name (may be omitted for a one-step run).
#' @param output The output holding the model files.
#' @param name The model's name (Azure ML's asset-name rule, see [aml_data()]).
#' @param version `NULL` (the next whole number) or an explicit new version.
#' @param tags Named character vector of tags.
#' @param description Free text.
#' @return An `amlr_model` with `name`, `version`, `path` (local folder of the
#'   model files, `NULL` for Azure ML models), `azure_id`
#'   (`"azureml:<name>:<version>"` on Azure ML, else `NULL`), `lineage`
#'   (`run`, `step`, `output`, `fingerprint`, `data_assets`).
#' @family data and models
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("train"); dir.create(dir)
#' writeLines('saveRDS(lm(mpg ~ wt, mtcars), file.path(amlr::step_output("model"), "model.rds"))',
#'            file.path(dir, "train.R"))
#' run <- submit_r_pipeline(r_step(file.path(dir, "train.R"), outputs = "model"), quiet = TRUE)
#' model <- register_model(run, "train", "model", "cars-model")
#' model
#' readRDS(file.path(model$path, "model.rds"))
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
register_model <- function(run = "latest", step = NULL, output, name, version = NULL, tags = NULL,
                           description = NULL) {
  check_string(output, "output", "bad_request")
  check_string(name, "name", "invalid_asset_name")
  if (!is.null(step)) check_string(step, "step", "bad_request")
  if (!is.null(tags) && (is.null(names(tags)) || any(!nzchar(names(tags))))) {
    amlr_abort("{.arg tags} must be named, e.g. {.code tags = c(team = \"risk\")}.", "bad_request")
  }
  model <- new_amlr_model(amlr_call("model_register", list(
    run = run_ref(run), step = step, output = output, name = name, version = version_param(version),
    tags = if (length(tags)) as.list(tags) else NULL, description = description
  )))
  if (isTRUE(model$existing)) {
    cli::cli_inform(c(i = "Identical files are already model {.val {model$name}} version {.val {model$version}};
                           nothing new was registered."))
  } else {
    cli::cli_inform(c(v = "Registered model {.val {model$name}} version {.val {model$version}}."))
  }
  invisible(model)
}

#' Rebuild the asset store's index
#'
#' The store keeps one record file per asset version; its SQLite index only
#' speeds up lookups. When the index is damaged (`amlr_error_store_damaged`),
#' this builds a new one from the records and keeps the damaged file aside.
#'
#' @return A list: `records` (how many were indexed), `skipped` (unreadable
#'   record files), `kept` (where the old index went).
#' @family data and models
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' rebuild_store()
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
rebuild_store <- function() {
  res <- amlr_call("store_rebuild", list())
  cli::cli_inform(c(v = "Indexed {res$records} asset version{?s}.",
                    if (length(res$skipped)) c(x = "Unreadable records: {.path {unlist(res$skipped)}}.")))
  invisible(res)
}

version_param <- function(version) {
  if (is.null(version)) return(NULL)
  if (is.numeric(version) && length(version) == 1L && !is.na(version)) return(format(version, scientific = FALSE))
  check_string(version, "version", "invalid_asset_name")
  version
}

asset_fields <- c("name", "version", "type", "path", "azure_id", "backend", "content_hash", "description",
                  "tags", "source", "created", "existing", "lineage")

new_amlr_asset <- function(x) {
  out <- lapply(stats::setNames(asset_fields, asset_fields), function(f) x[[f]])
  structure(out, class = "amlr_data_asset")
}

new_amlr_model <- function(x) {
  out <- lapply(stats::setNames(asset_fields, asset_fields), function(f) x[[f]])
  structure(out, class = "amlr_model")
}

asset_location <- function(x) x$path %||% x$azure_id %||% NA_character_

#' @export
format.amlr_data_asset <- function(x, ...) {
  c(
    paste0("<amlr_data_asset> ", x$name, " version ", x$version, " (", x$type, ", ", x$backend, ")"),
    paste0("  ", if (is.null(x$path)) "on Azure ML: " else "at: ", asset_location(x)),
    if (!is.null(x$azure_id) && !is.null(x$path)) paste0("  Azure ML: ", x$azure_id),
    paste0("  use: aml_data(\"", x$name, "\", version = \"", x$version, "\")"),
    if (!is.null(x$source)) paste0("  from: ", x$source),
    format_lineage(x$lineage),
    if (!is.null(x$description)) paste0("  ", x$description)
  )
}

#' @export
print.amlr_data_asset <- function(x, ...) {
  cat(format(x, ...), sep = "\n")
  invisible(x)
}

format_lineage <- function(l) {
  if (is.null(l)) return(character())
  assets <- vapply(l$data_assets %||% list(), function(d) paste0(d$name, ":", d$version), "")
  c(
    paste0("  lineage: run ", l$run, ", step ", l$step, ", output ", l$output),
    if (!is.null(l$fingerprint)) paste0("  step fingerprint: ", substr(l$fingerprint, 1, 12)),
    paste0("  data read: ", if (length(assets)) paste(assets, collapse = ", ") else "none (no data assets)")
  )
}

#' @export
format.amlr_model <- function(x, ...) {
  c(
    paste0("<amlr_model> ", x$name, " version ", x$version, " (", x$backend, ")"),
    if (!is.null(x$path)) paste0("  files: ", x$path),
    if (!is.null(x$azure_id)) paste0("  Azure ML: ", x$azure_id),
    format_lineage(x$lineage),
    if (length(x$tags)) paste0("  tags: ", paste(names(x$tags), unlist(x$tags), sep = "=", collapse = ", ")),
    if (!is.null(x$description)) paste0("  ", x$description)
  )
}

#' @export
print.amlr_model <- function(x, ...) {
  cat(format(x, ...), sep = "\n")
  invisible(x)
}

# Lineage columns for both: data assets registered by r_step(register = ) have it too.
assets_frame <- function(rows, models) {
  chr <- function(f) vapply(rows, function(r) as.character(r[[f]] %||% NA_character_), "")
  out <- data.frame(
    name = chr("name"), version = chr("version"), type = chr("type"), backend = chr("backend"),
    location = vapply(rows, asset_location, ""),
    created = as_time(vapply(rows, function(r) as.numeric(r$created %||% NA_real_), 0)),
    description = chr("description"),
    stringsAsFactors = FALSE
  )
  if (TRUE) {
    lin <- function(f) vapply(rows, function(r) as.character(r$lineage[[f]] %||% NA_character_), "")
    out$run <- lin("run")
    out$step <- lin("step")
    out$output <- lin("output")
    out$data_assets <- vapply(rows, function(r) {
      d <- r$lineage$data_assets %||% list()
      paste(vapply(d, function(a) paste0(a$name, ":", a$version), ""), collapse = ", ")
    }, "")
  }
  out
}

# A registered model as an `amlr_model`, by name and version (for deploy_r_model(model = "name")).
model_get <- function(name, version = "latest", call = rlang::caller_env()) {
  check_string(name, "name", "invalid_asset_name", call = call)
  new_amlr_model(amlr_call("model_get", list(name = name, version = version_param(version)), call = call))
}

# The same for a data asset.
data_get <- function(name, version = "latest", call = rlang::caller_env()) {
  check_string(name, "name", "invalid_asset_name", call = call)
  new_amlr_asset(amlr_call("data_get", list(name = name, version = version_param(version)), call = call))
}
