# Serving a model: deploy_r_model() and the endpoint_*() family.
#
# R checks what only R can (the score file parses and defines init() and
# score()), then hands the work to amlr's Python side (`amlr.endpoints`), which
# starts the server, keeps the endpoint's record and talks to Azure ML. A local
# endpoint object carries its URL, so endpoint_invoke() posts to it directly.

#' Serve an R model over HTTP
#'
#' Starts amlr's plumber app with your scoring code: `init(model_dir)` loads
#' the model once, `score(model, data)` turns a data frame of new rows into
#' predictions. The app has Azure ML's custom-container routes: `GET /live`,
#' `GET /ready` (200 once `init()` is done) and `POST /score`, which takes
#' `{"data": [{"col": value, ...}, ...]}` and answers `{"predictions": [...]}`;
#' a body that is not such rows is a 400, a failing `score()` a 500, both
#' with a JSON `{"error": {"class", "message"}}`.
#'
#' * `backend = "local"`: a server on `127.0.0.1` (a free port, or `port`),
#'   a background process that outlives this R session, recorded under
#'   `AMLR_HOME` with its log. The server runs a copy of `score`: after
#'   editing it, delete and deploy again.
#' * `backend = "azureml_v2"`: a managed online endpoint and a deployment
#'   running the app in amlr's R image (plus plumber) with the model mounted.
#'   The deployment is named after a hash of everything it runs, so each
#'   change is a new deployment; traffic moves to it once it is ready. See
#'   [export_endpoint()] for the same thing as YAML for `az ml`.
#'
#' @param model The model: a folder holding the model files (what
#'   `init(model_dir)` receives), or a registered model from
#'   `register_model()` (an `amlr_model`; locally its `path`, on Azure ML its
#'   `azure_id`).
#' @param score Path of an R file defining `init(model_dir)` (returns the
#'   loaded model) and `score(model, data)` (takes a data frame, returns a
#'   data frame or a vector). It is checked before anything starts.
#' @param name Endpoint name: 3 to 32 letters, digits and `-`, starting with
#'   a letter (Azure ML's rule, used for both backends).
#' @param backend `"local"` (default) or `"azureml_v2"`.
#' @param environment An [r_environment()] for the image (`azureml_v2`);
#'   default amlr's R image. plumber is added to it.
#' @param instance_type,instance_count Azure ML VM size (default
#'   `"Standard_DS3_v2"`) and number of instances.
#' @param workspace An [aml_workspace()] (`azureml_v2`).
#' @param port Local port; `NULL` picks a free one. A port in use is an error.
#' @param timeout Seconds to wait for the local server to be ready.
#' @return An `amlr_endpoint`.
#' @family endpoints
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' if (requireNamespace("plumber", quietly = TRUE)) {
#'   model_dir <- tempfile("model"); dir.create(model_dir)
#'   saveRDS(lm(mpg ~ wt + hp, data = mtcars), file.path(model_dir, "model.rds"))
#'   score_file <- tempfile("score", fileext = ".R")
#'   writeLines(c(
#'     'init <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))',
#'     'score <- function(model, data) predict(model, newdata = data)'
#'   ), score_file)
#'   ep <- deploy_r_model(model_dir, score_file, name = "cars-example")
#'   ep
#'   endpoint_invoke(ep, data.frame(wt = c(2.5, 3.2), hp = c(110, 150)))
#'   endpoint_delete(ep)
#' }
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
deploy_r_model <- function(model, score, name, backend = c("local", "azureml_v2"), environment = NULL,
                           instance_type = NULL, instance_count = 1, workspace = NULL, port = NULL,
                           timeout = 60) {
  backend <- match.arg(backend)
  params <- endpoint_params(model, score, name, backend, environment, instance_type, instance_count)
  if (identical(backend, "local")) {
    check_plumber()
    params$rscript <- rscript_path()
    params$r_libs <- I(.libPaths())
    params$port <- port
    params$timeout <- timeout
  } else {
    params$workspace <- workspace_spec(workspace %||% aml_workspace_default(backend))
  }
  res <- amlr_call("endpoint_deploy", params)
  ep <- new_amlr_endpoint(res)
  cli::cli_inform(c(v = "Endpoint {.val {ep$name}} is serving at {.url {ep$url %||% '(pending)'}} ({ep$backend})."))
  ep
}

