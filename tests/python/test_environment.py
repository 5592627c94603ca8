"""Environment identity, registry secrets and Docker build contexts -- no Docker needed."""
import json
import os
import shutil
import subprocess
import sys
import tarfile

import pytest

PYDIR = os.path.join(os.path.dirname(__file__), "..", "..", "inst", "python")

from amlr import environment as envmod  # noqa: E402
from amlr.api import handle_json  # noqa: E402
from amlr.dockerlint import lint_text  # noqa: E402
from amlr.environment import (  # noqa: E402
    AMLR_PACKAGE_FILE,
    BuildContextError,
    InvalidEnvironment,
    amlr_package,
    baked_dockerfile,
    default_dockerfile_path,
    registry_password,
    resolve_environment,
    write_build_context,
)

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
SECRET = "s3cr3t-Pa55w0rd-never-written"


@pytest.fixture(autouse=True)
def no_amlr_source_override(monkeypatch):
    monkeypatch.delenv("AMLR_SOURCE", raising=False)


@pytest.fixture
def own_dockerfile(tmp_path):
    """A user Dockerfile that copies a helper script from its folder."""
    folder = tmp_path / "img"
    folder.mkdir()
    (folder / "setup.sh").write_text("echo setting up\n")
    (folder / "Dockerfile").write_text(
        "FROM rocker/r-ver:4.4.1\n"
        "ARG CRAN_PACKAGES=\"\"\n"
        "COPY setup.sh /tmp/setup.sh\n"
        "RUN sh /tmp/setup.sh && install2.r ${CRAN_PACKAGES}\n"
    )
    return folder / "Dockerfile"


def spec(**kw):
    out = {"image": None, "registry": None, "dockerfile": None, "cran_packages": [], "name": None}
    out.update(kw)
    return out


# --- identity ----------------------------------------------------------------------------------


def test_same_content_same_identity(own_dockerfile, tmp_path):
    a = resolve_environment(spec(dockerfile=str(own_dockerfile), cran_packages=["zoo", "DBI"]))
    b = resolve_environment(spec(dockerfile=str(own_dockerfile), cran_packages=["zoo", "DBI"]))
    assert a.identity == b.identity and len(a.identity) == 64
    # The folder it lives in is not content.
    moved = tmp_path / "elsewhere"
    shutil.copytree(own_dockerfile.parent, moved)
    c = resolve_environment(spec(dockerfile=str(moved / "Dockerfile"), cran_packages=["DBI", "zoo"]))
    assert c.identity == a.identity


def test_package_order_and_duplicates_do_not_matter(own_dockerfile):
    a = resolve_environment(spec(dockerfile=str(own_dockerfile), cran_packages=["zoo", "DBI", "lubridate"]))
    b = resolve_environment(spec(dockerfile=str(own_dockerfile), cran_packages=["DBI", "lubridate", "zoo", "DBI"]))
    assert a.identity == b.identity
    assert a.cran_packages == ("DBI", "lubridate", "zoo")
    assert a.build_args == {"CRAN_PACKAGES": "DBI lubridate zoo"}


def test_changed_package_list_changes_identity_name_and_version(own_dockerfile):
    a = resolve_environment(spec(dockerfile=str(own_dockerfile), cran_packages=["DBI"]))
    b = resolve_environment(spec(dockerfile=str(own_dockerfile), cran_packages=["DBI", "zoo"]))
    none = resolve_environment(spec(dockerfile=str(own_dockerfile)))
    assert len({a.identity, b.identity, none.identity}) == 3
    assert a.name != b.name and a.version != b.version


def test_dockerfile_text_and_copied_files_are_content(own_dockerfile):
    before = resolve_environment(spec(dockerfile=str(own_dockerfile))).identity
    (own_dockerfile.parent / "setup.sh").write_text("echo changed\n")
    after_copy = resolve_environment(spec(dockerfile=str(own_dockerfile))).identity
    own_dockerfile.write_text(own_dockerfile.read_text() + "ENV X=1\n")
    after_text = resolve_environment(spec(dockerfile=str(own_dockerfile))).identity
    assert len({before, after_copy, after_text}) == 3


def test_name_and_version_come_from_identity(own_dockerfile):
    env = resolve_environment(spec(dockerfile=str(own_dockerfile), cran_packages=["DBI"]))
    assert env.version == env.identity[:12]
    assert env.name == "amlr-r-" + env.identity[:12]
    named = resolve_environment(spec(dockerfile=str(own_dockerfile), cran_packages=["DBI"], name="sales-r"))
    assert named.name == "sales-r"
    assert named.identity == env.identity and named.version == env.version


