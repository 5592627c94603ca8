#' Describe one step of an R pipeline
#'
#' A step runs one R script, from a snapshot of its `source_dir`, with
#' `Rscript`. Its inputs are local paths, datastore URIs or outputs of other
#' steps ([output_of()]); inside the script, [step_input()] and
#' [step_output()] give their paths.
#'
#' @param script Path to the R script.
#' @param name Step name: lower-case letters, digits and `_` (Azure ML's rule).
#'   Defaults to the script's file name without extension.
#' @param args Character vector of arguments for the script (`commandArgs(TRUE)`),
#'   passed byte for byte on every backend. `${{inputs.NAME}}` and
#'   `${{outputs.NAME}}` (Azure ML's placeholder syntax) become the path of that
#'   input or output on every backend, so `optparse` scripts written for Azure ML
#'   run unchanged: `args = c("--data_folder", "${{inputs.data}}")`.
#'   `${{outputs.outputs}}` is the `./outputs` folder.
#' @param inputs Named list: each element a local path, a URI
#'   (`azureml://...`, `https://...`), `output_of(step, output)` or a
#'   registered data asset, [aml_data()].
#' @param outputs Character vector of output names; each becomes a folder.
#' @param environment The job environment, from [r_environment()]; `NULL`
#'   uses the pipeline's (or the backend's default).
#' @param compute Compute target name on Azure ML; ignored locally.
#' @param allow_reuse Reuse the results of an identical earlier step.
#' @param source_dir Folder packaged with the step; `script` must be inside it.
#' @param register Named character vector, `c(output = "asset-name")`: when
#'   the step completes, each named output is registered as a new version of
#'   that data asset (locally in amlr's store, on Azure ML as a data asset). A
#'   failed step registers nothing.
#' @param step_type `"command"` (default); `"estimator"` reproduces the classic
#'   `EstimatorStep` on the `"azureml"` backend; `"python_script"` runs the
#'   bootstrapper as a `PythonScriptStep` there.
#' @param env Named character vector of environment variables for this step
#'   (`c(N_TREES = "500")`), set on every backend and part of the step's
#'   fingerprint. Not for secrets: they would be stored with the job. A local
#'   step sees only these, `PATH`, `HOME`, the locale, `TZ`, the temp folder,
#'   R's library paths and proxy settings of the R session -- what an Azure ML
#'   job would see too.
#' @param files More files of `source_dir` the script reads (paths relative to
#'   it, or folders), for reuse: a step's code is its script, the R files it
#'   `source()`s (found by reading the code; when a `source()` call cannot be
#'   resolved, every R file of the folder), the files named here and every
#'   non-R file of the folder. Editing other steps' scripts or the file that
#'   builds the pipeline never re-runs it.
#' @return An `amlr_step`.
#' @family pipeline builders
#' @export
#' @examples
#' dir <- tempfile("job"); dir.create(dir); script <- file.path(dir, "job.R")
#' writeLines('cat("Hello,", commandArgs(TRUE), "\\n")', script)
#' r_step(script, args = c("--greeting", "hi"))
r_step <- function(script, name = NULL, args = character(), inputs = list(), outputs = character(),
                   environment = NULL, compute = NULL, allow_reuse = TRUE, source_dir = dirname(script),
                   step_type = c("command", "estimator", "python_script"), env = character(),
                   files = character(), register = NULL) {
  check_string(script, "script")
  step_type <- check_choice(step_type, c("command", "estimator", "python_script"), "step_type")
  check_flag(allow_reuse, "allow_reuse")
  check_optional_string(compute, "compute")
  check_environment_arg(environment)
  args <- check_step_args(args)
  env <- check_step_env(env)
  if (!is.character(files) || anyNA(files)) {
    amlr_abort("{.arg files} must be a character vector of paths inside {.arg source_dir}.", "invalid_spec")
  }
  if (!is.character(outputs) || anyNA(outputs)) {
    amlr_abort(c("{.arg outputs} must be a character vector of output names, e.g. {.code outputs = \"model\"}.",
                 x = "Got {describe_value(outputs)}."), "invalid_spec")
  }
  force(source_dir)
  check_string(source_dir, "source_dir")
  if (!dir.exists(source_dir)) {
    amlr_abort(c("{.arg source_dir} {.path {source_dir}} is not a folder.",
                 i = "Give the folder that holds the script and the files it needs."), "invalid_spec")
  }
  source_dir <- normalizePath(source_dir, winslash = "/", mustWork = TRUE)
  script_abs <- if (is_absolute_path(script)) path.expand(script) else file.path(getwd(), script)
  if (dir.exists(script_abs)) {
    amlr_abort(c("{.path {script}} is a folder, not an R script.",
                 i = "Pass the script inside it, e.g. {.code r_step(\"{file.path(script, 'main.R')}\")};
                      the folder becomes its {.arg source_dir}."),
               "invalid_spec")
  }
  if (!file.exists(script_abs)) {
    amlr_abort(c("Script {.path {script}} does not exist.",
                 i = "Give the path of an R script, relative to the working directory {.path {getwd()}} or absolute."),
               "invalid_spec")
  }
  if (!grepl("\\.[Rr]$", script_abs)) {
    amlr_abort(c("{.path {script}} is not an R script: amlr runs {.file .R} files with {.code Rscript}.",
                 i = "Rename it to end in {.file .R}, or pass data files to a step through {.arg inputs}."),
               "invalid_spec")
  }
  script_abs <- normalizePath(script_abs, winslash = "/", mustWork = TRUE)
  rel <- relative_to(script_abs, source_dir)
  if (is.null(rel)) {
    amlr_abort(c("Script {.path {script}} is outside its {.arg source_dir} {.path {source_dir}}.",
                 i = "Move the script into that folder or pass a wider {.arg source_dir}."), "invalid_spec")
  }
  name <- name %||% default_step_name(script)
  check_string(name, "name")
  if (!is.list(inputs)) {
    amlr_abort("{.arg inputs} must be a named list of paths, URIs or {.fn output_of} references.", "invalid_spec")
  }
  if (length(inputs) && (is.null(names(inputs)) || any(!nzchar(names(inputs))))) {
    amlr_abort("Every element of {.arg inputs} needs a name, e.g. {.code inputs = list(data = \"data.csv\")}.",
               "invalid_spec")
  }
  if (!is.logical(allow_reuse) || length(allow_reuse) != 1L || is.na(allow_reuse)) {
    amlr_abort("{.arg allow_reuse} must be TRUE or FALSE.", "invalid_spec")
  }
  if (length(register) && (!is.character(register) || is.null(names(register)) || any(!nzchar(names(register))))) {
    amlr_abort(c("{.arg register} must be a named character vector: {.code register = c(model = \"cars-model\")}.",
                 i = "Each name is an output of the step, each value the data asset to register it as."),
               "invalid_spec")
  }
  unknown <- setdiff(names(register), as.character(outputs))
  if (length(unknown)) {
    amlr_abort(c("{.arg register} names {.val {unknown}}, not among the step's {.arg outputs}.",
                 i = "Add the output to {.arg outputs}, or fix its name in {.arg register}."), "invalid_spec")
  }
  step <- structure(
    list(
      name = name,
      script = rel,
      source_dir = source_dir,
      args = args,
      inputs = Map(normalize_input, inputs, names(inputs)),
      outputs = as.character(outputs),
      environment = environment,
      compute = compute,
      allow_reuse = allow_reuse,
      step_type = step_type,
      env = env,
      files = files,
      register = if (length(register)) as.list(register) else NULL
    ),
    class = "amlr_step"
  )
  # Placeholders and variable names are checked by the one validator, at once, when there are any.
  if (any(grepl("${{", args, fixed = TRUE)) || length(env)) {
    amlr_call("validate", list(spec = pipeline_spec(new_pipeline(list(step), name = "check")),
                               check_paths = FALSE, pending = TRUE))
  }
  step
}

check_step_args <- function(args, call = rlang::caller_env()) {
  if (is.list(args)) {
    amlr_abort(c("{.arg args} must be a character vector, not a list.",
                 i = "Use {.code unlist()} or {.code paste()} to make one."), "invalid_spec", call = call)
  }
  if (!(is.character(args) || is.numeric(args) || is.logical(args))) {
    amlr_abort("{.arg args} must be a character vector, not {.cls {class(args)}}.", "invalid_spec", call = call)
  }
  if (!is.null(dim(args))) {
    amlr_abort(c("{.arg args} must be a character vector, not a matrix or array.",
                 i = "Use {.code as.vector()} if you mean its values in order."), "invalid_spec", call = call)
  }
  if (!is.null(names(args)) && any(nzchar(names(args)))) {
    amlr_abort(c("{.arg args} must not have names: {.code Rscript} receives only the values.",
                 i = "Write {.code c(\"--alpha\", \"0.1\")} instead of {.code c(alpha = \"0.1\")}."),
               "invalid_spec", call = call)
  }
  if (anyNA(args)) {
    amlr_abort("Argument{?s} {which(is.na(args))} of {.arg args} {?is/are} NA; give strings or leave {?it/them} out.",
               "invalid_spec", call = call)
  }
  unname(as.character(args))
}

check_step_env <- function(env, call = rlang::caller_env()) {
  if (is.list(env)) env <- unlist(env)
  if (!length(env)) return(structure(list(), names = character()))
  if (is.null(names(env)) || any(!nzchar(names(env))) || anyNA(env) || !is.atomic(env)) {
    amlr_abort(c("{.arg env} must be a named character vector without NA.",
                 i = "For example {.code env = c(N_TREES = \"500\")}."), "invalid_spec", call = call)
  }
  as.list(stats::setNames(as.character(env), names(env)))
}

#' Use one step's output as another step's input
#'
#' @param step An [r_step()] or a step name.
#' @param output The output's name, as listed in that step's `outputs`.
#' @return An `amlr_output_ref`, for the `inputs` of [r_step()].
#' @family pipeline builders
#' @export
#' @examples
#' dir <- tempfile("pipeline"); dir.create(dir)
#' writeLines('write.csv(mtcars, file.path(amlr::step_output("data"), "cars.csv"))', file.path(dir, "prepare.R"))
#' writeLines('read.csv(file.path(amlr::step_input("data"), "cars.csv"))', file.path(dir, "train.R"))
#' prepare <- r_step(file.path(dir, "prepare.R"), outputs = "data")
#' train <- r_step(file.path(dir, "train.R"), inputs = list(data = output_of(prepare, "data")))
#' train$inputs$data
output_of <- function(step, output) {
  name <- if (inherits(step, "amlr_step")) step$name else step
  check_string(name, "step")
  check_string(output, "output")
  if (inherits(step, "amlr_step") && !output %in% step$outputs) {
    amlr_abort(c("Step {.val {name}} has no output {.val {output}}.",
                 i = if (length(step$outputs)) "Its outputs: {.val {step$outputs}}." else "It declares no outputs.",
                 i = "Add {.val {output}} to its {.arg outputs}: {.code r_step(..., outputs = \"{output}\")}."),
               "invalid_spec")
  }
  structure(list(type = "step_output", step = name, output = output), class = "amlr_output_ref")
}

#' Put steps together into a pipeline
#'
#' The steps run in the order their [output_of()] links impose; independent
#' steps may run in parallel. The pipeline is checked at once by amlr's one
#' validator (in Python, shared by every backend): duplicate names, unknown
#' steps or outputs, cycles, invalid names and missing paths are classed errors
#' (`amlr_error_invalid_spec`) that name the field.
#'
#' @param ... [r_step()] objects (or lists of them).
#' @param name Pipeline name; defaults to the name of the first step's folder.
#' @param description Free text shown on Azure ML.
#' @param environment Default [r_environment()] for steps that set none.
#' @param compute Default compute target for steps that set none.
#' @return An `amlr_pipeline`.
#' @family pipeline builders
#' @export
#' @examples
#' dir <- tempfile("pipeline"); dir.create(dir)
#' writeLines('write.csv(mtcars, file.path(amlr::step_output("data"), "cars.csv"))', file.path(dir, "prepare.R"))
#' writeLines('d <- read.csv(file.path(amlr::step_input("data"), "cars.csv"))', file.path(dir, "train.R"))
#' prepare <- r_step(file.path(dir, "prepare.R"), outputs = "data")
#' train <- r_step(file.path(dir, "train.R"), inputs = list(data = output_of(prepare, "data")))
#' p <- r_pipeline(prepare, train, name = "cars")
#' p
r_pipeline <- function(..., name = NULL, description = NULL, environment = NULL, compute = NULL) {
  check_optional_string(name, "name")
  check_optional_string(description, "description")
  check_optional_string(compute, "compute")
  check_environment_arg(environment)
  steps <- flatten_steps(list(...))
  if (!length(steps)) {
    amlr_abort("A pipeline needs at least one {.fn r_step}.", "invalid_spec")
  }
  p <- new_pipeline(steps, name = name, description = description, environment = environment, compute = compute)
  checked <- amlr_call("validate", list(spec = pipeline_spec(p)))
  p$order <- vapply(checked$steps, function(s) s$name, character(1))
  p
}

new_pipeline <- function(steps, name = NULL, description = NULL, environment = NULL, compute = NULL) {
  structure(
    list(name = name %||% default_pipeline_name(steps[[1]]), description = description, steps = unname(steps),
         environment = environment, compute = compute),
    class = "amlr_pipeline"
  )
}

flatten_steps <- function(x) {
  out <- list()
  for (el in x) {
    if (inherits(el, "amlr_step")) {
      out[[length(out) + 1]] <- el
    } else if (inherits(el, "amlr_pipeline")) {
      out <- c(out, el$steps)
    } else if (is.list(el)) {
      out <- c(out, flatten_steps(el))
    } else {
      amlr_abort(c("{.fn r_pipeline} takes {.fn r_step} objects, not {.cls {class(el)}}.",
                   i = "Wrap scripts with {.code r_step(\"script.R\")}."), "invalid_spec")
    }
  }
  out
}

as_pipeline <- function(x, call = rlang::caller_env()) {
  if (inherits(x, "amlr_pipeline")) return(x)
  # A single step needs no graph check here: submit validates every spec.
  if (inherits(x, "amlr_step")) return(new_pipeline(list(x), name = pipeline_name_from(x$name)))
  if (is.character(x) && length(x) == 1L && !is.na(x)) {
    step <- r_step(x)
    return(new_pipeline(list(step), name = pipeline_name_from(step$name)))
  }
  amlr_abort(c("{.arg pipeline} must be a path to an R script, an {.fn r_step} or an {.fn r_pipeline}.",
               x = "Got {.cls {class(x)}}."), "invalid_spec", call = call)
}

# The JSON shape that the Python validator reads.
pipeline_spec <- function(p) {
  list(
    name = p$name,
    description = p$description,
    environment = resolve_environment_spec(p$environment, p),
    compute = p$compute,
    steps = lapply(p$steps, step_spec)
  )
}

step_spec <- function(s) {
  list(
    name = s$name,
    script = s$script,
    source_dir = s$source_dir,
    args = I(s$args),
    inputs = if (length(s$inputs)) lapply(s$inputs, unclass) else structure(list(), names = character()),
    outputs = I(s$outputs),
    environment = resolve_environment_spec(s$environment, s),
    compute = s$compute,
    allow_reuse = s$allow_reuse,
    step_type = s$step_type,
    env = if (length(s$env)) s$env else structure(list(), names = character()),
    files = I(s$files %||% character()),
    register = s$register,
    fanout = s$fanout
  )
}

env_spec <- function(env) {
  if (is.null(env)) return(NULL)
  if (is.function(env_spec_hook <- getOption("amlr.env_spec"))) return(env_spec_hook(env))
  if (!is.null(env$spec)) return(env$spec)
  unclass(env)
}

normalize_input <- function(x, name = "") {
  if (inherits(x, "amlr_output_ref") || inherits(x, "amlr_data_ref")) return(x)
  if (inherits(x, "amlr_step")) {
    amlr_abort(c("Input {.val {name}} is a whole step; name one of its outputs.",
                 i = "Use {.code output_of(step, \"{x$outputs[1] %||% 'output'}\")}."), "invalid_spec")
  }
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    amlr_abort(c("Input {.val {name}} must be a path, a URI or {.code output_of(step, output)}.",
                 x = "Got {describe_value(x)}.",
                 i = "E.g. {.code inputs = list({name} = \"data.csv\")}."), "invalid_spec")
  }
  if (grepl("^(azureml|https?|wasbs?|abfss?|adl)://", x, ignore.case = TRUE)) {
    return(structure(list(type = "uri", uri = x), class = "amlr_input"))
  }
  structure(list(type = "path", path = normalizePath(x, winslash = "/", mustWork = FALSE)), class = "amlr_input")
}

