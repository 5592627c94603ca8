#' Run one step many times: a parameter sweep
#'
#' `r_sweep()` runs trials of a step over parameters and keeps the best one.
#' Each trial's values reach the script through `${{search_space.NAME}}` in
#' the step's `args` (Azure ML's syntax); the script logs the objective with
#' [log_metric()] (the last value of a series counts, as on Azure ML). A sweep
#' is a step of a pipeline: `output_of(sweep, "model")` is the best trial's
#' output.
#'
#' Locally each trial is an ordinary step (`<name>__<hash of its values>`),
#' run in parallel up to `max_concurrent`, and reused like any step: rerunning
#' a sweep with one more value runs one trial. A failed trial does not fail
#' the sweep unless every trial fails. On `"azureml_v2"` (and in
#' [export_pipeline()]) a sweep is a sweep job node; the classic `"azureml"`
#' backend refuses it with a classed error naming `"azureml_v2"`.
#'
#' @param step An [r_step()] whose `args` use `${{search_space.NAME}}`.
#' @param params Named list: for each parameter a vector of values (a grid
#'   axis), or a distribution: [choice()], [uniform()], [loguniform()],
#'   [randint()]. Names are letters, digits and `_`.
#' @param objective Name of the metric the script logs with [log_metric()].
#' @param goal `"minimize"` or `"maximize"` the objective.
#' @param sampling `"grid"` (every combination of the values) or `"random"`
#'   (`max_trials` draws, seeded).
#' @param max_trials At most this many trials (needed for `"random"`; a grid
#'   larger than it is an error, as is one over 1000).
#' @param max_concurrent Trials running at once (default: the local runner's
#'   parallelism, the number of cores).
#' @param early_termination `NULL`, or a policy from [bandit_policy()],
#'   [median_stopping_policy()] or [truncation_selection_policy()]; applied on
#'   Azure ML, not locally (every local trial runs to its end).
#' @param seed Seed of the random sampling; `NULL` picks one and records it
#'   in the sweep, so submitting the same sweep again draws the same trials.
#' @param name The sweep's step name (default the step's).
#' @return An `amlr_sweep` (also an `amlr_step`).
#' @family many runs
#' @export
#' @examples
#' dir <- tempfile("sweep"); dir.create(dir)
#' writeLines(c('a <- as.numeric(commandArgs(TRUE))',
#'              'amlr::log_metric("loss", (a[1] - 0.3)^2 + a[2])'), file.path(dir, "fit.R"))
#' fit <- r_step(file.path(dir, "fit.R"), args = c("${{search_space.alpha}}", "${{search_space.beta}}"))
#' r_sweep(fit, params = list(alpha = c(0.1, 0.3, 1), beta = c(0, 1)), objective = "loss")
#' r_sweep(fit, params = list(alpha = uniform(0, 1), beta = choice(0, 1)), objective = "loss",
#'         sampling = "random", max_trials = 5, seed = 1)
r_sweep <- function(step, params, objective, goal = c("minimize", "maximize"), sampling = c("grid", "random"),
                    max_trials = NULL, max_concurrent = NULL, early_termination = NULL, seed = NULL, name = NULL) {
  check_fanout_step(step, "r_sweep")
  goal <- match.arg(goal)
  sampling <- match.arg(sampling)
  if (!is.list(params) || !length(params) || is.null(names(params)) || any(!nzchar(names(params)))) {
    amlr_abort(c("{.arg params} must be a named list of values or distributions.",
                 i = "For example {.code params = list(alpha = c(0.01, 0.1, 1), depth = 2:6)}."), "invalid_spec")
  }
  check_string(objective, "objective")
  if (!is.null(early_termination) && !inherits(early_termination, "amlr_policy")) {
    amlr_abort(c("{.arg early_termination} must be NULL or a policy.",
                 i = "Use {.fn bandit_policy}, {.fn median_stopping_policy} or {.fn truncation_selection_policy}."),
               "invalid_spec")
  }
  if (identical(sampling, "random") && is.null(seed)) {
    # Not from R's RNG: picking a seed must not move the session's random stream.
    seed <- as.integer((as.numeric(Sys.time()) * 1000 + Sys.getpid()) %% (.Machine$integer.max - 1) + 1)
  }
  fanout <- list(
    role = "sweep", params = lapply(params, param_spec), objective = objective, goal = goal, sampling = sampling,
    max_trials = max_trials, max_concurrent = max_concurrent,
    early_termination = if (!is.null(early_termination)) unclass(early_termination), seed = seed
  )
  new_fanout_step(step, fanout, name, "amlr_sweep")
}