def test_registry_user_is_content_but_password_is_not(monkeypatch):
    reg = {"address": "myacr.azurecr.io", "username": "alice", "password_env": "MYACR_PASSWORD"}
    monkeypatch.setenv("MYACR_PASSWORD", "one")
    a = resolve_environment(spec(image="myacr.azurecr.io/amlr-r:4.4.1", registry=reg))
    monkeypatch.setenv("MYACR_PASSWORD", "two")
    b = resolve_environment(spec(image="myacr.azurecr.io/amlr-r:4.4.1", registry=reg))
    c = resolve_environment(spec(image="myacr.azurecr.io/amlr-r:4.4.1", registry={**reg, "username": "bob"}))
    d = resolve_environment(spec(image="myacr.azurecr.io/amlr-r:4.4.2", registry=reg))
    assert a.identity == b.identity
    assert len({a.identity, c.identity, d.identity}) == 3


def test_default_environment_is_amlrs_dockerfile():
    env = resolve_environment(None)
    assert env.dockerfile_path == os.path.abspath(default_dockerfile_path())
    assert env.builds_image and env.image is None
    assert {p for p, _ in env.context_files} == {"requirements.txt", "install-amlr.R", AMLR_PACKAGE_FILE}
    assert resolve_environment({}).identity == env.identity
    assert resolve_environment(None, default_dockerfile=default_dockerfile_path()).identity == env.identity


def test_default_dockerfile_passes_the_lint_and_declares_cran_packages():
    text = open(default_dockerfile_path(), encoding="utf-8").read()
    assert lint_text(text) == []
    assert "rocker/r-ver:4." in text and "ARG CRAN_PACKAGES" in text


def test_amlr_package_changes_change_the_default_identity(tmp_path, monkeypatch):
    base = resolve_environment(None).identity
    src = tmp_path / "amlr"
    shutil.copytree(os.path.join(REPO, "R"), src / "R")
    for name in ("DESCRIPTION", "NAMESPACE", "LICENSE"):
        shutil.copy(os.path.join(REPO, name), src / name)
    monkeypatch.setenv("AMLR_SOURCE", str(src))
    same = resolve_environment(None).identity
    (src / "R" / "zz-extra.R").write_text("extra <- function() 1\n")
    changed = resolve_environment(None).identity
    assert same == base  # the checkout's sources, wherever they sit
    assert changed != base


# --- secrets -----------------------------------------------------------------------------------


def test_registry_password_is_read_from_its_variable_at_call_time(monkeypatch):
    env = resolve_environment(spec(image="myacr.azurecr.io/r:1", registry={
        "address": "myacr.azurecr.io", "username": "alice"}))
    assert env.registry_password_env == "AMLR_REGISTRY_PASSWORD"
    monkeypatch.delenv("AMLR_REGISTRY_PASSWORD", raising=False)
    assert registry_password(env) is None
    monkeypatch.setenv("AMLR_REGISTRY_PASSWORD", SECRET)
    assert registry_password(env) == SECRET
    shown = json.dumps(env.to_json()) + repr(env)
    assert SECRET not in shown
    assert env.to_json()["registry"] == {"address": "myacr.azurecr.io", "username": "alice",
                                         "password_env": "AMLR_REGISTRY_PASSWORD", "password_set": True}


def test_a_password_in_the_spec_is_refused():
    with pytest.raises(InvalidEnvironment) as err:
        resolve_environment(spec(image="myacr.azurecr.io/r:1", registry={
            "address": "myacr.azurecr.io", "username": "alice", "password": SECRET}))
    assert err.value.field == "environment.registry.password"
    assert SECRET not in err.value.message


def test_build_context_holds_no_secret_and_only_what_is_copied(own_dockerfile, tmp_path, monkeypatch):
    monkeypatch.setenv("AMLR_REGISTRY_PASSWORD", SECRET)
    (own_dockerfile.parent / "notes.txt").write_text("not copied\n")
    env = resolve_environment(spec(dockerfile=str(own_dockerfile), cran_packages=["zoo", "DBI"], registry={
        "address": "myacr.azurecr.io", "username": "alice"}))
    ctx = write_build_context(env, str(tmp_path / "ctx"))
    assert sorted(os.listdir(ctx)) == ["Dockerfile", "setup.sh"]
    for root, _, files in os.walk(ctx):
        for f in files:
            assert SECRET.encode() not in open(os.path.join(root, f), "rb").read()


# --- build contexts ----------------------------------------------------------------------------