default_step_name <- function(script) {
  base <- sub("\\.[Rr]$", "", basename(script))
  # Accented letters keep their base letter (ünï -> uni) where iconv can tell.
  ascii <- suppressWarnings(iconv(enc2utf8(base), "UTF-8", "ASCII//TRANSLIT", sub = "_"))
  if (!is.na(ascii)) base <- ascii
  name <- gsub("[^a-z0-9_]", "_", tolower(base))
  if (!grepl("^[a-z_]", name)) name <- paste0("step_", name)
  name
}

# A pipeline (experiment) name from a step name: Azure ML wants a letter or
# digit first, so `_helper` becomes `helper`.
pipeline_name_from <- function(step_name) {
  name <- sub("^[^A-Za-z0-9]+", "", step_name)
  if (!nzchar(name)) "pipeline" else name
}

default_pipeline_name <- function(step) {
  name <- gsub("[^A-Za-z0-9_.-]", "_", basename(step$source_dir))
  if (!grepl("^[A-Za-z0-9]", name)) name <- pipeline_name_from(step$name)
  name
}

#' @export
print.amlr_output_ref <- function(x, ...) {
  cat("<amlr_output_ref> output ", x$output, " of step ", x$step, "\n", sep = "")
  invisible(x)
}

#' @export
print.amlr_step <- function(x, ...) {
  cli::cli_text("{.cls amlr_step} {.strong {x$name}}: {.file {x$script}} in {.path {x$source_dir}}")
  if (length(x$args)) cli::cli_text("  args: {.val {x$args}}")
  if (length(x$env)) cli::cli_text("  env: {paste0(names(x$env), '=', unlist(x$env), collapse = ', ')}")
  for (nm in names(x$inputs)) cli::cli_text("  input {.field {nm}} <- {format_input(x$inputs[[nm]])}")
  if (length(x$outputs)) cli::cli_text("  outputs: {.field {x$outputs}}")
  for (nm in names(x$register)) cli::cli_text("  registers {.field {nm}} as data asset {.val {x$register[[nm]]}}")
  invisible(x)
}

