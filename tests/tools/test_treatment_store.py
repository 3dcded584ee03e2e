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
