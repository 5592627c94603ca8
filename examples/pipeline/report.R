# Step 3: a small Markdown report from the model and the summary.
fit <- readRDS(file.path(amlr::step_input("model"), "model.rds"))
by_cyl <- utils::read.csv(file.path(amlr::step_input("summary"), "by_cyl.csv"))
title <- if (length(commandArgs(TRUE))) commandArgs(TRUE)[[1]] else "Fuel use report"
coefs <- stats::coef(fit)
lines <- c(
  paste("#", title), "",
  sprintf("Model: mpg ~ wt + hp (R squared %.3f)", summary(fit)$r.squared), "",
  "| term | estimate |", "|---|---|",
  sprintf("| %s | %.4f |", names(coefs), coefs), "",
  "| cyl | mpg | hp | wt |", "|---|---|---|---|",
  sprintf("| %d | %.1f | %.0f | %.2f |", by_cyl$cyl, by_cyl$mpg, by_cyl$hp, by_cyl$wt)
)
out <- amlr::step_output("report")
writeLines(lines, file.path(out, "report.md"))
jsonlite::write_json(as.list(coefs), file.path(out, "coefficients.json"), auto_unbox = TRUE, digits = NA)
cat("report: wrote", file.path(out, "report.md"), "\n")