format_input <- function(i) {
  switch(i$type,
    step_output = paste0(i$step, "$", i$output),
    uri = i$uri,
    path = i$path,
    data_asset = paste0("aml_data(\"", i$name, "\", version = \"", i$version, "\")")
  )
}

#' Draw or export a pipeline's graph
#'
#' `format()` gives the steps in run order with their links (`"text"`), or
#' the graph as Mermaid (`"mermaid"`, renders on GitHub and in Quarto) or
#' Graphviz DOT (`"dot"`). `plot()` draws it with base graphics: one column
#' per stage, arrows from producer to consumer, labelled with the data.
#'
#' @param x An [r_pipeline()].
#' @param format `"text"`, `"mermaid"` or `"dot"`.
#' @param ... Unused.
#' @return `format()`: a character vector of lines. `plot()`: `x`, invisibly.
#' @family pipeline builders
#' @export
#' @examples
#' dir <- tempfile("p"); dir.create(dir)
#' writeLines('writeLines("x", file.path(amlr::step_output("d"), "x"))', file.path(dir, "a.R"))
#' writeLines('readLines(file.path(amlr::step_input("d"), "x"))', file.path(dir, "b.R"))
#' a <- r_step(file.path(dir, "a.R"), outputs = "d")
#' b <- r_step(file.path(dir, "b.R"), inputs = list(d = output_of(a, "d")))
#' p <- r_pipeline(a, b, name = "demo")
#' cat(format(p, format = "mermaid"), sep = "\n")
#' plot(p)
format.amlr_pipeline <- function(x, format = c("text", "mermaid", "dot"), ...) {
  format <- check_choice(format, c("text", "mermaid", "dot"), "format")
  order <- pipeline_order(x)
  by_name <- stats::setNames(x$steps, vapply(x$steps, `[[`, "", "name"))
  edges <- pipeline_edges(x)
  switch(format,
    text = {
      head <- paste0(cli::style_dim("<amlr_pipeline> "), cli::style_bold(x$name), ": ",
                     length(order), if (length(order) == 1L) " step" else " steps")
      body <- unlist(lapply(seq_along(order), function(i) {
        s <- by_name[[order[i]]]
        outs <- if (length(s$outputs)) paste0(" -> ", paste(s$outputs, collapse = ", ")) else ""
        c(paste0(i, ". ", cli::style_bold(s$name), " (", s$script, ")", fanout_note(s), outs),
          vapply(names(s$inputs), function(nm) paste0("     ", nm, " <- ", format_input(s$inputs[[nm]])), "",
                 USE.NAMES = FALSE))
      }))
      c(head, if (!is.null(x$description)) paste0("  ", x$description), body)
    },
    mermaid = c(
      "flowchart LR",
      vapply(order, function(n) sprintf('  %s["%s<br/><small>%s</small>"]', n, n, by_name[[n]]$script), "",
             USE.NAMES = FALSE),
      if (nrow(edges)) sprintf("  %s -->|%s| %s", edges$from, edges$label, edges$to)
    ),
    dot = c(
      sprintf('digraph "%s" {', x$name),
      "  rankdir=LR;",
      "  node [shape=box, style=rounded];",
      vapply(order, function(n) sprintf('  "%s" [label="%s\\n%s"];', n, n, by_name[[n]]$script), "", USE.NAMES = FALSE),
      if (nrow(edges)) sprintf('  "%s" -> "%s" [label="%s"];', edges$from, edges$to, edges$label),
      "}"
    )
  )
}