def test_build_args_are_baked_into_the_context_dockerfile(own_dockerfile, tmp_path):
    env = resolve_environment(spec(dockerfile=str(own_dockerfile), cran_packages=["zoo", "DBI"]))
    ctx = write_build_context(env, str(tmp_path / "ctx"))
    text = open(os.path.join(ctx, "Dockerfile"), encoding="utf-8").read()
    assert 'ARG CRAN_PACKAGES="DBI zoo"\n' in text
    assert text.count("\n") == env.dockerfile_text.count("\n")
    assert text == baked_dockerfile(env)


def test_default_context_is_complete_lints_clean_and_deterministic(tmp_path):
    env = resolve_environment(spec(dockerfile=default_dockerfile_path(), cran_packages=["RSQLite", "DBI"]))
    one = write_build_context(env, str(tmp_path / "one"))
    two = write_build_context(env, str(tmp_path / "two"))
    assert sorted(os.listdir(one)) == sorted(["Dockerfile", "requirements.txt", "install-amlr.R", AMLR_PACKAGE_FILE])
    baked = open(os.path.join(one, "Dockerfile"), encoding="utf-8").read()
    assert 'ARG CRAN_PACKAGES="DBI RSQLite"' in baked
    assert lint_text(baked) == []
    for name in os.listdir(one):
        assert open(os.path.join(one, name), "rb").read() == open(os.path.join(two, name), "rb").read(), name
    with tarfile.open(os.path.join(one, AMLR_PACKAGE_FILE)) as tar:
        names = tar.getnames()
    assert "amlr/DESCRIPTION" in names and "amlr/NAMESPACE" in names and "amlr/R/step.R" in names
    assert not any(n.startswith(("amlr/python", "amlr/inst", "amlr/tests")) for n in names)


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_context_package_installs_with_the_images_install_script(tmp_path):
    """What the Dockerfile's last RUN does, against this machine's R and library."""
    ctx = write_build_context(resolve_environment(None), str(tmp_path / "ctx"))
    lib = tmp_path / "lib"
    lib.mkdir()
    env = {**os.environ, "R_LIBS": str(lib) + os.pathsep + os.environ.get("R_LIBS", ""), "CRAN": "http://127.0.0.1:9"}
    proc = subprocess.run(["Rscript", "install-amlr.R", AMLR_PACKAGE_FILE], cwd=ctx, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert (lib / "amlr" / "DESCRIPTION").is_file()
    out = subprocess.run(
        ["Rscript", "-e", f"library(amlr, lib.loc = '{lib}'); Sys.setenv(AMLR_OUTPUT_model = '{tmp_path}/m'); "
                          "cat(step_output('model'))"],
        env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout == f"{tmp_path}/m" and (tmp_path / "m").is_dir()


def test_amlr_source_override_with_a_tarball(tmp_path, monkeypatch):
    tarball = tmp_path / "amlr_0.1.0.tar.gz"
    tarball.write_bytes(b"pretend tarball")
    monkeypatch.setenv("AMLR_SOURCE", str(tarball))
    env = resolve_environment(None)
    ctx = write_build_context(env, str(tmp_path / "ctx"))
    assert open(os.path.join(ctx, AMLR_PACKAGE_FILE), "rb").read() == b"pretend tarball"
    tarball.write_bytes(b"another tarball")
    assert resolve_environment(None).identity != env.identity
    with pytest.raises(BuildContextError, match="changed since"):
        write_build_context(env, str(tmp_path / "ctx2"))


def test_installed_package_is_found_from_an_installed_amlr():
    """Run from the installed copy (make setup puts one in .Rlib): the image gets that package."""
    installed = os.path.join(REPO, ".Rlib", "amlr")
    if not os.path.isfile(os.path.join(installed, "python", "amlr", "environment.py")):
        pytest.skip("amlr is not installed in .Rlib (make setup)")
    code = ("import json; from amlr.environment import amlr_package; p = amlr_package(); "
            "print(json.dumps([p.kind, p.path, [r for r, _ in p.files]]))")
    env = {k: v for k, v in os.environ.items() if k != "AMLR_SOURCE"}
    env["PYTHONPATH"] = os.path.join(installed, "python")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    kind, path, files = json.loads(proc.stdout)
    assert kind == "installed" and os.path.realpath(path) == os.path.realpath(installed)
    assert "DESCRIPTION" in files and "R/amlr.rdb" in files
    assert not any(f.startswith(("python/", "docker/")) for f in files)


def test_checkout_package_is_the_source_tree():
    pkg = amlr_package()
    assert pkg.kind == "source_dir" and os.path.realpath(pkg.path) == os.path.realpath(REPO)
    assert ("R/step.R", os.path.join(pkg.path, "R/step.R")) in pkg.files


def test_context_refuses_a_non_empty_folder_and_prebuilt_images(own_dockerfile, tmp_path):
    env = resolve_environment(spec(dockerfile=str(own_dockerfile)))
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "x").write_text("x")
    with pytest.raises(BuildContextError, match="not empty"):
        write_build_context(env, str(tmp_path / "busy"))
    with pytest.raises(BuildContextError, match="prebuilt image"):
        write_build_context(resolve_environment(spec(image="rocker/r-ver:4.4.1")), str(tmp_path / "img"))


def test_missing_copied_file_names_it_and_its_line(own_dockerfile):
    os.remove(own_dockerfile.parent / "setup.sh")
    with pytest.raises(BuildContextError) as err:
        resolve_environment(spec(dockerfile=str(own_dockerfile)))
    assert "`setup.sh` (line 3)" in err.value.message


# --- validation --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad, field", [
    (spec(image="rocker/r-ver:4.4.1", dockerfile="/x/Dockerfile"), "environment.image"),
    (spec(image="rocker/r-ver:4.4.1", cran_packages=["DBI"]), "environment.cran_packages"),
    (spec(image="not an image"), "environment.image"),
    (spec(cran_packages=["DBI", "bad name"]), "environment.cran_packages"),
    (spec(cran_packages=["auto"]), "environment.cran_packages"),
    (spec(cran_packages=["DBI"], auto=True), "environment.cran_packages"),
    (spec(name="AzureML-mine"), "environment.name"),
    (spec(name="has space"), "environment.name"),
    (spec(dockerfile="/does/not/exist/Dockerfile"), "environment.dockerfile"),
    (spec(image="r:1", registry={"address": "myacr.azurecr.io"}), "environment.registry.username"),
    (spec(image="r:1", registry={"address": "a b", "username": "u"}), "environment.registry.address"),
    (spec(image="r:1", registry={"address": "a.io", "username": "u", "password_env": "1X"}),
     "environment.registry.password_env"),
    ({"imgae": "r:1"}, "environment.imgae"),
])
def test_invalid_specs_name_the_field(bad, field):
    with pytest.raises(InvalidEnvironment) as err:
        resolve_environment(bad)
    assert err.value.field == field


