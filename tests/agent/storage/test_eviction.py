"""What a full outbox drops among alarms: an ended episode whole, then a clearing of
an alarm sent already, then an active alarm, whose clearing then never goes alone."""

import pytest

from agent.storage.eviction import raise_of
from agent.storage.outbox import Outbox


@pytest.fixture
def small(tmp_path):
    boxes = []

    def make(rows):
        boxes.append(Outbox(tmp_path / f"o{len(boxes)}.sqlite3", max_rows=rows))
        return boxes[-1]

    yield make
    for box in boxes:
        box.close()


def alarm(box, event, key, detail=None):
    return box.append("alarm", event, [{"key": key, "front_status": "open"}], detail)


def pending(box):
    return [(m.event, m.cabinets[0]["key"]) for m in box.pending()]


@pytest.mark.parametrize(
    ("event", "clears"),
    [
        ("door_forced_open_cleared", "door_forced_open"),
        ("food_time_exceeded_cleared", "food_time_exceeded"),
        ("board_online", "board_offline"),
        ("bus_online", "bus_offline"),
        ("door_forced_open", None),
        ("board_offline", None),
        ("door_changed", None),
    ],
)
def test_what_a_clearing_clears(event, clears):
    assert raise_of(event) == clears


def test_alarms_go_after_door_changes(small):
    box = small(3)
    alarm(box, "door_forced_open", 1)
    box.append("change", "door_changed", [{"key": 2, "front_status": "open"}])
    box.append("change", "door_changed", [{"key": 3, "front_status": "open"}])
    box.append("change", "door_changed", [{"key": 4, "front_status": "open"}])
    assert pending(box) == [("door_forced_open", 1), ("door_changed", 3), ("door_changed", 4)]


def test_an_ended_alarm_goes_with_its_clearing_first(small):
    box = small(3)
    alarm(box, "door_left_open", 2)  # active: kept
    alarm(box, "door_forced_open", 1)
    alarm(box, "door_forced_open_cleared", 1)
    alarm(box, "lock_jammed", 3)  # room for one: the ended episode goes, both rows
    assert pending(box) == [("door_left_open", 2), ("lock_jammed", 3)]
    assert box.stats()["pending"] == 2
    assert box.stats()["dropped"] == {"alarm": 2}


def test_a_clearing_of_an_alarm_sent_already_goes_before_an_active_alarm(small):
    box = small(2)
    alarm(box, "door_forced_open_cleared", 1)  # its alarm reached the cloud before
    alarm(box, "door_left_open", 2)
    alarm(box, "lock_jammed", 3)
    assert pending(box) == [("door_left_open", 2), ("lock_jammed", 3)]


def test_an_active_alarm_dropped_takes_its_later_clearing_along(small):
    box = small(2)
    alarm(box, "door_forced_open", 1)
    alarm(box, "door_left_open", 2)
    alarm(box, "lock_jammed", 3)  # only active alarms: the oldest goes, noted
    assert pending(box) == [("door_left_open", 2), ("lock_jammed", 3)]
    box.ack([m.seq for m in box.pending()])  # the cloud is back
    assert alarm(box, "door_forced_open_cleared", 1) is None  # never heard its alarm
    alarm(box, "door_left_open_cleared", 2)  # heard it: its clearing goes
    assert pending(box) == [("door_left_open_cleared", 2)]
    assert box.stats()["dropped"] == {"alarm": 2}
    box.close()
    reopened = Outbox(box.path, max_rows=2)  # the note is on disk, like the rows
    assert reopened.stats()["pending"] == 1
    reopened.close()


def test_an_alarm_dropped_to_make_room_for_its_own_clearing_goes_with_it(small):
    box = small(2)
    alarm(box, "door_forced_open", 1)
    alarm(box, "door_left_open", 2)
    assert alarm(box, "door_forced_open_cleared", 1) is None
    assert pending(box) == [("door_left_open", 2)]
    assert box.stats()["pending"] == 1


