library(testthat)
library(amlr)

test_check("amlr")
