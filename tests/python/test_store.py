"""The local asset store: versions, identical content, names, concurrency, damage.

Real files, real SQLite, real processes for concurrency; the local backend's
use of the store (reuse when "latest" is unchanged, registering outputs,
lineage of models) with real Rscript runs where R is installed.
"""
import json
import os
import re
import shutil
import subprocess
import sys
import time

import pytest

from bridge_calls import call, call_error
from bridge_calls import wait_run as wait
from conftest import PYTHON_DIR, requires_rscript
from amlr.backends.local.plan import prepare
from amlr.registry import Registry
from amlr.spec import validate
from amlr.store import (AssetNotFound, AssetVersionExists, InvalidAssetName, SourceUnreadable, Store, StoreDamaged,
                        check_name)


def folder(tmp_path, name, files):
    d = tmp_path / name
    d.mkdir(parents=True, exist_ok=True)
    for rel, text in files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        (d / rel).write_text(text)
    return d


@pytest.fixture
def store(tmp_path):
    return Store(str(tmp_path / "home"))


# -- versions and content --------------------------------------------------------------------


def test_versions_count_up_and_identical_content_returns_the_existing_version(tmp_path, store):
    src = folder(tmp_path, "cars", {"cars.csv": "mpg\n21\n", "sub/notes.txt": "v1"})
    first = store.register("data", str(src), "cars")
    again = store.register("data", str(src), "cars")
    assert (first.version, first.existing) == ("1", False)
    assert (again.version, again.existing) == ("1", True)
    (src / "cars.csv").write_text("mpg\n21\n22\n")
    second = store.register("data", str(src), "cars")
    assert (second.version, second.existing) == ("2", False)
    assert store.get("data", "cars").version == "2"
    assert store.get("data", "cars", "1").path == first.path
    # The stored copy is the content at registration, not the live folder.
    with open(os.path.join(first.path, "cars.csv")) as fh:
        assert fh.read() == "mpg\n21\n"
    assert [a.version for a in store.list("data", "cars")] == ["1", "2"]


def test_identical_content_under_another_name_is_its_own_asset_sharing_the_files(tmp_path, store):
    src = folder(tmp_path, "cars", {"cars.csv": "x"})
    a = store.register("data", str(src), "cars")
    b = store.register("data", str(src), "cars-copy")
    assert (b.version, b.existing) == ("1", False)
    assert a.path == b.path  # one object on disk


def test_a_file_is_a_uri_file_whose_name_counts(tmp_path, store):
    d = folder(tmp_path, "files", {"a.csv": "same", "b.csv": "same"})
    a = store.register("data", str(d / "a.csv"), "table")
    b = store.register("data", str(d / "b.csv"), "table")
    assert (a.type, a.version, b.version) == ("uri_file", "1", "2")
    assert os.path.basename(a.path) == "a.csv" and open(a.path).read() == "same"


def test_explicit_versions_are_immutable(tmp_path, store):
    src = folder(tmp_path, "cars", {"cars.csv": "1"})
    assert store.register("data", str(src), "cars", version="2024.1").version == "2024.1"
    assert store.register("data", str(src), "cars", version="2024.1").existing
    (src / "cars.csv").write_text("2")
    with pytest.raises(AssetVersionExists, match="never changes"):
        store.register("data", str(src), "cars", version="2024.1")
    # An explicit non-integer version does not disturb the integer sequence.
    assert store.register("data", str(src), "cars").version == "1"


def test_stored_content_is_read_only(tmp_path, store):
    src = folder(tmp_path, "cars", {"cars.csv": "1"})
    asset = store.register("data", str(src), "cars")
    assert os.stat(os.path.join(asset.path, "cars.csv")).st_mode & 0o222 == 0  # (root may still write)


def test_a_source_that_cannot_be_read_fails_and_registers_nothing(tmp_path, store):
    src = folder(tmp_path, "cars", {"ok.csv": "1"})
    os.symlink(str(tmp_path / "gone.csv"), str(src / "broken.csv"))  # a dangling link: unreadable
    with pytest.raises(SourceUnreadable, match=r"broken\.csv"):
        store.register("data", str(src), "cars")
    assert store.list("data") == []
    objects = store.objects_dir()
    assert not os.path.isdir(objects) or not [n for n in os.listdir(objects) if n.startswith(".staging")]