#' @export
print.amlr_pipeline <- function(x, ...) {
  cat(format(x), sep = "\n")
  invisible(x)
}

#' @rdname format.amlr_pipeline
#' @export
plot.amlr_pipeline <- function(x, ...) {
  order <- pipeline_order(x)
  edges <- pipeline_edges(x)
  level <- stats::setNames(integer(length(order)), order)
  for (n in order) {
    ups <- edges$from[edges$to == n]
    if (length(ups)) level[[n]] <- max(level[ups]) + 1L
  }
  xpos <- level
  ypos <- stats::setNames(numeric(length(order)), order)
  for (l in unique(level)) {
    members <- names(level)[level == l]
    ypos[members] <- rev(seq_along(members)) - (length(members) + 1) / 2
  }
  old <- graphics::par(mar = c(1, 1, 3, 1))
  on.exit(graphics::par(old), add = TRUE)
  graphics::plot.new()
  graphics::plot.window(xlim = c(-0.5, max(level) + 0.5), ylim = range(c(ypos, -1, 1)) + c(-0.5, 0.5))
  graphics::title(main = x$name)
  if (nrow(edges)) {
    graphics::arrows(xpos[edges$from] + 0.18, ypos[edges$from], xpos[edges$to] - 0.18, ypos[edges$to],
                     length = 0.1, col = "grey40")
    graphics::text((xpos[edges$from] + xpos[edges$to]) / 2, (ypos[edges$from] + ypos[edges$to]) / 2,
                   edges$label, cex = 0.7, col = "grey30", pos = 3)
  }
  graphics::symbols(xpos, ypos, rectangles = cbind(rep(0.36, length(order)), rep(0.3, length(order))),
                    inches = FALSE, add = TRUE, bg = "white", fg = "grey20")
  graphics::text(xpos, ypos, names(xpos), cex = 0.8)
  invisible(x)
}

