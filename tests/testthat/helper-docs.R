# Runnable documentation: README.md and vignettes/*.Rmd show code with its
# output, and that output is produced by running the code, not typed.
#
# A runnable block is a fenced ```r block on the line right after a line
# `<!-- run -->`. All runnable blocks of one file run, in order, in one fresh R
# process (callr) with HOME set to an empty temporary folder, the working
# directory `~/project` holding a copy of the repository's examples/, and no
# AMLR_HOME (so amlr's default, ~/.local/share/R/amlr, is used). Each
# top-level expression's output (printed values, messages, cli output) is
# written below it as `#> ` lines.
#
# `make readme` rewrites the files from a run (doc_update()); the test
# test-docs.R runs them again and compares with doc_normalise(), which masks
# what legitimately differs between runs: run ids, hashes, durations, times,
# ports, temporary paths, R's version string, and line wrapping.

doc_marker <- "<!-- run -->"

# Positions of the runnable blocks: a data frame of first/last code lines.
doc_blocks <- function(lines) {
  starts <- which(trimws(lines) == doc_marker) + 1L
  blocks <- lapply(starts, function(open) {
    if (open > length(lines) || !grepl("^```r\\s*$", lines[[open]])) {
      stop("line ", open, ": `", doc_marker, "` must be followed by a ```r block", call. = FALSE)
    }
    close <- open + which(grepl("^```\\s*$", lines[-seq_len(open)]))[1]
    if (is.na(close)) stop("line ", open, ": unclosed ```r block", call. = FALSE)
    c(first = open + 1L, last = close - 1L)
  })
  data.frame(first = vapply(blocks, `[[`, 1L, "first"), last = vapply(blocks, `[[`, 1L, "last"))
}

# The code of a block: its lines without the output lines.
doc_code <- function(block) block[!grepl("^#>", block)]

# Run each block's code (one R session for the whole file) and return, per
# block, its code with the output of each top-level expression below it.
doc_render <- function(codes, examples = doc_examples_dir()) {
  home <- tempfile("home")
  project <- file.path(home, "project")
  dir.create(project, recursive = TRUE)
  file.copy(examples, project, recursive = TRUE)
  bridge <- Sys.getenv("AMLR_TEST_BRIDGE", "system2")
  env <- c(callr::rcmd_safe_env(), HOME = home, LANG = "C.UTF-8", LC_ALL = "C.UTF-8",
           AMLR_TEST_BRIDGE = bridge)
  on.exit(unlink(home, recursive = TRUE, force = TRUE), add = TRUE)
  out <- callr::r(function(codes, project, bridge) {
    # amlr's default home under the new HOME, whatever the calling session set.
    Sys.unsetenv(c("AMLR_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME", "R_USER_DATA_DIR", "R_USER_CACHE_DIR"))
    setwd(project)
    options(width = 80, cli.width = 160, cli.num_colors = 1, cli.unicode = TRUE,
            cli.dynamic = FALSE, cli.progress_show_after = Inf, amlr.bridge = bridge)
    envir <- new.env(parent = globalenv())
    lapply(codes, function(code) {
      res <- evaluate::evaluate(paste(code, collapse = "\n"), envir = envir,
                                stop_on_error = 1L, new_device = FALSE)
      lines <- character()
      for (item in res) {
        text <- if (inherits(item, "source")) {
          sub("\n$", "", item$src)
        } else if (is.character(item)) {
          paste0("#> ", strsplit(sub("\n$", "", item), "\n", fixed = TRUE)[[1]])
        } else if (inherits(item, "error")) {
          stop("a runnable block failed: ", conditionMessage(item))
        } else if (inherits(item, "condition")) {
          prefix <- if (inherits(item, "warning")) "Warning: " else ""
          paste0("#> ", prefix, strsplit(sub("\n$", "", conditionMessage(item)), "\n", fixed = TRUE)[[1]])
        }
        lines <- c(lines, unlist(strsplit(text, "\n", fixed = TRUE)))
      }
      lines
    })
  }, args = list(codes = codes, project = project, bridge = bridge), env = env,
  stdout = NULL, stderr = NULL)
  lapply(out, function(lines) gsub(home, "~", lines, fixed = TRUE))
}

doc_examples_dir <- function() {
  root <- doc_root()
  file.path(root, "examples")
}

# The repository root, or NULL when the tests do not run from a checkout
# (R CMD check runs them on the built package, which has no README).
doc_root <- function() {
  dir <- normalizePath(testthat::test_path(".."), mustWork = FALSE)
  root <- dirname(dir)
  if (file.exists(file.path(root, "README.md")) && dir.exists(file.path(root, "examples"))) root
}

# What may differ between two runs of the same code.
doc_normalise <- function(lines) {
  out <- grepl("^#>", lines)
  x <- lines
  x <- gsub("amlr_[0-9]{8}_[0-9]{6}_[0-9a-f]{6}", "<run>", x)
  x <- gsub("\\b[0-9a-f]{10,64}\\b", "<hash>", x)
  x <- gsub("[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\\.[0-9]+)?", "<time>", x)
  x <- gsub("[0-9.]+ ?(ms|s|secs|mins)\\b", "<duration>", x)
  x <- gsub("127\\.0\\.0\\.1:[0-9]+", "127.0.0.1:<port>", x)
  x <- gsub("/tmp/[^ '\"]*", "<tmp>", x)
  x <- gsub("R version [0-9.]+[^()]*\\([0-9-]+( r[0-9]+)?\\)", "R version <version>", x)
  # Output lines: compare as one text per expression, wrapping and spacing ignored.
  x[out] <- gsub("\\s+", " ", trimws(sub("^#>", "", x[out])))
  groups <- cumsum(!out | c(TRUE, !out[-length(out)]))
  unname(vapply(split(x, groups), paste, "", collapse = " "))
}

# Rewrite a file's runnable blocks with the output of running them.
doc_update <- function(path) {
  lines <- readLines(path, warn = FALSE, encoding = "UTF-8")
  blocks <- doc_blocks(lines)
  codes <- Map(function(a, b) doc_code(lines[a:b]), blocks$first, blocks$last)
  rendered <- doc_render(codes)
  for (i in rev(seq_len(nrow(blocks)))) {
    before <- lines[seq_len(blocks$first[i] - 1L)]
    after <- lines[-seq_len(blocks$last[i])]
    lines <- c(before, rendered[[i]], after)
  }
  writeLines(lines, path, useBytes = TRUE)
  invisible(path)
}

# The relative links of a Markdown file that name no existing file.
doc_broken_links <- function(path, root) {
  text <- paste(readLines(path, warn = FALSE, encoding = "UTF-8"), collapse = "\n")
  # Code spans and blocks are not links.
  text <- gsub("```.*?```", "", text, perl = TRUE)
  text <- gsub("`[^`\n]*`", "", text)
  targets <- regmatches(text, gregexpr("\\]\\(([^)\\s]+)\\)", text, perl = TRUE))[[1]]
  targets <- sub("^\\]\\(", "", sub("\\)$", "", targets))
  targets <- sub("#.*$", "", targets)
  targets <- targets[nzchar(targets) & !grepl("^[a-z][a-z0-9+.-]*:", targets, ignore.case = TRUE)]
  missing <- !file.exists(file.path(dirname(path), targets))
  unique(targets[missing])
}
