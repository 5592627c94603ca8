# amlr's model server: a plumber app with Azure ML's custom-container routes.
#
# amlr starts this script for deploy_r_model() -- on 127.0.0.1 for the local
# backend, as the container's command on Azure ML -- with:
#   AMLR_SERVE_SCORE  the R file defining init(model_dir) and score(model, data)
#   AMLR_MODEL_DIR    the model's folder (else AZUREML_MODEL_DIR, Azure ML's mount)
#   AMLR_SERVE_HOST   address to listen on (default 0.0.0.0, as a container needs)
#   AMLR_SERVE_PORT   port (default 8000)
#   AMLR_SERVE_NAME   the endpoint's name, sent back in the X-Amlr-Server header
#
# Routes (the deployment's inference_config names the same ones):
#   GET  /live   200 while the process serves requests
#   GET  /ready  200 once init() has loaded the model, 503 before
#   POST /score  {"data": [{"col": value, ...}, ...]} -> {"predictions": [...]}
#                400 for a body that is not such rows, 500 when score() fails;
#                errors are {"error": {"class": ..., "message": ...}}.

local({
  env_or <- function(name, default) {
    value <- Sys.getenv(name, "")
    if (nzchar(value)) value else default
  }
  log_line <- function(...) {
    cat(format(Sys.time(), "%Y-%m-%d %H:%M:%OS3"), " ", ..., "\n", sep = "", file = stderr())
  }
  score_file <- env_or("AMLR_SERVE_SCORE", "score.R")
  model_dir <- env_or("AMLR_MODEL_DIR", env_or("AZUREML_MODEL_DIR", ""))
  host <- env_or("AMLR_SERVE_HOST", "0.0.0.0")
  port <- as.integer(env_or("AMLR_SERVE_PORT", "8000"))

  app <- new.env(parent = globalenv())
  sys.source(score_file, envir = app, keep.source = TRUE)
  for (fn in c("init", "score")) {
    if (!is.function(app[[fn]])) stop(score_file, " does not define the function ", fn, "()", call. = FALSE)
  }
  state <- new.env(parent = emptyenv())
  state$ready <- FALSE

  json <- function(x) jsonlite::toJSON(x, auto_unbox = TRUE, null = "null", na = "null", digits = NA)
  # Who answers: a client holding an old address can tell another server on a reused port.
  server_id <- paste0(Sys.getenv("AMLR_SERVE_NAME", "amlr"), "/", Sys.getpid())
  reply <- function(res, status, body) {
    res$status <- status
    res$setHeader("Content-Type", "application/json")
    res$setHeader("X-Amlr-Server", server_id)
    res$body <- body
    res
  }
  fail <- function(res, status, class, message) {
    reply(res, status, json(list(error = list(class = class, message = message))))
  }

  rows_of <- function(raw) {
    text <- if (length(raw)) rawToChar(raw) else ""
    Encoding(text) <- "UTF-8"
    body <- tryCatch(jsonlite::fromJSON(text, simplifyVector = TRUE), error = function(e) e)
    example <- "send {\"data\": [{\"col\": value, ...}, ...]}, one object per row"
    if (inherits(body, "error")) return(paste0("The request body is not JSON (", gsub("\\s+", " ", conditionMessage(body)), "); ", example, "."))
    if (!is.list(body) || is.data.frame(body) || !"data" %in% names(body)) {
      return(paste0("The request body has no `data` field; ", example, "."))
    }
    data <- body$data
    if (!is.data.frame(data)) return(paste0("`data` is not an array of row objects; ", example, "."))
    if (!nrow(data)) return(paste0("`data` has no rows; ", example, "."))
    data
  }

  predictions_json <- function(x) {
    if (is.factor(x)) x <- as.character(x)
    paste0("{\"predictions\":", jsonlite::toJSON(x, dataframe = "rows", null = "null", na = "null", digits = NA,
                                                  factor = "string", POSIXt = "ISO8601"), "}")
  }

  # The scoring route reads the raw body itself, whatever the content type, so
  # that a malformed body is a 400 with a useful message, not plumber's 500.
  plumber::register_parser("amlr_raw", function(...) function(value, ...) value, regex = ".*", verbose = FALSE)
  pr <- plumber::pr()
  pr <- plumber::pr_get(pr, "/live", function(req, res) reply(res, 200L, paste0("{\"live\":true,\"pid\":", Sys.getpid(), "}")))
  pr <- plumber::pr_get(pr, "/ready", function(req, res) {
    if (isTRUE(state$ready)) reply(res, 200L, "{\"ready\":true}") else fail(res, 503L, "not_ready", "init() is still loading the model.")
  })
  pr <- plumber::pr_post(pr, "/score", parsers = "amlr_raw", function(req, res) {
    if (!isTRUE(state$ready)) return(fail(res, 503L, "not_ready", "init() is still loading the model; retry when GET /ready answers 200."))
    data <- rows_of(req$bodyRaw)
    if (is.character(data)) return(fail(res, 400L, "bad_input", data))
    out <- tryCatch(withCallingHandlers(
      app$score(state$model, data),
      warning = function(w) log_line("score() warned: ", conditionMessage(w))
    ), error = function(e) e)
    if (inherits(out, "error")) {
      log_line("score() failed: ", conditionMessage(out))
      return(fail(res, 500L, "score_failed", paste0("score() failed: ", conditionMessage(out))))
    }
    body <- tryCatch(predictions_json(out), error = function(e) e)
    if (inherits(body, "error")) {
      return(fail(res, 500L, "score_failed", paste0("score() returned something that is not JSON-able (", conditionMessage(body),
                                                    "); return a data frame or a vector.")))
    }
    reply(res, 200L, body)
  })
  pr <- plumber::pr_set_404(pr, function(req, res) {
    fail(res, 404L, "not_found", paste0("No route ", req$REQUEST_METHOD, " ", req$PATH_INFO, "; use GET /live, GET /ready or POST /score."))
  })
  pr <- plumber::pr_set_error(pr, function(req, res, err) {
    log_line("error: ", conditionMessage(err))
    fail(res, 500L, "server_error", conditionMessage(err))
  })

  # The server answers /live at once; the model loads on the first turn of the
  # event loop, and /ready says when it is done. A failing init() ends the
  # process: the platform (or deploy_r_model()) reports it with this log.
  later::later(function() {
    log_line("amlr: loading the model with init(", encodeString(model_dir, quote = "\""), ")")
    model <- tryCatch(app$init(model_dir), error = function(e) e)
    if (inherits(model, "error")) {
      log_line("amlr: init() failed: ", conditionMessage(model))
      quit(save = "no", status = 3)
    }
    state$model <- model
    state$ready <- TRUE
    log_line("amlr: ready on http://", host, ":", port)
  })
  log_line("amlr: serving ", score_file, " on http://", host, ":", port, " (pid ", Sys.getpid(), ")")
  plumber::pr_run(pr, host = host, port = port, docs = FALSE, quiet = TRUE)
})