def test_linked_files_and_folders_count_as_what_the_copy_holds(tmp_path, store):
    outside = folder(tmp_path, "outside", {"data.csv": "1", "deep/more.csv": "m"})
    src = folder(tmp_path, "src", {"a.csv": "a"})
    os.symlink(str(outside / "data.csv"), str(src / "linked.csv"))
    os.symlink(str(outside / "deep"), str(src / "linkdir"))
    first = store.register("data", str(src), "x")
    assert sorted(os.listdir(first.path)) == ["a.csv", "linkdir", "linked.csv"]
    assert not os.path.islink(os.path.join(first.path, "linkdir"))  # a copy, not a link out of the store
    (outside / "deep" / "more.csv").write_text("changed")
    second = store.register("data", str(src), "x")
    assert (second.version, second.existing) == ("2", False)
    with open(os.path.join(second.path, "linkdir", "more.csv")) as fh:
        assert fh.read() == "changed"


def test_a_link_loop_is_refused(tmp_path, store):
    src = folder(tmp_path, "src", {"a.csv": "a"})
    os.symlink(str(src), str(src / "loop"))
    with pytest.raises(SourceUnreadable, match="links back"):
        store.register("data", str(src), "x")
    assert store.list("data") == []


def test_registering_a_folder_that_holds_the_store_is_refused(tmp_path):
    home = tmp_path / "home"
    store = Store(str(home))
    store.register("data", str(folder(tmp_path, "c", {"a": "1"})), "cars")
    with pytest.raises(SourceUnreadable, match="copy the store into itself"):
        store.register("data", str(tmp_path), "everything")
    with pytest.raises(SourceUnreadable, match="copy the store into itself"):
        store.register("data", str(home), "home")
    # An object inside the store is plain content: the same version comes back.
    assert store.register("data", store.get("data", "cars").path, "cars").existing


def test_rebuild_clears_copies_a_killed_registration_left(tmp_path, store):
    store.register("data", str(folder(tmp_path, "c", {"a": "1"})), "cars")
    leftover = os.path.join(store.objects_dir(), ".staging-dead-1234-abcd")
    os.makedirs(os.path.join(leftover, "sub"))
    with open(os.path.join(leftover, "sub", "f"), "w") as fh:
        fh.write("half")
    os.chmod(os.path.join(leftover, "sub", "f"), 0o444)
    store.rebuild()
    assert not os.path.exists(leftover)
    assert store.get("data", "cars").version == "1"


# -- names -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "-cars", ".cars", "_cars", "my cars", "cars/2024", "../cars", "cars:1",
                                  "cars@latest", "vélo", "x" * 256, "cars\n"])
def test_names_outside_azure_mls_rule_are_refused_naming_the_rule(tmp_path, store, name):
    src = folder(tmp_path, "cars", {"a": "1"})
    with pytest.raises(InvalidAssetName, match=re.escape("letters, digits, `-`, `_` and `.`")):
        store.register("data", str(src), name)
    assert not os.path.exists(os.path.join(store.root, "records"))


@pytest.mark.parametrize("name", ["cars", "Cars-2024.v1_final", "0day", "x" * 255])
def test_names_inside_the_rule_are_accepted(name):
    assert check_name(name) == name


@pytest.mark.parametrize("version", ["latest", "0", "-1", "1 2", 1.5, True])
def test_bad_versions_are_refused(tmp_path, store, version):
    src = folder(tmp_path, "cars", {"a": "1"})
    with pytest.raises(InvalidAssetName):
        store.register("data", str(src), "cars", version=version)


def test_unknown_asset_and_unknown_version_say_what_exists(tmp_path, store):
    with pytest.raises(AssetNotFound, match="register_data"):
        store.get("data", "nope")
    store.register("data", str(folder(tmp_path, "c", {"a": "1"})), "cars")
    with pytest.raises(AssetNotFound, match=r"its versions: 1\)"):
        store.get("data", "cars", "7")


# -- concurrency: two real processes -------------------------------------------------------------

WORKER = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
from amlr.store import Store
home, go, src, name = sys.argv[2:6]
while not os.path.exists(go):
    time.sleep(0.001)
