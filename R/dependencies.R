#' Find the packages a pipeline's scripts use
#'
#' Reads every R file that would go into each step's snapshot (`.R`, `.r`, and
#' the R chunks of `.Rmd`/`.qmd`; the snapshot's exclusions apply) with R's own
#' parser, and a `renv.lock` at the root of a step's `source_dir`. It finds
#' `library()`, `require()`, `requireNamespace()`, `loadNamespace()`,
#' `pkg::fn` and `pkg:::fn`; a name held in a variable
#' (`library(p, character.only = TRUE)`) cannot be known and is skipped. Base
#' and recommended packages (which come with R) and amlr itself are left out.
#' A file R cannot parse gives a warning of class `amlr_warning_parse` that
#' names it, and the other files are still read.
#'
#' This is what `r_environment(cran_packages = "auto")` installs.
#'
#' @param pipeline A path to an R script (its folder is read) or a folder, an
#'   [r_step()] or an [r_pipeline()].
#' @return A data frame with one row per use: `package`, `file` (absolute
#'   path), `line`, and `how` (`"library"`, `"require"`, `"requireNamespace"`,
#'   `"loadNamespace"`, `"::"`, `":::"` or `"renv.lock"`), sorted by package.
#' @export
#' @examples
#' dir <- tempfile("deps-")
#' dir.create(dir)
#' writeLines(c("library(DBI)", "x <- zoo::zoo(1:3)", "library(stats)"), file.path(dir, "main.R"))
#' r_dependencies(file.path(dir, "main.R"))
r_dependencies <- function(pipeline) {
  dirs <- dependency_dirs(pipeline)
  files <- if (length(dirs)) amlr_call("environment_source_files", list(source_dirs = I(dirs))) else list()
  rows <- list()
  for (dir in dirs) {
    rel <- as.character(unlist(files[[dir]]))
    for (f in rel[grepl(R_FILE_RE, rel)]) {
      rows[[length(rows) + 1L]] <- scan_r_file(file.path(dir, f))
    }
    if ("renv.lock" %in% rel) rows[[length(rows) + 1L]] <- scan_renv_lock(file.path(dir, "renv.lock"))
  }
  deps <- do.call(rbind, c(list(empty_dependencies()), rows))
  deps <- deps[!deps$package %in% c(BASE_PACKAGES, RECOMMENDED_PACKAGES, "amlr", "R"), , drop = FALSE]
  deps <- unique(deps)
  deps <- deps[order(tolower(deps$package), deps$package, deps$file, deps$line, method = "radix"), , drop = FALSE]
  rownames(deps) <- NULL
  deps
}

# R's parse data tokens of the calls that attach or load a package.
LOADING_CALLS <- c("library", "require", "requireNamespace", "loadNamespace")
R_FILE_RE <- "\\.([Rr]|[Rr]md|[Qq]md|[Rr]markdown)$"

BASE_PACKAGES <- c("base", "compiler", "datasets", "graphics", "grDevices", "grid", "methods", "parallel",
                   "splines", "stats", "stats4", "tcltk", "tools", "translations", "utils")
# Fixed rather than installed.packages(priority = "recommended"): what a machine
# happens to have installed must not change what the image gets.
RECOMMENDED_PACKAGES <- c("boot", "class", "cluster", "codetools", "foreign", "KernSmooth", "lattice", "MASS",
                          "Matrix", "mgcv", "nlme", "nnet", "rpart", "spatial", "survival")