#' Run one step once per item: fan-out
#'
#' `r_map()` runs a step once per element of `over`, the element reaching the
#' script as `${{item}}` in its `args`: a value, or -- with
#' `over = files_of(folder)` -- the path of one file of the folder. Each
#' output of the map holds one folder per completed item, named after the
#' item; failed items are listed (see [run_trials()]) and the others kept.
#' Locally the items run in parallel up to `max_concurrent` and are reused
#' one by one. On `"azureml_v2"` it is one node per item (see the README).
#'
#' @param step An [r_step()] whose `args` use `${{item}}`.
#' @param over A vector of values (numbers or strings), or [files_of()].
#' @inheritParams r_sweep
#' @return An `amlr_map` (also an `amlr_step`).
#' @family many runs
#' @export
#' @examples
#' dir <- tempfile("map"); dir.create(dir)
#' writeLines('cat("item", commandArgs(TRUE), "\\n")', file.path(dir, "one.R"))
#' one <- r_step(file.path(dir, "one.R"), args = "${{item}}")
#' r_map(one, over = c("a", "b", "c"))
#' r_map(one, over = files_of(dir))
r_map <- function(step, over, max_concurrent = NULL, name = NULL) {
  check_fanout_step(step, "r_map")
  over_spec <- if (inherits(over, "amlr_files")) {
    list(type = "files", input = unclass(over$input))
  } else {
    if (!is.atomic(over) || is.null(over) || is.object(over)) {
      amlr_abort(c("{.arg over} must be a vector of values or {.fn files_of}.",
                   x = "Got {.cls {class(over)}}."), "invalid_spec")
    }
    list(type = "values", values = I(unname(over)))
  }
  new_fanout_step(step, list(role = "map", over = over_spec, max_concurrent = max_concurrent), name, "amlr_map")
}

#' The files of a folder, for `r_map(over =)`
#'
#' @param x A local folder or [aml_data()] (a registered folder). The files
#'   are listed when the pipeline is submitted (hidden files left out); the
#'   folder reaches every item's step as an input, and `${{item}}` is the path
#'   of one file in it.
#' @return An `amlr_files`.
#' @family many runs
#' @export
#' @examples
#' files_of(tempdir())
files_of <- function(x) {
  if (!inherits(x, "amlr_data_ref")) {
    check_string(x, "x")
    if (!dir.exists(x)) {
      amlr_abort(c("{.path {x}} is not a folder.", i = "Give the folder whose files to map over."), "invalid_spec")
    }
  }
  structure(list(input = normalize_input(x)), class = "amlr_files")
}

#' @export
print.amlr_files <- function(x, ...) {
  cli::cli_text("{.cls amlr_files} the files of {format_input(x$input)}")
  invisible(x)
}

#' Search space distributions for r_sweep()
#'
#' They mirror Azure ML's search space (`azure.ai.ml.sweep`): `choice()` one
#' of the values, `uniform()` a number between the bounds, `loguniform()`
#' `exp()` of a number uniform between the bounds (so the bounds are logs:
#' `loguniform(log(1e-4), log(1))`), `randint()` a whole number in
#' `0, ..., upper - 1`. A plain vector in `params` is a `choice()`; only
#' `choice()` can be a grid axis.
#'
#' @param ... Values (numbers, strings or logicals).
#' @param min_value,max_value Bounds.
#' @param upper One more than the largest whole number drawn.
#' @return An `amlr_distribution`.
#' @family many runs
#' @export
#' @examples
#' choice(0.01, 0.1, 1)
#' uniform(0, 1)
#' loguniform(log(1e-4), log(1))
#' randint(10)
choice <- function(...) {
  values <- c(...)
  structure(list(type = "choice", values = I(unname(values))), class = "amlr_distribution")
}