def test_packages_need_a_dockerfile_that_declares_the_arg(tmp_path):
    plain = tmp_path / "Dockerfile"
    plain.write_text("FROM rocker/r-ver:4.4.1\nRUN echo hi\n")
    assert resolve_environment(spec(dockerfile=str(plain))).build_args == {}
    with pytest.raises(InvalidEnvironment, match="ARG CRAN_PACKAGES"):
        resolve_environment(spec(dockerfile=str(plain), cran_packages=["DBI"]))


def test_r_json_shapes_are_accepted(own_dockerfile):
    """jsonlite unboxes length-one vectors and may send a single package as a string."""
    env = resolve_environment({"image": None, "registry": None, "dockerfile": [str(own_dockerfile)],
                               "cran_packages": "DBI", "name": ["sales"]})
    assert env.cran_packages == ("DBI",) and env.name == "sales"


# --- the bridge --------------------------------------------------------------------------------


def test_bridge_resolve_and_context(own_dockerfile, tmp_path, monkeypatch):
    monkeypatch.setenv("AMLR_REGISTRY_PASSWORD", SECRET)
    sp = spec(dockerfile=str(own_dockerfile), cran_packages=["DBI"],
              registry={"address": "myacr.azurecr.io", "username": "alice", "password_env": "AMLR_REGISTRY_PASSWORD"})
    out = json.loads(handle_json(json.dumps({"method": "environment_resolve", "params": {"environment": sp}})))
    assert SECRET not in json.dumps(out)
    res = out["result"]
    assert res["name"] == resolve_environment(sp).name and res["cran_packages"] == ["DBI"]
    ctx = json.loads(handle_json(json.dumps({"method": "environment_context",
                                             "params": {"environment": sp, "dest": str(tmp_path / "c")}})))
    assert ctx["result"]["path"] == str(tmp_path / "c")
    assert os.path.isfile(tmp_path / "c" / "Dockerfile")
    err = json.loads(handle_json(json.dumps({"method": "environment_resolve",
                                             "params": {"environment": {"image": "r:1", "cran_packages": ["x y"]}}})))
    assert err["error"]["class"] == "invalid_environment"