dependency_dirs <- function(x, call = rlang::caller_env()) {
  if (is.character(x) && length(x) == 1L && !is.na(x)) {
    if (dir.exists(x)) return(normalizePath(x, winslash = "/"))
    if (file.exists(x)) return(normalizePath(dirname(x), winslash = "/"))
    amlr_abort(c("{.path {x}} does not exist.",
               i = "Give an R script, a folder, an {.fn r_step} or an {.fn r_pipeline}."),
               "invalid_spec", call = call)
  }
  if (inherits(x, "amlr_step")) return(x$source_dir)
  if (inherits(x, "amlr_pipeline") || (is.list(x) && all(vapply(x, inherits, NA, "amlr_step")))) {
    steps <- if (inherits(x, "amlr_pipeline")) x$steps else x
    return(unique(vapply(steps, function(s) s$source_dir, "")))
  }
  amlr_abort(c("{.arg pipeline} must be a path to an R script or folder, an {.fn r_step} or an {.fn r_pipeline}.",
               x = "Got {.cls {class(x)}}."), "invalid_spec", call = call)
}

empty_dependencies <- function() {
  data.frame(package = character(), file = character(), line = integer(), how = character(),
             stringsAsFactors = FALSE)
}

scan_r_file <- function(path) {
  lines <- tryCatch(readLines(path, warn = FALSE, encoding = "UTF-8"), error = function(e) NULL)
  if (is.null(lines)) {
    warn_parse(path, "it cannot be read")
    return(empty_dependencies())
  }
  if (!grepl("\\.[Rr]$", path)) lines <- knitr_r_chunks(lines)
  exprs <- tryCatch(parse(text = lines, keep.source = TRUE, srcfile = srcfilecopy(path, lines)),
                    error = function(e) e)
  if (inherits(exprs, "error")) {
    warn_parse(path, conditionMessage(exprs))
    return(empty_dependencies())
  }
  pd <- utils::getParseData(exprs, includeText = TRUE)
  if (is.null(pd) || !nrow(pd)) return(empty_dependencies())
  found <- rbind(namespace_uses(pd), loading_calls(pd))
  if (!nrow(found)) return(empty_dependencies())
  data.frame(package = found$package, file = normalizePath(path, winslash = "/"), line = found$line,
             how = found$how, stringsAsFactors = FALSE)
}

warn_parse <- function(path, why) {
  cli::cli_warn(c("Skipped {.path {path}} when looking for packages: R cannot parse it.",
                  x = cli_escape(why)),
                class = c("amlr_warning_parse", "amlr_warning"), file = path)
}

# `pkg::fn` and `pkg:::fn`: the package name is its own token.
namespace_uses <- function(pd) {
  i <- which(pd$token == "SYMBOL_PACKAGE")
  if (!length(i)) return(data.frame(package = character(), line = integer(), how = character()))
  ops <- vapply(i, function(k) {
    sib <- pd[pd$parent == pd$parent[k] & pd$token %in% c("NS_GET", "NS_GET_INT"), "token"]
    if (length(sib) && sib[1] == "NS_GET_INT") ":::" else "::"
  }, "")
  data.frame(package = pd$text[i], line = pd$line1[i], how = ops, stringsAsFactors = FALSE)
}

# library(x), library("x"), require(package = x), requireNamespace("x"), ...
loading_calls <- function(pd) {
  calls <- which(pd$token == "SYMBOL_FUNCTION_CALL" & pd$text %in% LOADING_CALLS)
  out <- lapply(calls, function(k) {
    call_id <- pd$parent[pd$id == pd$parent[k]]
    pkg <- first_package_argument(pd, call_id, pd$text[k])
    if (is.null(pkg)) return(NULL)
    data.frame(package = pkg, line = pd$line1[k], how = pd$text[k], stringsAsFactors = FALSE)
  })
  out <- out[!vapply(out, is.null, NA)]
  if (!length(out)) return(data.frame(package = character(), line = integer(), how = character()))
  do.call(rbind, out)
}