#' @rdname choice
#' @export
uniform <- function(min_value, max_value) {
  structure(list(type = "uniform", min_value = min_value, max_value = max_value), class = "amlr_distribution")
}

#' @rdname choice
#' @export
loguniform <- function(min_value, max_value) {
  structure(list(type = "loguniform", min_value = min_value, max_value = max_value), class = "amlr_distribution")
}

#' @rdname choice
#' @export
randint <- function(upper) {
  structure(list(type = "randint", upper = upper), class = "amlr_distribution")
}

#' @export
format.amlr_distribution <- function(x, ...) {
  switch(x$type,
    choice = paste0("choice(", paste(format_values(x$values), collapse = ", "), ")"),
    randint = paste0("randint(", x$upper, ")"),
    paste0(x$type, "(", x$min_value, ", ", x$max_value, ")")
  )
}

#' @export
print.amlr_distribution <- function(x, ...) {
  cat("<amlr_distribution> ", format(x), "\n", sep = "")
  invisible(x)
}

#' Early termination policies for r_sweep() on Azure ML
#'
#' Azure ML's policies (`BanditPolicy`, `MedianStoppingPolicy`,
#' `TruncationSelectionPolicy`), applied by the sweep job on `"azureml_v2"`.
#' Local runs let every trial finish.
#'
#' @param slack_factor,slack_amount Bandit: a trial stops when its objective
#'   is worse than the best by this ratio, or by this amount (give one).
#' @param evaluation_interval How often (in logged values) the policy looks.
#' @param delay_evaluation Logged values to wait before the first look.
#' @param truncation_percentage Truncation selection: the percentage of
#'   lowest-performing trials stopped at each look.
#' @return An `amlr_policy`.
#' @family many runs
#' @export
#' @examples
#' bandit_policy(slack_factor = 0.1, evaluation_interval = 2)
bandit_policy <- function(slack_factor = NULL, slack_amount = NULL, evaluation_interval = 1, delay_evaluation = 0) {
  new_policy("bandit", slack_factor = slack_factor, slack_amount = slack_amount,
             evaluation_interval = evaluation_interval, delay_evaluation = delay_evaluation)
}

#' @rdname bandit_policy
#' @export
median_stopping_policy <- function(evaluation_interval = 1, delay_evaluation = 0) {
  new_policy("median_stopping", evaluation_interval = evaluation_interval, delay_evaluation = delay_evaluation)
}

#' @rdname bandit_policy
#' @export
truncation_selection_policy <- function(truncation_percentage, evaluation_interval = 1, delay_evaluation = 0) {
  new_policy("truncation_selection", truncation_percentage = truncation_percentage,
             evaluation_interval = evaluation_interval, delay_evaluation = delay_evaluation)
}

new_policy <- function(type, ...) {
  args <- Filter(Negate(is.null), list(...))
  structure(c(list(type = type), args), class = "amlr_policy")
}

#' @export
print.amlr_policy <- function(x, ...) {
  rest <- unclass(x)[setdiff(names(x), "type")]
  cat("<amlr_policy> ", x$type, "(", paste(names(rest), unlist(rest), sep = " = ", collapse = ", "), ")\n", sep = "")
  invisible(x)
}

param_spec <- function(p) {
  if (inherits(p, "amlr_distribution")) return(unclass(p))
  if (is.list(p) || !is.atomic(p)) {
    amlr_abort(c("Each element of {.arg params} is a vector of values or a distribution.",
                 i = "Use {.fn choice}, {.fn uniform}, {.fn loguniform} or {.fn randint}."), "invalid_spec")
  }
  list(type = "choice", values = I(unname(p)))
}

format_values <- function(v) {
  vapply(v, function(e) if (is.character(e)) encodeString(e, quote = "\"") else format(e), character(1))
}

check_fanout_step <- function(step, fn, call = rlang::caller_env()) {
  if (inherits(step, c("amlr_sweep", "amlr_map"))) {
    amlr_abort(c("{.fn {fn}} takes a plain {.fn r_step}, not a sweep or map.",
                 i = "Nesting sweeps and maps is not supported; sweep inside the script instead."),
               "invalid_spec", call = call)
  }
  if (!inherits(step, "amlr_step")) {
    amlr_abort(c("{.arg step} must be an {.fn r_step}.", x = "Got {.cls {class(step)}}."), "invalid_spec", call = call)
  }
}