def test_an_alarm_raised_again_is_heard_so_its_clearing_goes(small):
    box = small(2)
    alarm(box, "door_forced_open", 1)
    alarm(box, "door_left_open", 2)
    alarm(box, "lock_jammed", 3)  # door_forced_open on 1 dropped unsent
    box.ack([m.seq for m in box.pending()])
    alarm(box, "door_forced_open", 1)  # raised again (after a restart): sent this time
    alarm(box, "door_forced_open_cleared", 1)
    assert pending(box) == [("door_forced_open", 1), ("door_forced_open_cleared", 1)]


def test_a_board_back_online_is_paired_by_bus_and_board(small):
    box = small(3)
    alarm(box, "board_offline", 1, {"bus": "main", "board": 1})
    alarm(box, "board_offline", 1, {"bus": "main", "board": 2})
    alarm(box, "board_online", 1, {"bus": "main", "board": 2})
    alarm(box, "door_forced_open", 9)  # board 2's episode ended: it goes, board 1's stays
    assert [(m.event, (m.detail or {}).get("board")) for m in box.pending()] == [
        ("board_offline", 1),
        ("door_forced_open", None),
    ]


def test_a_bus_event_pairs_by_its_bus_whatever_cabinets_it_carried(small):
    """bus_offline of a bus whose doors were never known carries no cabinet; its
    bus_online may carry them: dropped unsent, the one takes the other along (ADR 0019)."""
    box = small(2)
    box.append("alarm", "bus_offline", [], {"bus": "main", "boards": [0]})
    alarm(box, "door_left_open", 2)
    alarm(box, "lock_jammed", 3)  # bus_offline dropped unsent, noted
    box.ack([m.seq for m in box.pending()])
    assert alarm(box, "bus_online", 0, {"bus": "main", "boards": [0]}) is None


def test_a_cabinet_alarm_with_no_door_known_pairs_by_its_key(small):
    """A thermal alarm of a cabinet whose doors are unknown carries no entry but the
    event's ``key``; its clearing, sent once a door is known, is its pair."""
    box = small(2)
    box.append("alarm", "temperature_out_of_band", [], {"key": 5})
    box.append("alarm", "temperature_out_of_band", [], {"key": 6})
    alarm(box, "lock_jammed", 3)  # cabinet 5's alarm dropped unsent, noted
    box.ack([m.seq for m in box.pending()])
    assert alarm(box, "temperature_out_of_band_cleared", 6) is not None  # 6 was heard
    assert alarm(box, "temperature_out_of_band_cleared", 5) is None  # 5 was not


def test_a_no_door_alarm_carrying_the_lockers_cabinets_pairs_by_its_own_key(small):
    """As the journal builds it (ADR 0019): a cabinet with no door known is named by the
    event's ``key`` and carries the locker's known cabinets. Its clearing is not the
    pair of the first of those cabinets' own alarm: that alarm, still active, would be
    dropped as an ended episode and the cloud never hear it."""
    box = small(3)
    known = [{"key": 1, "front_status": "closed"}, {"key": 2, "front_status": "closed"}]
    alarm(box, "temperature_out_of_band", 1)  # cabinet 1's, active
    box.append("alarm", "temperature_out_of_band_cleared", known, {"key": 5})  # 5's, sent before
    alarm(box, "lock_jammed", 3)
    alarm(box, "door_left_open", 4)  # full: cabinet 5's lone clearing goes (rule 2)
    events = [(m.event, (m.detail or {}).get("key", m.cabinets[0]["key"])) for m in box.pending()]
    assert events == [
        ("temperature_out_of_band", 1),
        ("lock_jammed", 3),
        ("door_left_open", 4),
    ]


def test_a_no_door_alarm_dropped_unsent_takes_its_own_clearing_along(small):
    """Cabinet 5's raise (no door known, the locker's cabinets carried) dropped unsent is
    noted by its own key: its clearing is dropped too, cabinet 1's is not."""
    box = small(2)
    known = [{"key": 1, "front_status": "closed"}]
    box.append("alarm", "temperature_out_of_band", known, {"key": 5})
    alarm(box, "temperature_out_of_band", 1)
    alarm(box, "lock_jammed", 3)  # cabinet 5's raise dropped unsent, noted
    box.ack([m.seq for m in box.pending()])
    assert alarm(box, "temperature_out_of_band_cleared", 1) is not None  # 1 was heard
    assert alarm(box, "temperature_out_of_band_cleared", 5) is None  # 5 was not
