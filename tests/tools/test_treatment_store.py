"""The custom treatments file: readable ids, read-modify-write under a lock, atomic renames.

The concurrency and crash tests start real OS processes (``python -c``) against
one file: ten writers at once must all land, and a writer that dies between
writing its temp file and renaming it must leave the old file whole.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from filelock import FileLock

from cvm.tools.treatment_store import TreatmentStore, document, slug_id
from cvm.utils.config import CustomTreatmentSpec, load_custom_treatments
from cvm.utils.errors import ConfigError, UsageError

REPO = Path(__file__).resolve().parents[2]


def spec(name: str = "Personalized Video Message", **fields: object) -> CustomTreatmentSpec:
    return CustomTreatmentSpec.model_validate({"display_name": name, "channel": "email", **fields})


@pytest.fixture
def store(tmp_path: Path) -> TreatmentStore:
    return TreatmentStore(tmp_path / "config" / "custom_treatments.json")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("Personalized Video Message", "custom_personalized_video_message"),
        ("20% Discount on Their Next Bill", "custom_20_discount_on_their_next_bill"),
        ("Café Crème Voucher", "custom_cafe_creme_voucher"),
        ("iPhone Trade-In Offer", "custom_iphone_trade_in_offer"),
        ("!!!", "custom_treatment"),
        ("word " * 40, "custom_" + ("word_" * 11)[:-1]),
        ("x" * 80, "custom_" + "x" * 56),
    ],
)
def test_ids_are_readable_snake_case(name: str, expected: str) -> None:
    assert slug_id(name) == expected
    assert len(slug_id(name)) <= 63


class TestChanges:
    def test_a_missing_file_means_no_custom_treatments(self, store: TreatmentStore) -> None:
        assert store.load() == {}

    def test_add_uses_the_readable_id_and_a_numeric_suffix_on_clashes(self, store: TreatmentStore) -> None:
        ids = [store.add(spec()).id for _ in range(3)]
        assert ids == ["custom_personalized_video_message", "custom_personalized_video_message_2", "custom_personalized_video_message_3"]
        assert sorted(store.load()) == sorted(ids)

    def test_reserved_ids_are_never_used(self, store: TreatmentStore) -> None:
        added = store.add(spec("Loyalty App"), reserved={"custom_loyalty_app"})
        assert added.id == "custom_loyalty_app_2"

    def test_a_requested_id_is_used_and_a_taken_one_refused(self, store: TreatmentStore) -> None:
        assert store.add(spec(), requested_id="custom_video").id == "custom_video"
        with pytest.raises(UsageError, match="id custom_video is already used"):
            store.add(spec(), requested_id="custom_video")
        with pytest.raises(UsageError, match="already used"):
            store.add(spec(), reserved={"retention_email"}, requested_id="retention_email")

    def test_the_file_holds_the_prototype_shape_and_loads_back_identical(self, store: TreatmentStore) -> None:
        added = store.add(spec(description="A video", purpose="service_update", constraints={"max_per_day": 10, "cost_per_contact_pounds": 2.5, "priority": 2}))
        on_disk = json.loads(store.path.read_text())
        assert on_disk == {added.id: document(added)}
        assert on_disk[added.id]["constraints"] == {"max_per_day": 10, "cost_per_contact_pounds": 2.5, "priority": 2}
        assert load_custom_treatments(store.path) == {added.id: added}
        assert added.source == "custom" and added.purpose == "service_updates"

    def test_update_replaces_one_treatment(self, store: TreatmentStore) -> None:
        first, second = store.add(spec()), store.add(spec("Other"))
        old, new = store.update(first.id, lambda t: spec(t.display_name, constraints={"max_per_day": 3}))
        assert (old.max_per_day, new.max_per_day) == (None, 3)
        assert store.load() == {first.id: new, second.id: second}

    def test_remove(self, store: TreatmentStore) -> None:
        first, second = store.add(spec()), store.add(spec("Other"))
        assert store.remove(first.id) == first
        assert store.load() == {second.id: second}

    @pytest.mark.parametrize("action", ["update", "remove"])
    def test_an_unknown_id_is_a_usage_error_naming_the_known_ones(self, store: TreatmentStore, action: str) -> None:
        store.add(spec())
        before = store.path.read_bytes()
        with pytest.raises(UsageError, match="no custom treatment 'nope' .* custom_personalized_video_message"):
            store.update("nope", lambda t: spec()) if action == "update" else store.remove("nope")
        assert store.path.read_bytes() == before


class TestBrokenFile:
    """A file that does not load is an error naming it, and no change is ever written over it."""

    @pytest.mark.parametrize(
        ("content", "phrase"),
        [
            ('{"custom_x": {"display_name": "X", ', "not valid JSON"),
            ('["not", "a", "mapping"]', "must be a JSON object"),
            ('{"custom_x": {"display_name": "X"}}', "custom_x.channel"),
        ],
    )
    def test_load_and_every_change_fail_and_leave_the_file_alone(self, store: TreatmentStore, content: str, phrase: str) -> None:
        store.path.parent.mkdir(parents=True)
        store.path.write_text(content)
        for change in (store.load, lambda: store.add(spec()), lambda: store.remove("custom_x"), lambda: store.update("custom_x", lambda t: spec())):
            with pytest.raises(ConfigError, match=phrase) as caught:
                change()
            assert str(store.path) in str(caught.value)
        assert store.path.read_text() == content

    def test_a_held_lock_times_out_with_a_clear_error(self, store: TreatmentStore) -> None:
        store.path.parent.mkdir(parents=True)
        impatient = TreatmentStore(store.path, lock_timeout=0.2)
        with FileLock(f"{store.path}.lock"):
            with pytest.raises(ConfigError, match="locked by another process"):
                impatient.add(spec())
        assert impatient.add(spec()).id == "custom_personalized_video_message"

    def test_a_folder_where_the_file_should_be_is_a_clear_error(self, store: TreatmentStore) -> None:
        store.path.mkdir(parents=True)
        for change in (store.load, lambda: store.add(spec())):
            with pytest.raises(ConfigError, match="cannot be read .*check that its folder exists and is writable") as caught:
                change()
            assert str(store.path) in str(caught.value)
        assert not lock_file(store.path).exists()


def lock_file(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


class TestLockFile:
    """The lock file is deleted while the lock is still held, however the change ends: no ``.lock`` is left behind."""

    def test_none_after_each_change(self, store: TreatmentStore) -> None:
        added = store.add(spec())
        assert not lock_file(store.path).exists()
        store.update(added.id, lambda t: spec(t.display_name, constraints={"max_per_day": 3}))
        assert not lock_file(store.path).exists()
        store.remove(added.id)
        assert not lock_file(store.path).exists()

    def test_none_after_a_refused_change(self, store: TreatmentStore) -> None:
        added = store.add(spec())
        before = store.path.read_bytes()

        def refuse(_: object) -> CustomTreatmentSpec:
            raise UsageError("constraints.max_per_day: -1 is outside 0 to 10,000,000")

        for change in (lambda: store.update(added.id, refuse), lambda: store.remove("custom_nope"),
                       lambda: store.add(spec(), requested_id=added.id)):
            with pytest.raises(UsageError):
                change()
            assert not lock_file(store.path).exists()
        assert store.path.read_bytes() == before

    def test_none_after_a_write_the_file_system_refuses(self, store: TreatmentStore) -> None:
        # A real write error after the lock is taken: the writer's file-size limit (RLIMIT_FSIZE, which
        # binds root too) makes the kernel refuse the new content with EFBIG, as a full disk would.
        kept = store.add(spec("Kept", description="x" * 400))
        before = store.path.read_bytes()
        limit = str(len(before) // 2)
        failed = subprocess.run(_python(FILE_TOO_LARGE, str(store.path), limit), cwd=REPO, capture_output=True, text=True, timeout=60)
        assert failed.returncode == 0, failed.stderr
        assert failed.stdout.startswith(f"{store.path}: cannot be written (File too large); check that its folder exists")
        assert store.path.read_bytes() == before and store.load() == {kept.id: kept}
        assert sorted(p.name for p in store.path.parent.iterdir()) == ["custom_treatments.json"]  # no lock, no temp file


class TestSymlink:
    """A store path that is a symlink is written through: the real file changes, the link stays a link."""

    def test_a_link_into_a_regular_file_is_a_clear_error(self, store: TreatmentStore, tmp_path: Path) -> None:
        blocker = tmp_path / "blocker"
        blocker.write_text("not a folder")
        store.path.parent.mkdir(parents=True)
        store.path.symlink_to(blocker / "custom_treatments.json")
        with pytest.raises(ConfigError, match="cannot create its folder") as caught:
            store.add(spec())
        assert "\n" not in str(caught.value)
        assert sorted(p.name for p in store.path.parent.iterdir()) == ["custom_treatments.json"]
        assert store.path.is_symlink() and blocker.read_text() == "not a folder"

    def test_a_link_is_written_through_and_kept(self, store: TreatmentStore, tmp_path: Path) -> None:
        real = tmp_path / "shared" / "treatments.json"
        real.parent.mkdir()
        store.path.parent.mkdir(parents=True)
        store.path.symlink_to(real)
        first = store.add(spec())
        assert store.path.is_symlink() and store.path.resolve() == real
        assert json.loads(real.read_text()) == {first.id: document(first)}
        second = store.add(spec("Other"))
        store.update(first.id, lambda t: spec(t.display_name, constraints={"max_per_day": 3}))
        assert store.path.is_symlink() and store.path.readlink() == real
        assert sorted(json.loads(real.read_text())) == sorted([first.id, second.id])
        assert json.loads(real.read_text())[first.id]["constraints"]["max_per_day"] == 3
        # the temp file and the lock live beside the real file, and neither is left behind
        assert sorted(p.name for p in real.parent.iterdir()) == ["treatments.json"]
        assert sorted(p.name for p in store.path.parent.iterdir()) == ["custom_treatments.json"]

    def test_a_relative_link_and_a_chain_of_links(self, store: TreatmentStore, tmp_path: Path) -> None:
        (tmp_path / "data").mkdir()
        store.path.parent.mkdir(parents=True)
        hop = tmp_path / "data" / "hop.json"
        hop.symlink_to("real.json")  # relative, into the same folder
        store.path.symlink_to(Path("..") / "data" / "hop.json")
        added = store.add(spec())
        assert store.path.is_symlink() and hop.is_symlink()
        assert json.loads((tmp_path / "data" / "real.json").read_text()) == {added.id: document(added)}
        assert store.load() == {added.id: added}

    def test_a_dangling_link_creates_its_target(self, store: TreatmentStore, tmp_path: Path) -> None:
        real = tmp_path / "later" / "treatments.json"
        store.path.parent.mkdir(parents=True)
        store.path.symlink_to(real)
        added = store.add(spec())
        assert store.path.is_symlink() and json.loads(real.read_text()) == {added.id: document(added)}

    def test_two_links_to_one_file_share_one_lock(self, tmp_path: Path) -> None:
        real = tmp_path / "real.json"
        one, two = tmp_path / "one.json", tmp_path / "two.json"
        one.symlink_to(real)
        two.symlink_to(real)
        impatient = TreatmentStore(two, lock_timeout=0.2)
        with FileLock(f"{real}.lock"):  # what a writer through ``one`` holds
            with pytest.raises(ConfigError, match=f"{two} is locked by another process \\({real}.lock\\)"):
                impatient.add(spec())
        TreatmentStore(one).add(spec("First"))
        impatient.add(spec("Second"))
        assert sorted(TreatmentStore(real).load()) == ["custom_first", "custom_second"]


# A writer in its own OS process: waits for the "go" file so all start together, then adds one treatment.
WRITER = r"""
import sys, time
from pathlib import Path
from cvm.tools.treatment_store import TreatmentStore
from cvm.utils.config import CustomTreatmentSpec