# The package a loading call names: its `package` argument, else the first
# positional one; NULL when it is computed (character.only = TRUE, a variable
# passed to requireNamespace(), an expression).
first_package_argument <- function(pd, call_id, fun) {
  kids <- pd[pd$parent == call_id, , drop = FALSE]
  kids <- kids[order(kids$line1, kids$col1), , drop = FALSE]
  open <- which(kids$token == "'('")[1]
  if (is.na(open)) return(NULL)
  args <- kids[seq.int(open + 1L, nrow(kids)), , drop = FALSE]
  named <- which(args$token == "SYMBOL_SUB")
  character_only <- any(args$text[named] == "character.only")
  value_after <- function(j) args[j + 2L, , drop = FALSE]  # SYMBOL_SUB, EQ_SUB, value
  target <- NULL
  pkg_arg <- named[args$text[named] == "package"]
  if (length(pkg_arg)) {
    target <- value_after(pkg_arg[1])
  } else {
    taken <- c(named, named + 1L, named + 2L)
    positional <- setdiff(which(args$token == "expr" | args$token == "STR_CONST"), taken)
    if (length(positional)) target <- args[positional[1], , drop = FALSE]
  }
  if (is.null(target) || !nrow(target) || is.na(target$id)) return(NULL)
  leaf <- if (target$token == "expr") pd[pd$parent == target$id, , drop = FALSE] else target
  if (nrow(leaf) != 1L) return(NULL)
  if (leaf$token == "STR_CONST") {
    name <- trimws(substr(leaf$text, 2L, nchar(leaf$text) - 1L))
  } else if (leaf$token == "SYMBOL" && fun %in% c("library", "require") && !character_only) {
    name <- leaf$text
  } else {
    return(NULL)
  }
  if (!grepl(CRAN_NAME_RE, name)) return(NULL)
  name
}

# An R Markdown / Quarto file as R code: the lines of its R chunks, every other
# line blanked so that line numbers stay those of the file.
knitr_r_chunks <- function(lines) {
  out <- character(length(lines))
  in_chunk <- FALSE
  fence <- ""
  for (i in seq_along(lines)) {
    if (!in_chunk) {
      m <- regmatches(lines[i], regexec("^\\s*(`{3,})\\s*\\{[rR]([ ,}].*)?$", lines[i]))[[1]]
      if (length(m)) {
        in_chunk <- TRUE
        fence <- m[2]
      }
    } else if (grepl(paste0("^\\s*", fence, "\\s*$"), lines[i])) {
      in_chunk <- FALSE
    } else {
      out[i] <- lines[i]
    }
  }
  out
}

# renv.lock: every package the project library records, except those renv
# installed from elsewhere than a CRAN-like repository (they are reported).
scan_renv_lock <- function(path) {
  lock <- tryCatch(jsonlite::fromJSON(path, simplifyVector = FALSE), error = function(e) e)
  if (inherits(lock, "error")) {
    warn_parse(path, conditionMessage(lock))
    return(empty_dependencies())
  }
  pkgs <- lock$Packages %||% list()
  if (!length(pkgs)) return(empty_dependencies())
  source <- vapply(pkgs, function(p) as.character(p$Source %||% "Repository"), "")
  from_cran <- source %in% c("Repository", "CRAN")
  if (any(!from_cran)) {
    other <- names(pkgs)[!from_cran]
    cli::cli_warn(c("{.path {path}} lists {.pkg {other}} from outside CRAN; they are not added to the image.",
                    i = "Install them in your own Dockerfile ({.fn r_environment} {.arg dockerfile})."),
                  class = c("amlr_warning_renv_source", "amlr_warning"))
  }
  names <- vapply(pkgs[from_cran], function(p) as.character(p$Package %||% ""), "")
  names <- names[grepl(CRAN_NAME_RE, names)]
  text <- readLines(path, warn = FALSE)
  line <- vapply(names, function(n) {
    hit <- grep(paste0("\"Package\"\\s*:\\s*\"", gsub(".", "\\.", n, fixed = TRUE), "\""), text)[1]
    as.integer(hit)
  }, 1L)
  data.frame(package = names, file = normalizePath(path, winslash = "/"), line = unname(line),
             how = rep("renv.lock", length(names)), stringsAsFactors = FALSE)
}
