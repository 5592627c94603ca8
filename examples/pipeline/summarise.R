# Step 2b: summary statistics per cylinder count; independent of train.
cars <- utils::read.csv(file.path(amlr::step_input("data"), "cars.csv"))
by_cyl <- stats::aggregate(cbind(mpg, hp, wt) ~ cyl, data = cars, FUN = mean)
utils::write.csv(by_cyl, file.path(amlr::step_output("summary"), "by_cyl.csv"), row.names = FALSE)
print(by_cyl)