new_fanout_step <- function(step, fanout, name, class, call = rlang::caller_env()) {
  if (!is.null(name)) {
    check_string(name, "name", call = call)
    step$name <- name
  }
  step$fanout <- fanout
  class(step) <- c(class, "amlr_step")
  # The one validator checks it now: parameters, placeholders, grid size, `over`.
  checked <- amlr_call("validate", list(spec = pipeline_spec(new_pipeline(list(step), name = "check")),
                                        check_paths = FALSE), call = call)
  step$fanout <- checked$steps[[1]]$fanout
  step$n_runs <- fanout_size(step$fanout)
  step
}

# " [sweep: 9 trials]" / " [map: 3 items]" in a pipeline's listing.
fanout_note <- function(s) {
  f <- s$fanout
  if (is.null(f)) return("")
  n <- s$n_runs %||% NA_integer_
  what <- if (identical(f$role, "sweep")) "trials" else "items"
  paste0(" [", if (identical(f$role, "sweep")) "sweep" else "map", ": ",
         if (is.na(n)) paste("the files of", format_input(f$over$input)) else paste(n, what), "]")
}

fanout_size <- function(f) {
  if (identical(f$role, "map")) return(if (identical(f$over$type, "values")) length(f$over$values) else NA_integer_)
  if (identical(f$sampling, "random")) return(f$max_trials)
  n <- prod(vapply(f$params, function(p) length(p$values), numeric(1)))
  as.integer(min(n, f$max_trials %||% n))
}

#' @export
print.amlr_sweep <- function(x, ...) {
  f <- x$fanout
  cli::cli_text("{.cls amlr_sweep} {.strong {x$name}}: {x$n_runs} trial{?s} of {.file {x$script}}, ",
                "{f$goal} {.field {f$objective}} ({f$sampling}{if (!is.null(f$seed)) paste0(', seed ', f$seed)})")
  for (nm in names(f$params)) {
    p <- f$params[[nm]]
    p$values <- unlist(p$values)
    cli::cli_text("  {.field {nm}}: {format(structure(p, class = 'amlr_distribution'))}")
  }
  if (!is.null(f$max_concurrent)) cli::cli_text("  at most {f$max_concurrent} at once")
  if (length(x$outputs)) cli::cli_text("  outputs (the best trial's): {.field {x$outputs}}")
  invisible(x)
}

#' @export
print.amlr_map <- function(x, ...) {
  f <- x$fanout
  what <- if (identical(f$over$type, "values")) paste(length(f$over$values), "items") else
    paste("the files of", format_input(f$over$input))
  cli::cli_text("{.cls amlr_map} {.strong {x$name}}: {.file {x$script}} once per item, over {what}")
  if (length(x$outputs)) cli::cli_text("  outputs (a folder per item): {.field {x$outputs}}")
  invisible(x)
}