pipeline_order <- function(x) x$order %||% vapply(x$steps, `[[`, "", "name")

pipeline_edges <- function(x) {
  rows <- lapply(x$steps, function(s) {
    refs <- Filter(function(i) identical(i$type, "step_output"), s$inputs)
    if (!length(refs)) return(NULL)
    data.frame(from = vapply(refs, `[[`, "", "step"), to = s$name,
               label = vapply(refs, `[[`, "", "output"), stringsAsFactors = FALSE)
  })
  out <- do.call(rbind, rows)
  if (is.null(out)) data.frame(from = character(), to = character(), label = character()) else out
}

# `kind`: the error kind of a bad value here (see ?amlr_errors).
check_string <- function(x, arg, kind = "invalid_spec", call = rlang::caller_env()) {
  if (!is.character(x) || length(x) != 1L || is.na(x) || !nzchar(x)) {
    amlr_abort("{.arg {arg}} must be a single non-empty string.", kind, call = call)
  }
  invisible(x)
}

is_absolute_path <- function(path) {
  grepl("^(/|~|[A-Za-z]:[/\\\\]|\\\\\\\\)", path)
}

relative_to <- function(path, root) {
  path <- gsub("\\\\", "/", path)
  root <- sub("/+$", "", gsub("\\\\", "/", root))
  if (!startsWith(path, paste0(root, "/"))) return(NULL)
  substring(path, nchar(root) + 2L)
}
