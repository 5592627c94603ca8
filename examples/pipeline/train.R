# Step 2a: fit a model of fuel use on weight and power; runs beside summarise.
cars <- utils::read.csv(file.path(amlr::step_input("data"), "cars.csv"))
fit <- stats::lm(mpg ~ wt + hp, data = cars)
rmse <- sqrt(mean(stats::residuals(fit)^2))
saveRDS(fit, file.path(amlr::step_output("model"), "model.rds"))
cat(sprintf("train: rmse = %.3f\n", rmse))
amlr::log_metric("rmse", rmse)
amlr::log_metric("r_squared", summary(fit)$r.squared)