#' Trials of a sweep, items of a map
#'
#' @inheritParams run_status
#' @param step The sweep's or map's name; `NULL` when the run has only one.
#' @return A data frame (`amlr_trials`), one row per trial or item: `trial`
#'   (its step name), one column per parameter (a map: `item`), `objective`
#'   (the last logged value), `status`, `duration`, `reused` and `best`.
#'   `plot()` draws the objective against each parameter.
#' @family many runs
#' @export
#' @examples
#' \dontshow{.old_home <- Sys.getenv("AMLR_HOME", NA); Sys.setenv(AMLR_HOME = tempfile("amlr-home"))}
#' dir <- tempfile("sweep"); dir.create(dir)
#' writeLines('amlr::log_metric("loss", (as.numeric(commandArgs(TRUE)) - 0.3)^2)', file.path(dir, "fit.R"))
#' fit <- r_step(file.path(dir, "fit.R"), args = "${{search_space.alpha}}")
#' run <- submit_r_pipeline(r_sweep(fit, list(alpha = c(0.1, 0.3, 1)), "loss"), quiet = TRUE)
#' run_trials(run)
#' \dontshow{if (is.na(.old_home)) Sys.unsetenv("AMLR_HOME") else Sys.setenv(AMLR_HOME = .old_home)}
run_trials <- function(run = "latest", step = NULL) {
  res <- amlr_call("trials", list(run = run_ref(run), step = step))
  rows <- res$trials
  col <- function(name, default) row_col(rows, name, default)
  df <- data.frame(trial = col("trial", NA_character_), stringsAsFactors = FALSE)
  if (identical(res$kind, "sweep")) {
    for (p in unlist(res$params)) {
      vals <- lapply(rows, function(r) r$values[[p]])
      df[[p]] <- if (all(vapply(vals, is.numeric, logical(1)))) vapply(vals, as.numeric, numeric(1)) else
        vapply(vals, function(v) as.character(v), character(1))
    }
    df$objective <- col("objective", NA_real_)
  } else {
    df$item <- col("item", NA_character_)
  }
  df$status <- col("status", NA_character_)
  df$duration <- as_seconds(col("duration", NA_real_))
  df$reused <- col("reused", NA)
  if (identical(res$kind, "sweep")) df$best <- col("best", NA)
  df$error <- col("error", NA_character_)
  structure(df, class = c("amlr_trials", "data.frame"), step = res$step, kind = res$kind,
            objective = res$objective, goal = res$goal, seed = res$seed, params = unlist(res$params))
}

#' @export
print.amlr_trials <- function(x, ...) {
  kind <- attr(x, "kind")
  done <- sum(x$status == "Completed", na.rm = TRUE)
  if (identical(kind, "sweep")) {
    cli::cli_text("{.cls amlr_trials} sweep {.strong {attr(x, 'step')}}: {done}/{nrow(x)} trials completed, ",
                  "{attr(x, 'goal')} {.field {attr(x, 'objective')}}",
                  "{if (!is.null(attr(x, 'seed'))) paste0(' (seed ', attr(x, 'seed'), ')')}")
  } else {
    cli::cli_text("{.cls amlr_trials} map {.strong {attr(x, 'step')}}: {done}/{nrow(x)} items completed")
  }
  show <- as.data.frame(unclass(x), stringsAsFactors = FALSE)
  if (all(is.na(show$error))) show$error <- NULL
  if (!is.null(show$objective)) show$objective <- signif(show$objective, 4)
  show$duration <- vapply(as.numeric(x$duration), format_duration, character(1))
  if (!is.null(show$best)) show$best <- ifelse(show$best, "*", "")
  print(show, row.names = FALSE)
  invisible(x)
}

#' @rdname run_trials
#' @param x An `amlr_trials` (or an `amlr_run`, whose sweep is plotted).
#' @param ... Passed to [graphics::plot()].
#' @export
plot.amlr_trials <- function(x, ...) {
  if (!identical(attr(x, "kind"), "sweep")) {
    amlr_abort("{.fn plot} draws sweeps; {.val {attr(x, 'step')}} is a map.", "bad_request")
  }
  params <- attr(x, "params")
  ok <- !is.na(x$objective)
  if (!any(ok)) amlr_abort("No trial of {.val {attr(x, 'step')}} has an objective yet.", "bad_request")
  old <- graphics::par(mfrow = c(1, length(params)), mar = c(4, 4, 2, 1))
  on.exit(graphics::par(old), add = TRUE)
  for (p in params) {
    v <- x[[p]]
    at <- if (is.numeric(v)) v else as.numeric(factor(v))
    graphics::plot(at[ok], x$objective[ok], xlab = p, ylab = attr(x, "objective"),
                   pch = ifelse(x$best[ok] %in% TRUE, 19, 1), xaxt = if (is.numeric(v)) "s" else "n", ...)
    if (!is.numeric(v)) graphics::axis(1, at = seq_along(levels(factor(v))), labels = levels(factor(v)))
  }
  graphics::mtext(paste("sweep", attr(x, "step")), side = 3, line = -1.5, outer = TRUE)
  invisible(x)
}

#' @rdname run_trials
#' @export
plot.amlr_run <- function(x, ..., step = NULL) {
  plot(run_trials(x, step), ...)
}
