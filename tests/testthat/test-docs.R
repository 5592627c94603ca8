# README.md and the vignettes show output produced by running them, and link
# only to files the repository has. See helper-docs.R for how.

doc_files <- function(root) {
  c(file.path(root, "README.md"), Sys.glob(file.path(root, "vignettes", "*.Rmd")))
}

test_that("every relative link in README.md, the vignettes and docs/ names a file of the repository", {
  root <- doc_root()
  skip_if(is.null(root), "not run from a checkout")
  files <- c(doc_files(root), Sys.glob(file.path(root, "docs", "*.md")),
             file.path(root, c("NEWS.md", "CONTRIBUTING.md")))
  files <- files[file.exists(files)]
  expect_gt(length(files), 1L)
  for (f in files) {
    expect_identical(doc_broken_links(f, root), character(), label = paste("broken links in", basename(f)))
  }
})

test_that("the link check finds a link to a missing file", {
  dir <- withr::local_tempdir()
  writeLines(c("[ok](b.md) [gone](missing/c.md#x) [web](https://example.org/x.md)",
               "`[code](nope.md)`", "[anchor](#top)"), file.path(dir, "a.md"))
  writeLines("", file.path(dir, "b.md"))
  expect_identical(doc_broken_links(file.path(dir, "a.md"), dir), "missing/c.md")
})

test_that("normalising masks run ids, hashes, times and wrapping, and nothing else", {
  a <- c("run <- f()", "#> ✔ Run \"amlr_20261130_163900_46d393\" completed in 1.1s.",
         "#>   logs: ~/x/amlr_20261130_163900_46d393/logs", "#> a 2026-11-30 15:51:59 abcdef0123456")
  b <- c("run <- f()", "#> ✔ Run \"amlr_20250101_000000_aaaaaa\" completed", "#> in 12ms.",
         "#>   logs:   ~/x/amlr_20250101_000000_aaaaaa/logs", "#> a 2025-01-01 00:00:00 0123456789abc")
  expect_identical(doc_normalise(a), doc_normalise(b))
  expect_identical(doc_normalise("#> from R version 4.2.2 Patched (2022-11-10 r83330) on Linux"),
                   doc_normalise("#> from R version 4.4.1 (2024-06-14) on Linux"))
  expect_false(identical(doc_normalise(a), doc_normalise(sub("Run", "Step", b))))
  expect_false(identical(doc_normalise(a), doc_normalise(sub("f()", "g()", b, fixed = TRUE))))
})

# The files with runnable blocks (azureml.Rmd has none: Azure is not reachable here).
runnable_docs <- c("README.md", "pipelines.Rmd", "data-models.Rmd", "serving.Rmd", "environments.Rmd")

test_that("every file with runnable blocks is checked below", {
  root <- doc_root()
  skip_if(is.null(root), "not run from a checkout")
  has_blocks <- vapply(doc_files(root), function(f) nrow(doc_blocks(readLines(f, warn = FALSE))) > 0, NA)
  expect_setequal(basename(doc_files(root))[has_blocks], runnable_docs)
})

test_that("a runnable block's output is what the code prints, messages included", {
  skip_if_no_rscript()
  skip_if_not_installed("callr")
  skip_if_not_installed("evaluate")
  ran <- doc_render(list(c("x <- 1 + 1", "x", "message(\"note\")"), "x * 2"))
  expect_identical(ran, list(c("x <- 1 + 1", "x", "#> [1] 2", "message(\"note\")", "#> note"),
                             c("x * 2", "#> [1] 4")))
  expect_error(doc_render(list("stop(\"boom\")")), "boom")
  expect_error(doc_blocks(c("<!-- run -->", "```sh", "ls", "```")), "must be followed by")
})

for (doc in runnable_docs) {
  local({
    doc <- doc
    test_that(paste0(doc, ": the output shown is what its runnable blocks print"), {
      root <- doc_root()
      skip_if(is.null(root), "not run from a checkout")
      skip_if_no_rscript()
      skip_if_not_installed("callr")
      skip_if_not_installed("evaluate")
      path <- if (doc == "README.md") file.path(root, doc) else file.path(root, "vignettes", doc)
      lines <- readLines(path, warn = FALSE, encoding = "UTF-8")
      blocks <- doc_blocks(lines)
      expect_gt(nrow(blocks), 0L)
      shown <- Map(function(a, b) lines[a:b], blocks$first, blocks$last)
      ran <- doc_render(lapply(shown, doc_code))
      for (i in seq_along(shown)) {
        expect_identical(doc_normalise(ran[[i]]), doc_normalise(shown[[i]]),
                         label = sprintf("%s, runnable block %d (line %d), as run", doc, i, blocks$first[i]))
      }
    })
  })
}