#' Write an Azure ML endpoint and deployment as YAML
#'
#' Writes, into the folder `path`, `endpoint.yml` (a managed online endpoint),
#' `deployment.yml` (the deployment with Azure ML's `inference_config`
#' routes), `environment/` (the Docker build context: amlr's R image, plumber
#' and the app) and, for a folder model, `model/`. Create them with
#' `az ml online-endpoint create -f endpoint.yml` and
#' `az ml online-deployment create -f deployment.yml --all-traffic`.
#'
#' @inheritParams deploy_r_model
#' @param path The folder to write to (created).
#' @param overwrite Replace files a previous export wrote.
#' @return `path`, invisibly.
#' @family endpoints
#' @export
#' @examples
#' model_dir <- tempfile("model"); dir.create(model_dir)
#' saveRDS(lm(mpg ~ wt, data = mtcars), file.path(model_dir, "model.rds"))
#' score_file <- tempfile("score", fileext = ".R")
#' writeLines(c(
#'   'init <- function(model_dir) readRDS(file.path(model_dir, "model.rds"))',
#'   'score <- function(model, data) predict(model, newdata = data)'
#' ), score_file)
#' out <- export_endpoint(model_dir, score_file, "cars-model", tempfile("endpoint"))
#' list.files(out, recursive = TRUE)
export_endpoint <- function(model, score, name, path, environment = NULL, instance_type = NULL,
                            instance_count = 1, overwrite = FALSE) {
  check_string(path, "path", "bad_request")
  params <- endpoint_params(model, score, name, "azureml_v2", environment, instance_type, instance_count)
  params$path <- path.expand(path)
  params$overwrite <- isTRUE(overwrite)
  res <- amlr_call("endpoint_export", params)
  cli::cli_inform(c(
    v = "Wrote endpoint {.val {name}} (deployment {.val {res$deployment_name}}) to {.path {res$path}}.",
    i = "Create it: {.code az ml online-endpoint create -f endpoint.yml}
         then {.code az ml online-deployment create -f deployment.yml --all-traffic}"
  ))
  invisible(res$path)
}

#' Send new rows to an endpoint and get its predictions
#'
#' @param endpoint An `amlr_endpoint` or an endpoint name.
#' @param data A data frame of rows to score.
#' @param timeout Seconds to wait for the answer.
#' @return A data frame: what `score()` returned, or for a vector a column
#'   `prediction`.
#' @family endpoints
#' @export
#' @examples
#' # See deploy_r_model().
endpoint_invoke <- function(endpoint, data, timeout = 300) {
  if (!is.data.frame(data)) {
    amlr_abort(c("{.arg data} must be a data frame of rows to score.",
                 x = "Got {.cls {class(data)}}.",
                 i = "Wrap it: {.code endpoint_invoke(ep, data.frame(...))} or {.code as.data.frame(x)}."),
               "bad_input")
  }
  if (!nrow(data)) amlr_abort("{.arg data} has no rows; pass at least one row to score.", "bad_input")
  body <- jsonlite::toJSON(list(data = data), dataframe = "rows", digits = NA, na = "null",
                           factor = "string", POSIXt = "ISO8601", auto_unbox = FALSE)
  if (inherits(endpoint, "amlr_endpoint") && identical(endpoint$backend, "local") && !is.null(endpoint$url) &&
      requireNamespace("curl", quietly = TRUE)) {
    text <- post_local(endpoint, body, timeout)
    if (!is.null(text)) return(predictions_frame(text))
  }
  # By name, on Azure ML, or a local server that did not answer: Python knows which error it is.
  res <- amlr_call("endpoint_invoke", list(name = endpoint_ref(endpoint), body = as.character(body), timeout = timeout))
  predictions_frame(res)
}