out = []
for path in src.split(os.pathsep):
    a = Store(home).register("data", path, name)
    out.append([a.version, a.content_hash, a.existing])
print(json.dumps(out))
"""


def race(tmp_path, sources_a, sources_b, name="cars"):
    home = str(tmp_path / "home")
    go = str(tmp_path / "go")
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(PYTHON_DIR), home, go, os.pathsep.join(srcs), name],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for srcs in (sources_a, sources_b)
    ]
    time.sleep(0.3)  # both are waiting at the barrier
    open(go, "w").close()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    return Store(home), results


def test_two_processes_registering_different_content_get_distinct_versions(tmp_path):
    a = [str(folder(tmp_path, f"a{i}", {"f.csv": f"a{i}"})) for i in range(6)]
    b = [str(folder(tmp_path, f"b{i}", {"f.csv": f"b{i}"})) for i in range(6)]
    store, (ra, rb) = race(tmp_path, a, b)
    versions = [v for v, _, _ in ra + rb]
    assert sorted(versions, key=int) == [str(i) for i in range(1, 13)]
    listed = {a.version: a.content_hash for a in store.list("data", "cars")}
    assert listed == {v: h for v, h, _ in ra + rb}
    for asset in store.list("data", "cars"):  # every version's files are complete
        assert os.path.isfile(os.path.join(asset.path, "f.csv"))


def test_two_processes_registering_identical_content_share_one_version(tmp_path):
    same = [str(folder(tmp_path, f"s{i}", {"f.csv": f"content {i}"})) for i in range(5)]
    store, (ra, rb) = race(tmp_path, same, same)
    assert [v for v, _, _ in ra] == [v for v, _, _ in rb]
    assert len(store.list("data", "cars")) == 5
    # For each content exactly one process created the version.
    assert [x[2] + y[2] for x, y in zip(ra, rb)] == [1] * 5
    assert not [n for n in os.listdir(store.objects_dir()) if n.startswith(".staging")]


def test_a_registration_killed_mid_copy_leaves_no_version_and_the_next_one_works(tmp_path):
    import signal

    src = folder(tmp_path, "many", {f"d{i:04d}/f.csv": "x" * 2000 for i in range(4000)})
    home = str(tmp_path / "home")
    go = str(tmp_path / "go")
    objects = os.path.join(home, "store", "objects")
    for _attempt in range(3):  # a registration that finished before the kill is not the case under test: again
        shutil.rmtree(home, ignore_errors=True)
        if os.path.exists(go):
            os.remove(go)
        proc = subprocess.Popen([sys.executable, "-c", WORKER, str(PYTHON_DIR), home, go, str(src), "cars"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        open(go, "w").close()
        while proc.poll() is None:  # kill it as soon as its staged copy exists
            if os.path.isdir(objects) and any(n.startswith(".staging-") for n in os.listdir(objects)):
                os.kill(proc.pid, signal.SIGKILL)
                break
        proc.communicate()
        if proc.returncode == -signal.SIGKILL:
            break
    else:
        pytest.fail("three registrations of 4000 files each finished before they could be killed")
    store = Store(home)
    assert store.list("data") == []
    asset = store.register("data", str(src), "cars")
    assert (asset.version, asset.existing) == ("1", False)
    assert len(os.listdir(asset.path)) == 4000
    store.rebuild()
    assert not [n for n in os.listdir(objects) if n.startswith(".staging-")]


# -- a damaged store -------------------------------------------------------------------------------


def test_a_damaged_index_is_reported_and_rebuilt_from_the_records(tmp_path, store):
    src = folder(tmp_path, "c", {"a": "1"})
    store.register("data", str(src), "cars")
    (src / "a").write_text("2")
    store.register("data", str(src), "cars")
    store.register("model", str(src), "cars-model", lineage={"run": "r1"})
    with open(store.index_path, "wb") as fh:
        fh.write(b"this is not a database" * 100)
    for suffix in ("-wal", "-shm"):
        if os.path.exists(store.index_path + suffix):
            os.remove(store.index_path + suffix)
    with pytest.raises(StoreDamaged, match="rebuild_store"):
        store.list("data")
    result = store.rebuild()
    assert result["records"] == 3 and os.path.exists(result["kept"])
    assert [a.version for a in store.list("data", "cars")] == ["1", "2"]
    assert store.get("model", "cars-model").lineage == {"run": "r1"}
    # And registering goes on from the right number.
    (src / "a").write_text("3")
    assert store.register("data", str(src), "cars").version == "3"


def test_missing_content_is_reported_with_the_fix(tmp_path, store):
    asset = store.register("data", str(folder(tmp_path, "c", {"a": "1"})), "cars")
    os.chmod(asset.path, 0o700)
    for f in os.listdir(asset.path):
        os.chmod(os.path.join(asset.path, f), 0o600)
    import shutil

    shutil.rmtree(asset.path)
    with pytest.raises(StoreDamaged, match="Register the original content again"):
        store.get("data", "cars")
    # Registering the same content again restores the object; the version is unchanged.
    again = store.register("data", str(tmp_path / "c"), "cars")
    assert (again.version, again.existing) == ("1", True)
    assert store.get("data", "cars").path == asset.path


def test_verify_notices_content_changed_behind_the_stores_back(tmp_path, store):
    asset = store.register("data", str(folder(tmp_path, "c", {"a": "1"})), "cars")
    assert store.verify("data", "cars", "1")
    target = os.path.join(asset.path, "a")
    os.chmod(target, 0o600)
    with open(target, "w") as fh:
        fh.write("tampered")
    assert not store.verify("data", "cars", "1")


def test_an_unreadable_record_is_skipped_by_rebuild_and_named(tmp_path, store):
    store.register("data", str(folder(tmp_path, "c", {"a": "1"})), "cars")
    bad = store.record_path("data", "cars", "9")
    with open(bad, "w") as fh:
        fh.write("{not json")
    result = store.rebuild()
    assert result["records"] == 1 and result["skipped"] == [bad]


def test_a_huge_file_is_stored_once_and_streamed(tmp_path, store):
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:  # sparse: 1 GiB of zeros that take no disk
        fh.truncate(1024 ** 3)
    if os.stat(big).st_blocks * 512 > 1024 ** 2:
        pytest.skip("the file system does not make sparse files")
    statvfs = os.statvfs(tmp_path)
    if statvfs.f_bavail * statvfs.f_frsize < 4 * 1024 ** 3:
        pytest.skip("not enough free disk for a copy of a 1 GiB file")
    first = store.register("data", str(big), "big")
    assert os.path.getsize(first.path) == 1024 ** 3
    assert store.register("data", str(big), "big").existing


def test_a_folder_of_many_files_registers_once(tmp_path, store):
    src = folder(tmp_path, "many", {f"part-{i:05d}/x.csv": str(i) for i in range(3000)})
    first = store.register("data", str(src), "many")
    assert len(os.listdir(first.path)) == 3000
    assert store.register("data", str(src), "many").existing
    (src / "part-01234" / "x.csv").write_text("changed")
    assert store.register("data", str(src), "many").version == "2"


# -- the bridge ----------------------------------------------------------------------------------


def test_bridge_methods_class_their_errors(tmp_path):
    home = tmp_path / "home"
    src = folder(tmp_path, "c", {"a": "1"})
    got = call(home, "data_register", path=str(src), name="cars")
    assert (got["version"], got["existing"], got["type"]) == ("1", False, "uri_folder")
    assert call(home, "data_register", path=str(src), name="cars")["existing"] is True
    assert [a["version"] for a in call(home, "data_list")] == ["1"]
    assert call_error(home, "data_register", path=str(src), name="my cars")["class"] == "invalid_asset_name"
    assert call_error(home, "data_register", path=str(tmp_path / "missing"), name="cars")["class"] == \
        "output_not_found"
    assert call_error(home, "data_get", name="cars", version="5")["class"] == "asset_not_found"
    assert call_error(home, "data_register", path=str(src), name="cars", backend="elsewhere")["class"] == \
        "bad_request"


# -- the spec -------------------------------------------------------------------------------------


def spec_with(tmp_path, inputs=None, outputs=(), register=None):
    src = folder(tmp_path, "proj", {"train.R": "cat('hi')\n"})
    step = {"name": "train", "script": "train.R", "source_dir": str(src), "inputs": inputs or {},
            "outputs": list(outputs)}
    if register is not None:
        step["register"] = register
    return {"name": "p", "steps": [step]}


def test_spec_parses_data_asset_inputs_and_register(tmp_path):
    p = validate(spec_with(tmp_path, {"cars": {"type": "data_asset", "name": "cars", "version": "2",
                                               "mode": "download"}}, ["model"], {"model": "cars-model"}))
    inp = p.steps[0].inputs["cars"]
    assert (inp.kind, inp.asset, inp.version, inp.mode) == ("data_asset", "cars", "2", "download")
    assert p.steps[0].register == {"model": "cars-model"}
    assert validate(p.to_json()).to_json() == p.to_json()
    latest = validate(spec_with(tmp_path, {"cars": {"type": "data_asset", "name": "cars"}})).steps[0].inputs["cars"]
    assert (latest.version, latest.mode) == ("latest", "ro_mount")


@pytest.mark.parametrize("inputs, outputs, register, message", [
    ({"cars": {"type": "data_asset", "name": "my cars"}}, [], None, "not a valid data asset name"),
    ({"cars": {"type": "data_asset", "name": "cars", "mode": "rw_mount"}}, [], None, "ro_mount, download"),
    ({"cars": {"type": "data_asset", "name": "cars", "version": "-3"}}, [], None, "version"),
    ({}, ["model"], {"modle": "cars-model"}, "does not declare"),
    ({}, ["model"], {"model": "cars model"}, "not a valid data asset name"),
])
def test_spec_refuses_bad_assets_naming_the_field(tmp_path, inputs, outputs, register, message):
    from amlr.errors import InvalidSpec

    with pytest.raises(InvalidSpec, match=message):
        validate(spec_with(tmp_path, inputs, outputs, register))


# -- the local backend: resolution and reuse --------------------------------------------------------


def test_fingerprint_follows_what_latest_resolves_to(tmp_path):
    home = str(tmp_path / "home")
    reg = Registry(home)
    data = folder(tmp_path, "data", {"cars.csv": "1"})
    Store(home).register("data", str(data), "cars")
    latest = validate(spec_with(tmp_path, {"cars": {"type": "data_asset", "name": "cars"}}))
    pinned = validate(spec_with(tmp_path, {"cars": {"type": "data_asset", "name": "cars", "version": "1"}}))

    def fp(pipeline, run_id):
        return prepare(reg, pipeline, run_id)["steps"]["train"]["fingerprint"]

    before = fp(latest, "r1")
    assert fp(latest, "r2") == before  # nothing changed: reusable
    (data / "cars.csv").write_text("1")  # same content registered again: still version 1
    Store(home).register("data", str(data), "cars")
    assert fp(latest, "r3") == before
    (data / "cars.csv").write_text("2")
    Store(home).register("data", str(data), "cars")
    after = fp(latest, "r4")
    assert after != before  # "latest" now means version 2
    assert fp(pinned, "r5") == fp(pinned, "r6")
    plan = prepare(reg, latest, "r7")
    assert plan["steps"]["train"]["data_assets"]["cars"]["version"] == "2"


def test_an_unknown_asset_fails_submit_before_anything_is_recorded(tmp_path):
    home = tmp_path / "home"
    err = call_error(home, "submit", spec=spec_with(tmp_path, {"cars": {"type": "data_asset", "name": "cars"}}))
    assert err["class"] == "asset_not_found" and "register_data()" in err["message"]
    assert call(home, "list") == []
    assert not os.path.isdir(home / "runs") or os.listdir(home / "runs") == []


# -- with R: registering outputs and models ---------------------------------------------------------




TRAIN = """
d <- read.csv(file.path(Sys.getenv("AMLR_INPUT_cars"), "cars.csv"))
out <- Sys.getenv("AMLR_OUTPUT_model")
writeLines(as.character(sum(d$mpg)), file.path(out, "model.txt"))
"""


def train_spec(tmp_path, script=TRAIN, mode="ro_mount"):
    src = folder(tmp_path, "proj", {"train.R": script})
    return {"name": "cars", "steps": [{
        "name": "train", "script": "train.R", "source_dir": str(src), "outputs": ["model"],
        "inputs": {"cars": {"type": "data_asset", "name": "cars", "mode": mode}},
        "register": {"model": "cars-fit"},
    }]}


@requires_rscript
def test_a_run_reads_the_asset_registers_its_output_and_a_model_with_lineage(tmp_path):
    home = tmp_path / "home"
    data = folder(tmp_path, "data", {"cars.csv": "mpg\n21\n22\n"})
    call(home, "data_register", path=str(data), name="cars")
    run = call(home, "submit", spec=train_spec(tmp_path))
    assert wait(home, run["id"])["status"] == "Completed"
    fit = call(home, "data_get", name="cars-fit")
    assert fit["lineage"]["run"] == run["id"] and fit["lineage"]["data_assets"] == [{"name": "cars", "version": "1"}]
    with open(os.path.join(fit["path"], "model.txt")) as fh:
        assert fh.read().strip() == "43"
    model = call(home, "model_register", run=run["id"], step="train", output="model", name="cars-model",
                 tags={"team": "risk"})
    assert (model["name"], model["version"], model["azure_id"]) == ("cars-model", "1", None)
    [row] = call(home, "steps", run=run["id"])
    assert model["lineage"] == {"run": run["id"], "remote_run": None, "backend": "local", "step": "train",
                                "output": "model", "fingerprint": row["fingerprint"],
                                "data_assets": [{"name": "cars", "version": "1"}]}
    assert model["tags"] == {"team": "risk"}
    assert os.path.isfile(os.path.join(model["path"], "model.txt"))
    # Unchanged data: the step is reused and its output is already registered.
    again = call(home, "submit", spec=train_spec(tmp_path))
    assert wait(home, again["id"])["status"] == "Completed"
    assert call(home, "steps", run=again["id"])[0]["reused"] is True
    assert [a["version"] for a in call(home, "data_list", name="cars-fit")] == ["1"]
    # New data: "latest" moves, the step re-runs, a second version of its output.
    (data / "cars.csv").write_text("mpg\n1\n")
    call(home, "data_register", path=str(data), name="cars")
    third = call(home, "submit", spec=train_spec(tmp_path, mode="download"))
    assert wait(home, third["id"])["status"] == "Completed"
    assert call(home, "steps", run=third["id"])[0]["reused"] is False
    assert call(home, "data_get", name="cars-fit")["version"] == "2"
    assert call(home, "model_list")[0]["name"] == "cars-model"


@requires_rscript
def test_a_failed_step_registers_nothing_and_cannot_become_a_model(tmp_path):
    home = tmp_path / "home"
    call(home, "data_register", path=str(folder(tmp_path, "data", {"cars.csv": "mpg\n1\n"})), name="cars")
    failing = TRAIN + "quit(status = 3)\n"
    run = call(home, "submit", spec=train_spec(tmp_path, script=failing))
    assert wait(home, run["id"])["status"] == "Failed"
    assert call(home, "data_list", name="cars-fit") == []
    err = call_error(home, "model_register", run=run["id"], step="train", output="model", name="cars-model")
    assert err["class"] == "step_not_completed" and "Failed" in err["message"]
    assert call(home, "model_list") == []


def test_register_model_refuses_running_steps_and_unknown_outputs(tmp_path):
    home = tmp_path / "home"
    reg = Registry(str(home))
    out = folder(tmp_path, "out", {"model.txt": "m"})
    reg.insert_run({"id": "r1", "experiment": "e", "pipeline": "p", "backend": "local", "status": "Completed",
                    "run_dir": str(tmp_path)},
                   [{"name": "train", "status": "Completed", "outputs": {"model": str(out)}},
                    {"name": "score", "status": "Running", "outputs": {"scores": str(out)}}])
    err = call_error(home, "model_register", run="r1", step="score", output="scores", name="m")
    assert err["class"] == "step_not_completed" and "run_wait()" in err["message"]
    err = call_error(home, "model_register", run="r1", step="train", output="weights", name="m")
    assert err["class"] == "output_not_found" and "its outputs: model" in err["message"]
    err = call_error(home, "model_register", run="r1", step="train", output="model", name="my model")
    assert err["class"] == "invalid_asset_name"
    assert call(home, "model_list") == []
    assert call(home, "model_register", run="r1", step="train", output="model", name="m")["version"] == "1"
    import shutil

    shutil.rmtree(out)
    err = call_error(home, "model_register", run="r1", step="train", output="model", name="m2")
    assert err["class"] == "output_not_found" and "no longer on disk" in err["message"]
