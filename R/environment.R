#' Describe the image a job runs in
#'
#' An environment is either a prebuilt Docker `image` (optionally in a private
#' registry, see [registry_credentials()]) or a `dockerfile` that Azure ML
#' builds, by default amlr's own: R 4.4 (`rocker/r-ver`), Python with the
#' metric SDKs, and amlr itself. `cran_packages` are added to that build.
#'
#' amlr names the environment after a content hash of the Dockerfile, the
#' files it copies, the build arguments and the sorted package list, so Azure
#' ML reuses an image it has already built and a changed package list builds
#' a new one. The local backend ignores environments: steps run with this
#' machine's R.
#'
#' @param image A prebuilt image, e.g. `"myacr.azurecr.io/amlr-r:4.4.1"`. It
#'   must provide `Rscript` and `python` (see `docker/README.md`).
#' @param registry For a private `image`: [registry_credentials()].
#' @param dockerfile A Dockerfile to build instead; the files it copies must sit
#'   next to it. Default (when `image` is `NULL`): amlr's own.
#' @param cran_packages CRAN packages to install in the image (with a
#'   `dockerfile`), or `"auto"`: the packages the pipeline's scripts use, found
#'   by [r_dependencies()] when the pipeline is submitted or exported;
#'   `c("auto", "xgboost")` adds to what is found.
#' @param name Environment name on Azure ML; default `amlr-r-<hash>`.
#' @return An `amlr_environment`; its `spec` element is what amlr sends to the
#'   backends.
#' @family pipeline builders
#' @export
#' @examples
#' r_environment(cran_packages = c("DBI", "RSQLite", "zoo"))
#' r_environment(cran_packages = "auto")
#' r_environment(
#'   image = "myacr.azurecr.io/amlr-r:4.4.1",
#'   registry = registry_credentials("myacr.azurecr.io", "myacr", password_env = "MYACR_PASSWORD")
#' )
r_environment <- function(image = NULL, registry = NULL, dockerfile = NULL, cran_packages = NULL, name = NULL) {
  if (!is.null(image)) check_string(image, "image", "invalid_environment")
  if (!is.null(name)) check_string(name, "name", "invalid_environment")
  if (!is.null(image) && !is.null(dockerfile)) {
    amlr_abort(c("Give either {.arg image} or {.arg dockerfile}, not both.",
                 i = "{.arg image} runs a prebuilt image; {.arg dockerfile} has Azure ML build one."),
               "invalid_environment")
  }
  if (!is.null(registry) && !inherits(registry, "amlr_registry")) {
    amlr_abort("{.arg registry} must come from {.fn registry_credentials}.", "invalid_environment")
  }
  packages <- check_cran_packages(cran_packages)
  auto <- "auto" %in% packages
  packages <- setdiff(packages, "auto")
  if (!is.null(image) && (auto || length(packages))) {
    amlr_abort(c("{.arg cran_packages} need an image build, but {.arg image} names a prebuilt image.",
                 i = "Install the packages in that image (see {.path docker/README.md}),
                      or drop {.arg image} to build amlr's Dockerfile with them."),
               "invalid_environment")
  }
  if (is.null(image)) dockerfile <- normalize_dockerfile(dockerfile %||% default_dockerfile())
  spec <- list(
    image = image,
    registry = if (!is.null(registry)) unclass(registry),
    dockerfile = dockerfile,
    cran_packages = I(sort(unique(packages))),
    name = name
  )
  if (auto) spec$auto <- TRUE
  structure(list(spec = spec), class = "amlr_environment")
}

#' Credentials for a private container registry
#'
#' The password never enters amlr's objects, specs, logs or files: amlr keeps
#' the *name* of the environment variable that holds it, and the backend reads
#' that variable when it submits. Give the password in `password_env`'s
#' variable (e.g. in `.Renviron`), or pass it here and amlr puts it in that
#' variable for this R session.
#'
#' @param address Registry host, e.g. `"myacr.azurecr.io"`.
#' @param username Registry user (for Azure Container Registry: the admin
#'   user or a service principal's application id).
#' @param password The password. Default: the current value of
#'   `password_env`. A different value is stored into `password_env` with
#'   [Sys.setenv()].
#' @param password_env Name of the environment variable that holds the
#'   password. Use a different one per registry.
#' @return An `amlr_registry`.
#' @export
#' @examples
#' reg <- registry_credentials("myacr.azurecr.io", "myacr", password_env = "MYACR_PASSWORD")
#' reg
registry_credentials <- function(address, username, password = Sys.getenv(password_env),
                                 password_env = "AMLR_REGISTRY_PASSWORD") {
  check_string(address, "address", "invalid_environment")
  check_string(username, "username", "invalid_environment")
  check_string(password_env, "password_env", "invalid_environment")
  if (!grepl("^[A-Za-z_][A-Za-z0-9_]*$", password_env)) {
    amlr_abort("{.arg password_env} must be an environment variable name such as {.val AMLR_REGISTRY_PASSWORD}.",
               "invalid_environment")
  }
  if (!is.character(password) || length(password) != 1L || is.na(password)) {
    amlr_abort("{.arg password} must be a single string.", "invalid_environment")
  }
  if (nzchar(password) && !identical(password, Sys.getenv(password_env))) {
    do.call(Sys.setenv, structure(list(password), names = password_env))
  }
  structure(list(address = sub("^https?://", "", sub("/+$", "", address)), username = username,
                 password_env = password_env),
            class = "amlr_registry")
}

#' Write a Docker build context for an environment
#'
#' The folder holds the `Dockerfile` (build arguments such as `CRAN_PACKAGES`
#' written in as defaults) and exactly the files it copies, including amlr's
#' own R package. `docker build` on it, or hand it to Azure ML; it contains no
#' secret.
#'
#' @param environment An [r_environment()] that builds an image (not one that
#'   names a prebuilt `image`).
#' @param path A new or empty folder to write.
#' @param pipeline For `cran_packages = "auto"`: the script, [r_step()] or
#'   [r_pipeline()] whose packages to find.
#' @return `path`, invisibly.
#' @export
#' @examples
#' ctx <- export_environment(r_environment(cran_packages = c("DBI", "zoo")), tempfile("amlr-image-"))
#' list.files(ctx)
#' cat(grep("CRAN_PACKAGES=", readLines(file.path(ctx, "Dockerfile")), value = TRUE), sep = "\n")
export_environment <- function(environment = r_environment(), path, pipeline = NULL) {
  if (!inherits(environment, "amlr_environment")) {
    amlr_abort("{.arg environment} must come from {.fn r_environment}.", "invalid_environment")
  }
  check_string(path, "path", "bad_request")
  if (isTRUE(environment$spec$auto) && is.null(pipeline)) {
    amlr_abort(c("{.code cran_packages = \"auto\"} needs the {.arg pipeline} to scan.",
                 i = "Pass {.arg pipeline}: a script path, an {.fn r_step} or an {.fn r_pipeline}."),
               "invalid_environment")
  }
  spec <- resolve_environment_spec(environment, pipeline)
  res <- amlr_call("environment_context", list(environment = spec, dest = path.expand(path)))
  cli::cli_inform(c(
    v = "Wrote the build context of environment {.val {res$name}} to {.path {res$path}}.",
    i = "Build it: {.code docker build -t <registry>/amlr-r:{res$version} {res$path}}"
  ))
  invisible(res$path)
}

#' The environment spec that goes to Python, with `cran_packages = "auto"` resolved
#'
#' `pipeline` is what the environment serves: an `r_step` (its own
#' environment) or an `r_pipeline` (the default for the steps that set none).
#' @noRd
resolve_environment_spec <- function(env, pipeline = NULL) {
  if (is.null(env)) return(NULL)
  spec <- env_spec(env)
  if (!isTRUE(spec$auto)) return(spec)
  found <- if (is.null(pipeline)) character() else r_dependencies(served_steps(pipeline))$package
  spec$auto <- NULL
  spec$cran_packages <- I(sort(unique(c(as.character(spec$cran_packages), found))))
  spec
}

# The steps whose image this environment is: a pipeline's default serves the
# steps that set no environment of their own.
served_steps <- function(x) {
  if (inherits(x, "amlr_pipeline")) {
    uses_default <- vapply(x$steps, function(s) is.null(s$environment), logical(1))
    return(x$steps[uses_default])
  }
  x
}

#' @export
print.amlr_environment <- function(x, ...) {
  s <- x$spec
  cli::cli_text("{.cls amlr_environment}{if (!is.null(s$name)) paste0(' ', s$name) else ''}")
  lines <- if (!is.null(s$image)) "image: {.val {s$image}}" else "dockerfile: {.path {s$dockerfile}}"
  pkgs <- as.character(s$cran_packages)
  if (isTRUE(s$auto)) {
    extra <- if (length(pkgs)) paste0(" plus ", paste(pkgs, collapse = ", ")) else ""
    lines <- c(lines, paste0("cran_packages: auto (found in the scripts when submitted)", extra))
  } else if (length(pkgs)) {
    lines <- c(lines, "cran_packages: {.pkg {pkgs}}")
  }
  if (!is.null(s$registry)) lines <- c(lines, registry_lines(s$registry))
  cli::cli_bullets(structure(lines, names = rep(" ", length(lines))))
  invisible(x)
}

#' @export
print.amlr_registry <- function(x, ...) {
  cli::cli_text("{.cls amlr_registry}")
  lines <- registry_lines(x)
  cli::cli_bullets(structure(lines, names = rep(" ", length(lines))))
  invisible(x)
}

# Never the password: where it is, and whether it is there.
registry_lines <- function(r) {
  state <- if (nzchar(Sys.getenv(r$password_env))) "set in" else "not set: put it in"
  c(paste0("registry: {.strong ", cli_escape(r$address), "}, user {.val ", cli_escape(r$username), "}"),
    paste0("password: <", state, " $", r$password_env, ">"))
}

#' @export
format.amlr_registry <- function(x, ...) {
  sprintf("<amlr_registry %s, user %s, password in $%s>", x$address, x$username, x$password_env)
}

default_dockerfile <- function() {
  path <- system.file("docker", "Dockerfile", package = "amlr")
  if (!nzchar(path)) {
    amlr_abort(c("amlr's default Dockerfile is missing from the installed package.",
                 i = "Reinstall amlr, or give {.arg dockerfile} or {.arg image}."), "invalid_environment")
  }
  path
}

normalize_dockerfile <- function(path, call = rlang::caller_env()) {
  check_string(path, "dockerfile", "invalid_environment", call = call)
  if (dir.exists(path)) path <- file.path(path, "Dockerfile")
  if (!file.exists(path)) {
    amlr_abort(c("Dockerfile {.path {path}} does not exist.",
                 i = "Give the path of a Dockerfile, or its folder."), "invalid_environment", call = call)
  }
  normalizePath(path, winslash = "/", mustWork = TRUE)
}

check_cran_packages <- function(x, call = rlang::caller_env()) {
  if (is.null(x)) return(character())
  if (!is.character(x) || anyNA(x)) {
    amlr_abort("{.arg cran_packages} must be a character vector of package names, or {.val auto}.",
               "invalid_environment", call = call)
  }
  x <- trimws(x)
  bad <- x[x != "auto" & !grepl(CRAN_NAME_RE, x)]
  if (length(bad)) {
    amlr_abort("Not CRAN package names: {.val {bad}}.", "invalid_environment", call = call)
  }
  builtin <- intersect(x, c(BASE_PACKAGES, RECOMMENDED_PACKAGES))
  if (length(builtin)) {
    amlr_abort(c("{.pkg {builtin}} come{?s/} with R; leave {?it/them} out of {.arg cran_packages}.",
                 i = "The image's R has base and recommended packages installed."),
               "invalid_environment", call = call)
  }
  unique(x)
}

CRAN_NAME_RE <- "^[A-Za-z][A-Za-z0-9.]*[A-Za-z0-9]$"