# One POST straight to a local server; NULL when nobody answers (the bridge then explains why).
post_local <- function(endpoint, body, timeout, call = rlang::caller_env()) {
  # A fresh connection per call: reusing a kept-alive one to httpuv costs a ~40 ms
  # delayed-ACK stall on every request, ten times the request itself.
  handle <- curl::new_handle(forbid_reuse = TRUE)
  curl::handle_setopt(handle, post = TRUE, postfields = enc2utf8(as.character(body)), timeout = timeout,
                      connecttimeout = 5)
  curl::handle_setheaders(handle, "Content-Type" = "application/json")
  res <- tryCatch(curl::curl_fetch_memory(paste0(endpoint$url, "/score"), handle = handle), error = function(e) e)
  if (inherits(res, "error")) {
    # Asking the bridge again would wait as long again: a timeout is reported here.
    if (grepl("Timeout was reached", conditionMessage(res), fixed = TRUE)) {
      amlr_abort(c("Endpoint {.val {endpoint$name}} did not answer within {timeout} second{?s}.",
                   i = "{.fn score} may be slow for this many rows: pass a larger {.arg timeout}, or fewer rows."),
                 "endpoint_timeout", call = call)
    }
    return(NULL)
  }
  # A server that is not this endpoint's (its port reused since): let the bridge find the endpoint.
  server <- curl::parse_headers_list(res$headers)[["x-amlr-server"]]
  if (!identical(server, paste0(endpoint$name, "/", endpoint$pid))) return(NULL)
  text <- rawToChar(res$content)
  Encoding(text) <- "UTF-8"
  if (identical(res$status_code, 200L)) return(text)
  answer <- tryCatch(jsonlite::fromJSON(text), error = function(e) list(error = list(message = text)))
  msg <- answer$error$message %||% text
  name <- endpoint$name
  switch(as.character(res$status_code),
    "400" = amlr_abort(c("Endpoint {.val {name}} rejected the data (HTTP 400).", x = cli_escape(msg)),
                       "bad_input", call = call),
    "500" = amlr_abort(c("Endpoint {.val {name}} failed to score (HTTP 500).", x = cli_escape(msg),
                         i = "Fix {.fn score} in the score file and deploy again;
                              {.code endpoint_logs(\"{name}\")} has the server's side."),
                       "score_failed", call = call),
    NULL # another server on that port, or a 503 while loading: ask the bridge
  )
}

# The predictions as a data frame, from the server's JSON text (or the bridge's).
predictions_frame <- function(x) {
  if (is.character(x)) {
    x <- jsonlite::fromJSON(x, simplifyVector = TRUE)
    if (is.list(x) && !is.data.frame(x) && "predictions" %in% names(x)) x <- x$predictions
  }
  if (is.data.frame(x)) return(x)
  if (is.atomic(x)) return(data.frame(prediction = if (is.null(x)) logical() else x))
  if (is.matrix(x)) return(as.data.frame(x))
  data.frame(prediction = I(x))
}

#' Status of an endpoint
#'
#' A local endpoint is `"Healthy"` (ready to score), `"Starting"` (`init()`
#' still loading), `"Unresponsive"` (its process runs but does not answer) or
#' `"Dead"` (its process has ended: see [endpoint_logs()]).
#'
#' @inheritParams endpoint_invoke
#' @return The status, a string (printed with the reason when there is one);
#'   the refreshed `amlr_endpoint` is its `"endpoint"` attribute.
#' @family endpoints
#' @export
#' @examples
#' # See deploy_r_model().
endpoint_status <- function(endpoint) {
  ep <- new_amlr_endpoint(amlr_call("endpoint_get", list(name = endpoint_ref(endpoint))))
  structure(ep$status, endpoint = ep, class = c("amlr_endpoint_status", "character"))
}

#' @export
print.amlr_endpoint_status <- function(x, ...) {
  reason <- attr(x, "endpoint")$reason
  cat(unclass(x)[1], if (!is.null(reason)) paste0("(", reason, ")"), "\n")
  invisible(x)
}

#' The log of an endpoint's server
#'
#' @inheritParams endpoint_invoke
#' @param n Number of last lines; `NULL` for all.
#' @return A character vector of log lines (class `amlr_logs`).
#' @family endpoints
#' @export
#' @examples
#' # See deploy_r_model().
endpoint_logs <- function(endpoint, n = NULL) {
  name <- endpoint_ref(endpoint)
  lines <- as.character(unlist(amlr_call("endpoint_logs", list(name = name, n = n))))
  structure(lines, step = rep(name, length(lines)), class = "amlr_logs")
}

#' Endpoints recorded on this machine
#'
#' @return A data frame: `name`, `backend`, `status`, `url`, `pid`, `created`.
#' @family endpoints
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' endpoint_list()
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
endpoint_list <- function() {
  rows <- amlr_call("endpoint_list")
  col <- function(name, default) row_col(rows, name, default)
  out <- data.frame(
    name = col("name", NA_character_),
    backend = col("backend", NA_character_),
    status = col("status", NA_character_),
    url = col("url", NA_character_),
    pid = col("pid", NA_integer_),
    created = as_time(col("created", NA_real_)),
    stringsAsFactors = FALSE
  )
  class(out) <- c("amlr_endpoints", class(out))
  out
}

#' @export
print.amlr_endpoints <- function(x, ...) {
  if (!nrow(x)) {
    cli::cli_text("No endpoints. Serve a model with {.fn deploy_r_model}.")
    return(invisible(x))
  }
  print(as.data.frame(unclass(x), stringsAsFactors = FALSE)[, c("name", "backend", "status", "url", "created")],
        row.names = FALSE)
  invisible(x)
}

#' Stop and remove an endpoint
#'
#' A local endpoint's server is stopped (no process is left) and its record
#' and log removed; an Azure ML endpoint is deleted with its deployments.
#'
#' @inheritParams endpoint_invoke
#' @return The endpoint name, invisibly.
#' @family endpoints
#' @export
#' @examples
#' # See deploy_r_model().
endpoint_delete <- function(endpoint) {
  name <- endpoint_ref(endpoint)
  amlr_call("endpoint_delete", list(name = name))
  cli::cli_inform(c(v = "Deleted endpoint {.val {name}}."))
  invisible(name)
}

# -- helpers ----------------------------------------------------------------------------------

new_amlr_endpoint <- function(x) {
  fields <- c("name", "backend", "status", "reason", "url", "port", "pid", "model", "score_file", "log",
              "deployment", "previous_deployments", "created")
  structure(lapply(stats::setNames(fields, fields), function(f) x[[f]]), class = "amlr_endpoint")
}

#' @export
format.amlr_endpoint <- function(x, ...) {
  status_fn <- switch(x$status %||% "", Healthy = cli::col_green, Dead = cli::col_red, cli::col_yellow)
  field <- function(label, value) paste0("  ", format(label, width = 10), value)
  model <- x$model %||% list()
  model_text <- if (!is.null(model$name)) {
    paste0(model$name, ":", model$version %||% "?")
  } else {
    model$path %||% model$azure_id
  }
  c(
    paste0(cli::style_dim("<amlr_endpoint> "), cli::style_bold(x$name)),
    field("backend:", x$backend),
    field("status:", status_fn(x$status %||% "?")),
    if (!is.null(x$reason)) field("reason:", x$reason),
    if (!is.null(x$url)) field("url:", x$url),
    if (!is.null(x$deployment)) field("deploy:", x$deployment),
    if (!is.null(model_text)) field("model:", model_text),
    if (!is.null(x$score_file)) field("score:", x$score_file),
    if (!is.null(x$log)) field("log:", x$log)
  )
}

#' @export
print.amlr_endpoint <- function(x, ...) {
  cat(format(x, ...), sep = "\n")
  invisible(x)
}

endpoint_ref <- function(endpoint, call = rlang::caller_env()) {
  if (inherits(endpoint, "amlr_endpoint")) return(endpoint$name)
  if (is.character(endpoint) && length(endpoint) == 1L && !is.na(endpoint) && nzchar(endpoint)) return(endpoint)
  amlr_abort(c("{.arg endpoint} must be an {.cls amlr_endpoint} or an endpoint name.",
               x = "Got {.cls {class(endpoint)}}."), "bad_request", call = call)
}

# What both deploy_r_model() and export_endpoint() send.
endpoint_params <- function(model, score, name, backend, environment, instance_type, instance_count,
                            call = rlang::caller_env()) {
  if (!is.character(name) || length(name) != 1L || is.na(name)) {
    amlr_abort(c("{.arg name} must be a single string, e.g. {.val cars-model}."), "endpoint_name", call = call)
  }
  model <- model_spec(model, call = call)
  score <- check_score_file(score, call = call)
  if (!is.null(environment) && !inherits(environment, "amlr_environment")) {
    amlr_abort("{.arg environment} must come from {.fn r_environment}.", "invalid_environment", call = call)
  }
  list(
    name = name, backend = backend, model = model, score = score,
    serve_script = system.file("serve", "serve.R", package = "amlr", mustWork = TRUE),
    environment = resolve_environment_spec(environment),
    instance_type = instance_type, instance_count = instance_count
  )
}

# A folder path, or a registered model (register_model(): class amlr_model with `path`/`azure_id`).
model_spec <- function(model, call = rlang::caller_env()) {
  if (inherits(model, "amlr_model")) {
    fields <- c("name", "version", "path", "azure_id")
    spec <- lapply(stats::setNames(fields, fields), function(f) {
      v <- model[[f]]
      if (is.null(v) || length(v) != 1L || is.na(v)) NULL else as.character(v)
    })
    if (!is.null(spec$path)) spec$path <- normalizePath(path.expand(spec$path), winslash = "/", mustWork = FALSE)
    return(spec[!vapply(spec, is.null, logical(1))])
  }
  if (is.character(model) && length(model) == 1L && !is.na(model) && nzchar(model)) {
    return(list(path = normalizePath(path.expand(model), winslash = "/", mustWork = FALSE)))
  }
  amlr_abort(c("{.arg model} must be a model folder or a registered model ({.fn register_model}).",
               x = "Got {.cls {class(model)}}."), "model_not_found", call = call)
}

#' Check a score file without running it
#'
#' The file must parse, and define at its top level `init` as a function of
#' one argument and `score` as a function of two. Assignments whose value is
#' not a literal `function(...)` are accepted as they are (they can only be
#' checked by running the file).
#' @noRd
check_score_file <- function(score, call = rlang::caller_env()) {
  example <- c(i = paste(
    "A score file defines {.code init <- function(model_dir) readRDS(file.path(model_dir, \"model.rds\"))}",
    "and {.code score <- function(model, data) predict(model, newdata = data)}."
  ))
  if (!is.character(score) || length(score) != 1L || is.na(score) || !nzchar(score)) {
    amlr_abort(c("{.arg score} must be the path of an R file.", example), "score_file", call = call)
  }
  path <- normalizePath(path.expand(score), winslash = "/", mustWork = FALSE)
  if (!file.exists(path) || dir.exists(path)) {
    amlr_abort(c("The score file {.path {path}} does not exist.", example), "score_file", call = call)
  }
  exprs <- tryCatch(parse(path, keep.source = FALSE, encoding = "UTF-8"), error = function(e) e)
  if (inherits(exprs, "error")) {
    amlr_abort(c("The score file {.path {path}} is not valid R.", x = cli_escape(conditionMessage(exprs)),
                 i = "Fix the syntax error, then deploy again."), "score_file", call = call)
  }
  found <- list()
  for (e in as.list(exprs)) {
    if (is.call(e) && as.character(e[[1]])[1] %in% c("<-", "=", "<<-") && length(e) == 3L &&
        (is.name(e[[2]]) || is.character(e[[2]]))) {
      target <- as.character(e[[2]])
      if (target %in% c("init", "score")) found[[target]] <- e[[3]]
    }
  }
  wanted <- c(init = 1L, score = 2L)
  shown <- c(init = "init(model_dir)", score = "score(model, data)")
  for (fn in names(wanted)) {
    value <- found[[fn]]
    if (is.null(value)) {
      amlr_abort(c("The score file {.path {path}} does not define {.fn {fn}}.",
                   i = "Add {.code {fn} <- function(...)} at its top level: {.code {shown[[fn]]}}.", example),
                 "score_file", call = call)
    }
    if (is.call(value) && identical(value[[1]], as.name("function"))) {
      formals <- names(value[[2]])
      n_ok <- length(formals) >= wanted[[fn]] || "..." %in% formals
      # quote(expr = ) is the empty symbol: a formal argument with no default.
      required <- vapply(as.list(value[[2]]),
                         function(d) identical(d, quote(expr = )), # nolint: spaces_inside_linter.
                         logical(1))
      too_many <- sum(required[names(required) != "..."]) > wanted[[fn]]
      if (!n_ok || too_many) {
        amlr_abort(c("In the score file {.path {path}}, {.fn {fn}} takes {length(formals)} argument{?s};
                      it must take {wanted[[fn]]}: {.code {shown[[fn]]}}.",
                     example), "score_file", call = call)
      }
    }
  }
  path
}

check_plumber <- function(call = rlang::caller_env()) {
  if (!requireNamespace("plumber", quietly = TRUE)) {
    amlr_abort(c("Serving a model needs the {.pkg plumber} package.",
                 i = "Install it: {.code install.packages(\"plumber\")}
                      (Debian/Ubuntu: {.code apt install r-cran-plumber})."),
               "missing_package", call = call)
  }
}

rscript_path <- function() {
  exe <- if (.Platform$OS.type == "windows") "Rscript.exe" else "Rscript"
  file.path(R.home("bin"), exe)
}
