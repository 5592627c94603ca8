# Step 1: turn a built-in data set into the CSV the other steps read.
out <- amlr::step_output("data")
cars <- datasets::mtcars
cars$model <- rownames(cars)
utils::write.csv(cars, file.path(out, "cars.csv"), row.names = FALSE)
cat("prepare: wrote", nrow(cars), "rows to", file.path(out, "cars.csv"), "\n")
amlr::log_metric("rows", nrow(cars))