def test_bridge_source_files_follow_snapshot_exclusions(tmp_path):
    (tmp_path / "main.R").write_text("library(DBI)\n")
    (tmp_path / ".Rhistory").write_text("library(secret)\n")
    (tmp_path / "scratch").mkdir()
    (tmp_path / "scratch" / "old.R").write_text("library(old)\n")
    (tmp_path / ".amlignore").write_text("scratch/\n")
    out = json.loads(handle_json(json.dumps({"method": "environment_source_files",
                                             "params": {"source_dirs": [str(tmp_path)]}})))
    assert out["result"] == {str(tmp_path): ["main.R"]}


def test_module_is_importable_without_azure():
    code = "import sys, amlr.environment; print([m for m in sys.modules if m.startswith('azure')])"
    proc = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": PYDIR},
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_resolved_environment_is_frozen(own_dockerfile):
    env = resolve_environment(spec(dockerfile=str(own_dockerfile)))
    import dataclasses

    with pytest.raises(dataclasses.FrozenInstanceError):
        env.name = "other"  # type: ignore[misc]
    assert envmod.ResolvedEnvironment.__dataclass_params__.frozen


@pytest.mark.skipif(shutil.which("Rscript") is None, reason="needs R")
def test_installed_amlr_context_installs_as_a_binary_package(tmp_path):
    """A user without the sources: the image gets the installed amlr, which R installs as a binary package."""
    installed = os.path.join(REPO, ".Rlib", "amlr")
    if not os.path.isfile(os.path.join(installed, "python", "amlr", "environment.py")):
        pytest.skip("amlr is not installed in .Rlib (make setup)")
    env = {k: v for k, v in os.environ.items() if k != "AMLR_SOURCE"}
    env["PYTHONPATH"] = os.path.join(installed, "python")
    code = ("import sys; from amlr.environment import resolve_environment, write_build_context; "
            "write_build_context(resolve_environment(None), sys.argv[1])")
    ctx = tmp_path / "ctx"
    proc = subprocess.run([sys.executable, "-c", code, str(ctx)], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    lib = tmp_path / "lib"
    lib.mkdir()
    env.update(R_LIBS=str(lib) + os.pathsep + os.environ.get("R_LIBS", ""), CRAN="http://127.0.0.1:9")
    proc = subprocess.run(["Rscript", "install-amlr.R", AMLR_PACKAGE_FILE], cwd=ctx, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "binary" in proc.stdout + proc.stderr
    out = subprocess.run(["Rscript", "-e", f"library(amlr, lib.loc = '{lib}'); cat(exists('log_metric'))"],
                         env=env, capture_output=True, text=True, timeout=120)
    assert out.stdout == "TRUE", out.stderr


def _fake_installed(root, description, rdb=b"code v1"):
    (root / "Meta").mkdir(parents=True, exist_ok=True)
    (root / "R").mkdir(exist_ok=True)
    (root / "python").mkdir(exist_ok=True)
    (root / "DESCRIPTION").write_text(description)
    (root / "Meta" / "package.rds").write_bytes(b"meta")
    (root / "R" / "amlr.rdb").write_bytes(rdb)
    (root / "python" / "ignored.py").write_text("x = 1\n")
    return envmod.AmlrPackage("installed", str(root), envmod._installed_package_files(str(root)))


def test_installed_fingerprint_follows_the_code_not_the_install_date(tmp_path):
    desc = "Package: amlr\nVersion: 0.1.0\nBuilt: R 4.2.2; ; 2025-01-01 10:00:00 UTC; unix\n"
    a = _fake_installed(tmp_path / "a", desc).fingerprint()
    reinstalled = _fake_installed(tmp_path / "b", desc.replace("10:00:00", "11:30:00")).fingerprint()
    new_code = _fake_installed(tmp_path / "c", desc, rdb=b"code v2").fingerprint()
    assert a == reinstalled
    assert new_code != a
    assert all(not rel.startswith("python/") for rel, _ in _fake_installed(tmp_path / "d", desc).files)


def test_installed_from_git_is_named_by_its_commit(tmp_path):
    desc = "Package: amlr\nVersion: 0.1.0\nRemoteSha: 1111111\nBuilt: R 4.4.1; ; 2025-01-01; unix\n"
    a = _fake_installed(tmp_path / "a", desc, rdb=b"bytes of one install").fingerprint()
    b = _fake_installed(tmp_path / "b", desc.replace("2025-01-01", "2025-02-02"),
                        rdb=b"bytes of another install").fingerprint()
    c = _fake_installed(tmp_path / "c", desc.replace("1111111", "2222222")).fingerprint()
    assert a == b
    assert c != a
