# The example pipeline: prepare -> (train, summarise in parallel) -> report.
# source() this file to get `p`; run.R submits it.
library(amlr)
example_pipeline <- function(dir = ".") {
  prepare <- r_step(file.path(dir, "prepare.R"), outputs = "data")
  train <- r_step(file.path(dir, "train.R"),
                  inputs = list(data = output_of(prepare, "data")), outputs = "model")
  summarise <- r_step(file.path(dir, "summarise.R"),
                      inputs = list(data = output_of(prepare, "data")), outputs = "summary")
  report <- r_step(file.path(dir, "report.R"), args = "Fuel use of 32 cars",
                   inputs = list(model = output_of(train, "model"), summary = output_of(summarise, "summary")),
                   outputs = "report")
  r_pipeline(prepare, train, summarise, report, name = "cars",
             description = "Prepare mtcars, fit a model and summarise in parallel, write a report")
}