path, go, n = sys.argv[1:4]
while not Path(go).exists():
    time.sleep(0.005)
added = TreatmentStore(path).add(CustomTreatmentSpec(display_name="Personalized Video Message", channel="email",
                                                     description=f"writer {n}"))
print(added.id)
"""

# A writer that dies (os._exit, no cleanup, no finally) after writing its temp file, before the rename.
CRASHER = r"""
import os, sys
from cvm.tools.treatment_store import TreatmentStore
from cvm.utils.config import CustomTreatmentSpec

os.replace = lambda src, dst: os._exit(9)
TreatmentStore(sys.argv[1]).add(CustomTreatmentSpec(display_name="Never Lands", channel="sms"))
"""


# A writer whose files may not grow past argv[2] bytes: SIGXFSZ ignored, so the write fails with EFBIG instead.
FILE_TOO_LARGE = r"""
import resource, signal, sys
from cvm.tools.treatment_store import TreatmentStore
from cvm.utils.config import CustomTreatmentSpec
from cvm.utils.errors import ConfigError

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[2]), int(sys.argv[2])))
try:
    TreatmentStore(sys.argv[1]).add(CustomTreatmentSpec(display_name="Never Lands", channel="sms"))
except ConfigError as exc:
    print(exc)
"""


def _python(*args: str) -> list[str]:
    return [sys.executable, "-c", *args]


@pytest.mark.slow
def test_ten_processes_adding_at_once_all_land(store: TreatmentStore, tmp_path: Path) -> None:
    store.add(spec("Existing"))
    go = tmp_path / "go"
    writers = [
        subprocess.Popen(_python(WRITER, str(store.path), str(go), str(n)), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(10)
    ]
    time.sleep(0.5)  # let every interpreter start and wait at the barrier
    go.touch()
    outputs = [w.communicate(timeout=120) for w in writers]
    assert [w.returncode for w in writers] == [0] * 10, [err for _, err in outputs]
    ids = sorted(out.strip() for out, _ in outputs)
    expected = ["custom_personalized_video_message"] + [f"custom_personalized_video_message_{n}" for n in range(2, 11)]
    assert ids == sorted(expected)
    stored = store.load()
    assert sorted(stored) == sorted(["custom_existing", *expected])
    assert sorted(t.description for tid, t in stored.items() if tid != "custom_existing") == sorted(f"writer {n}" for n in range(10))


@pytest.mark.slow
def test_a_crash_between_write_and_rename_leaves_the_old_file_intact(store: TreatmentStore) -> None:
    kept = store.add(spec("Kept"))
    before = store.path.read_bytes()
    crashed = subprocess.run(_python(CRASHER, str(store.path)), cwd=REPO, capture_output=True, text=True, timeout=60)
    assert crashed.returncode == 9, crashed.stderr
    leftovers = list(store.path.parent.glob(f".{store.path.name}.*.tmp"))
    assert len(leftovers) == 1 and "Never Lands" in leftovers[0].read_text()  # it did write, then died
    assert store.path.read_bytes() == before
    assert store.load() == {kept.id: kept}
    # The dead writer's lock died with it: the next change goes through.
    assert store.add(spec("Next")).id == "custom_next"
    assert sorted(store.load()) == ["custom_kept", "custom_next"]
