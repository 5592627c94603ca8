# amlr: setup, run, test, check, bench.
#
#   make run    set everything up, run examples/hello on the local backend
#   make test   set everything up, run every test (pytest + testthat, both bridges)
#
# Setup is idempotent: Debian's R packages (apt, only when missing), a Python
# venv under .venv from pinned requirements, and the R package installed into
# the repo-local library .Rlib.

SHELL := /bin/bash
ROOT := $(abspath .)
VENV := $(ROOT)/.venv
VPY := $(VENV)/bin/python
RLIB := $(ROOT)/.Rlib
PYTHON ?= $(shell command -v /usr/bin/python3.11 || command -v /usr/bin/python3 || command -v python3)
REQS := inst/python/requirements-azureml.txt inst/python/requirements-azureml_v2.txt inst/python/requirements-dev.txt
R_DEBS := python3-venv python3-dev r-base-core r-base-dev r-cran-testthat r-cran-jsonlite r-cran-cli r-cran-rlang r-cran-processx \
	r-cran-reticulate r-cran-rsqlite r-cran-dbi r-cran-rstudioapi r-cran-withr r-cran-roxygen2 r-cran-yaml \
	r-cran-plumber r-cran-callr r-cran-optparse r-cran-curl r-cran-lintr \
	r-cran-knitr r-cran-rmarkdown r-cran-evaluate
R_PKGS := testthat jsonlite cli rlang processx reticulate rstudioapi withr roxygen2 yaml plumber callr optparse curl lintr knitr rmarkdown evaluate
R_SOURCES := DESCRIPTION NAMESPACE $(wildcard R/*.R) $(shell find inst -type f -not -path '*/__pycache__/*' -not -name '*.pyc')

export R_LIBS := $(RLIB)
export R_LIBS_USER := $(RLIB)
export AMLR_PYTHON := $(VPY)
export RETICULATE_PYTHON := $(VPY)
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: mutate setup r-deps run lint lint-python lint-r test test-python test-r test-r-system2 test-r-reticulate check check-package bench docs readme lint-docker clean

setup: $(RLIB)/amlr/DESCRIPTION $(VENV)/.installed

# R from Debian (CRAN is not reachable here); only when something is missing.
$(ROOT)/.Rlib/.r-deps:
	@if ! $(PYTHON) -c 'import ensurepip, venv, sysconfig, os; assert os.path.exists(sysconfig.get_paths()["include"] + "/Python.h")' >/dev/null 2>&1 || ! command -v Rscript >/dev/null 2>&1 || ! Rscript -e 'q(status = !all(vapply(commandArgs(TRUE), requireNamespace, NA, quietly = TRUE)))' $(R_PKGS) >/dev/null 2>&1; then \
		echo "Installing R (and Python's venv and headers) from Debian packages"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $(R_DEBS); \
	fi
	@mkdir -p $(RLIB) && touch $@

r-deps: $(ROOT)/.Rlib/.r-deps

# rpy2 builds against R, so R comes first.
$(VENV)/.installed: $(REQS) $(ROOT)/.Rlib/.r-deps
	@test -x $(VPY) || $(PYTHON) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip
	$(VPY) -m pip install -q $(addprefix -r ,$(REQS))
	@touch $@

$(RLIB)/amlr/DESCRIPTION: $(R_SOURCES) $(ROOT)/.Rlib/.r-deps
	@mkdir -p $(RLIB)
	R CMD INSTALL --no-multiarch --no-test-load --library=$(RLIB) . >/dev/null 2>$(RLIB)/install.log || (cat $(RLIB)/install.log; exit 1)
	@touch $@

run: setup
	Rscript examples/hello/run.R

test: setup lint test-python test-r check-package

# Lint and types (ruff.toml, mypy.ini, .lintr): ruff and mypy on the Python,
# lintr on R/. `make -j2 lint` runs the two halves side by side.
lint: lint-python lint-r

lint-python: $(VENV)/.installed
	$(VENV)/bin/ruff check inst/python tests/python
	$(VENV)/bin/mypy

lint-r: $(ROOT)/.Rlib/.r-deps
	Rscript -e 'l <- lintr::lint_dir("R", cache = "$(RLIB)/lintr-cache"); print(l); quit(status = length(l) > 0L)'

test-python: setup
	$(VPY) -m pytest tests/python -q -p no:cacheprovider

test-r: test-r-system2 test-r-reticulate

test-r-system2: setup
	AMLR_TEST_BRIDGE=system2 Rscript -e 'testthat::test_local(".", reporter = testthat::ProgressReporter$$new(show_praise = FALSE, update_interval = Inf), stop_on_failure = TRUE, load_package = "installed")'

test-r-reticulate: setup
	AMLR_TEST_BRIDGE=reticulate Rscript -e 'testthat::test_local(".", reporter = testthat::ProgressReporter$$new(show_praise = FALSE, update_interval = Inf), stop_on_failure = TRUE, load_package = "installed")'

docs: $(ROOT)/.Rlib/.r-deps
	Rscript -e 'roxygen2::roxygenise(load_code = roxygen2::load_source)'

# The vignettes run no code when built (their output is checked by
# tests/testthat/test-docs.R), so building them needs only knitr, rmarkdown and
# pandoc. Without pandoc they are neither built nor checked.
BUILD_VIGNETTES := $(if $(shell command -v pandoc),,--no-build-vignettes)
CHECK_VIGNETTES := $(if $(shell command -v pandoc),,--ignore-vignettes)

check: setup
	rm -rf build && mkdir -p build
	cd build && R CMD build $(BUILD_VIGNETTES) $(ROOT) >/dev/null && _R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual $(CHECK_VIGNETTES) amlr_*.tar.gz
	@! grep -E "^Status: .*(ERROR|WARNING)" build/amlr.Rcheck/00check.log

# R CMD check without re-running the test suite (make test has just run it):
# examples, documentation, code, DESCRIPTION. A WARNING fails it too.
check-package: setup
	rm -rf build && mkdir -p build
	cd build && R CMD build $(BUILD_VIGNETTES) $(ROOT) >/dev/null && _R_CHECK_FORCE_SUGGESTS_=false R CMD check --no-manual --no-tests $(CHECK_VIGNETTES) amlr_*.tar.gz
	@! grep -E "^Status: .*(ERROR|WARNING)" build/amlr.Rcheck/00check.log

# Rewrite the runnable blocks of README.md and the vignettes with what they print
# when run (tests/testthat/helper-docs.R); test-docs.R checks them in make test.
readme: setup
	Rscript -e 'source("tests/testthat/helper-docs.R"); doc_root <- function() getwd(); for (f in c("README.md", Sys.glob("vignettes/*.Rmd"))) if (nrow(doc_blocks(readLines(f))) > 0) doc_update(f)'

# Mutation testing (not part of make test; minutes per target, one mutant at a time):
# make mutate, or make mutate TARGETS="spec stepcontract". Report: docs/mutation.md.
mutate: setup
	AMLR_HOME=$$(mktemp -d) $(VPY) tools/mutate.py $(TARGETS)

bench: setup
	Rscript bench/run.R
	Rscript bench/growth.R
	@for b in bench/endpoint.R bench/sweep.R; do if [ -f $$b ]; then Rscript $$b || exit 1; fi; done

lint-docker: setup
	PYTHONPATH=inst/python $(VPY) -m amlr.dockerlint docker/Dockerfile

clean:
	rm -rf $(VENV) $(RLIB) build .mypy_cache .ruff_cache
