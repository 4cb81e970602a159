"""The codes the locker holds: provisioned as hashes, kept across restarts, spent, pruned,
judged by a clock that may be wrong, compared in constant time; a damaged file set aside."""

import hashlib
import sqlite3
from datetime import UTC, datetime

import pytest

from agent.codes.held import KEEP_EXPIRED_S, HeldCodes
from agent.codes.message import MAX_PUT, parse_codes
from agent.locker.errors import Conflict, Invalid
from agent.storage.codes import CodeStore

NOW = 1_800_000_000.0
DOORS = {0: ("front",), 1: ("front", "rear"), 5: ("front",)}


def sha(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def iso(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")


def put(code: str, key: int = 5, order: int | str = 46188, expires: float = NOW + 3600, **kw):
    return {"key": key, "order_id": order, "sha256": sha(code), "expires_at": iso(expires), **kw}


class Wall:
    def __init__(self, at: float = NOW) -> None:
        self.at = at

    def __call__(self) -> float:
        return self.at


@pytest.fixture
def wall():
    return Wall()


@pytest.fixture
def store(tmp_path):
    opened = CodeStore(tmp_path / "codes.sqlite3")
    yield opened
    opened.close()


def held(store, wall, **kw) -> HeldCodes:
    return HeldCodes(store, DOORS, wall=wall, **kw)


def test_a_code_put_matches_its_text_only_and_survives_a_restart(tmp_path, store, wall):
    codes = held(store, wall)
    answer = codes.provision(parse_codes({"put": [put("YzQwNWNh"), put("other", key=0, order=7)]}))
    assert answer == {"held": 2, "put": 2, "dropped": 0}
    found = codes.match("YzQwNWNh")
    assert found is not None and (found.key, found.side, found.order_id) == (5, "front", 46188)
    assert codes.match("YzQwNWNi") is None
    assert codes.match("") is None
    store.close()
    again = held(CodeStore(tmp_path / "codes.sqlite3"), wall)
    assert again.match("YzQwNWNh") is not None and len(again) == 2
    text = (tmp_path / "codes.sqlite3").read_bytes()
    assert b"YzQwNWNh" not in text  # only hashes on disk


def test_drop_removes_and_a_second_put_of_one_hash_replaces_it(store, wall):
    codes = held(store, wall)
    codes.provision(parse_codes({"put": [put("a"), put("b", key=0, order=2)]}))
    answer = codes.provision(parse_codes({"drop": [sha("a"), sha("never-held")]}))
    assert answer["dropped"] == 1 and codes.match("a") is None
    codes.provision(parse_codes({"put": [put("b", key=0, order=2, expires=NOW + 10)]}))
    assert codes.match("b").expires_at == NOW + 10 and len(codes) == 1


def test_another_order_put_for_the_same_door_supersedes_the_older(store, wall):
    codes = held(store, wall)
    codes.provision(
        parse_codes({"put": [put("first", order=1), put("rear", key=1, rearload=True)]})
    )
    codes.provision(parse_codes({"put": [put("second", order=2), put("same-order", order=2)]}))
    assert codes.match("first").state == "superseded"
    assert codes.match("second").state == "held" and codes.match("same-order").state == "held"
    assert codes.match("rear").state == "held"  # another door


@pytest.mark.parametrize(
    ("entry", "where"),
    [
        (put("x", key=99), "put.1.key"),
        (put("x", key=0, rearload=True), "put.1.rearload"),
    ],
)
def test_a_code_for_a_door_the_locker_lacks_is_refused_whole(store, wall, entry, where):
    codes = held(store, wall)
    with pytest.raises(Invalid) as caught:
        codes.provision(parse_codes({"put": [put("fine"), entry]}))
    assert where in caught.value.errors
    assert len(codes) == 0  # nothing of the message was kept


@pytest.mark.parametrize(
    ("body", "where"),
    [
        ({"put": [{**put("x"), "sha256": "zz"}]}, "put.0.sha256"),
        ({"put": [{**put("x"), "expires_at": "2026-12-06T10:00:00"}]}, "put.0.expires_at"),
        ({"put": [{**put("x"), "key": "5"}]}, "put.0.key"),
        ({"put": [{**put("x"), "code": "plain"}]}, "put.0.code"),
        ({"drop": ["short"]}, "drop.0"),
        ({"put": [put(str(i)) for i in range(MAX_PUT + 1)]}, "put"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_a_malformed_message_names_the_field(body, where):
    with pytest.raises(Invalid) as caught:
        parse_codes(body)
    assert where in caught.value.errors


def test_the_store_is_bounded_expired_codes_go_first(store, wall):
    codes = held(store, wall, max_codes=3)
    codes.provision(parse_codes({"put": [put("old", key=0, order=1, expires=NOW - 1)]}))
    codes.provision(parse_codes({"put": [put("a", order=2), put("b", key=1, order=3)]}))
    codes.provision(parse_codes({"put": [put("c", key=1, order=4, rearload=True)]}))
    assert codes.match("old") is None and len(codes) == 3  # the expired one made room
    with pytest.raises(Conflict):
        codes.provision(parse_codes({"put": [put("d", key=0, order=5)]}))
    assert codes.match("d") is None and len(codes) == 3


def test_expiry_is_never_judged_before_the_last_time_the_clock_was_right(tmp_path, store, wall):
    codes = held(store, wall)
    codes.provision(parse_codes({"put": [put("late", expires=NOW + 100)]}))
    wall.at = NOW + 200
    codes.note_clock(True)  # synchronised: NOW + 200 is known to have passed
    store.close()
    # A power cut; the Pi boots at fake-hwclock's last save, an hour behind, unsure.
    wall.at = NOW - 3600
    again = held(CodeStore(tmp_path / "codes.sqlite3"), wall)
    again.note_clock(False)
    code = again.match("late")
    assert again.now() == (NOW + 200, False)
    assert again.expired(code)


def test_an_unsure_clock_ahead_of_the_floor_is_used(store, wall):
    codes = held(store, wall)
    codes.provision(parse_codes({"put": [put("x", expires=NOW + 100)]}))
    codes.note_clock(None)
    assert not codes.expired(codes.match("x"))
    wall.at = NOW + 101
    assert codes.expired(codes.match("x"))


def test_prune_forgets_expired_codes_but_not_one_being_opened(store, wall):
    codes = held(store, wall)
    codes.provision(parse_codes({"put": [put("a", expires=NOW + 5), put("b", key=0, order=2)]}))
    codes.mark(codes.match("a"), "opening")
    wall.at = NOW + 10
    assert codes.prune() == 0  # expired: kept a day, to be refused as expired
    wall.at = NOW + 10 + KEEP_EXPIRED_S
    assert codes.prune() == 0
    codes.mark(codes.match("a"), "spent")
    assert codes.prune() == 1 and codes.match("a") is None and codes.match("b") is not None


def test_a_code_opening_at_a_power_cut_is_spent_at_start(tmp_path, store, wall):
    codes = held(store, wall)
    codes.provision(parse_codes({"put": [put("a")]}))
    codes.mark(codes.match("a"), "opening")
    store.close()
    again = held(CodeStore(tmp_path / "codes.sqlite3"), wall)
    [code] = again.interrupted()
    assert code.order_id == 46188 and again.match("a").state == "spent"
    assert again.interrupted() == []


def test_a_damaged_file_is_set_aside_and_its_readable_codes_kept(tmp_path, store, wall):
    codes = held(store, wall)
    codes.provision(parse_codes({"put": [put(f"c{i}", key=i % 2, order=i) for i in range(2)]}))
    store.close()
    path = tmp_path / "codes.sqlite3"
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = bytearray(path.read_bytes())
    data[0:16] = b"not a database!!"
    path.write_bytes(bytes(data))
    again = CodeStore(path)
    assert again.notice and "set aside" in again.notice
    assert list(tmp_path.glob("codes.sqlite3.damaged-*"))
    HeldCodes(again, DOORS, wall=wall).provision(parse_codes({"put": [put("new")]}))
    again.close()


def test_match_compares_every_hash(store, wall, monkeypatch):
    codes = held(store, wall)
    codes.provision(parse_codes({"put": [put(f"c{i}", key=i % 2, order=i) for i in range(6)]}))
    seen = []
    import agent.codes.held as module

    real = module.hmac.compare_digest

    def counting(a, b):
        seen.append(b)
        return real(a, b)

    monkeypatch.setattr(module.hmac, "compare_digest", counting)
    assert codes.match("c0") is not None
    assert len(seen) == len(codes)  # no early exit at the match


def test_a_clock_known_right_is_believed_even_below_an_old_floor(tmp_path, store, wall):
    """A floor written by a clock that was wrong (synchronised to a bad server) must not
    expire every code for good: once the clock is known right it follows it down."""
    codes = held(store, wall)
    codes.provision(parse_codes({"put": [put("x", expires=NOW + 100)]}))
    wall.at = NOW + 10_000
    codes.note_clock(True)
    assert codes.expired(codes.match("x"))
    wall.at = NOW
    codes.note_clock(True)  # stepped back, and known right
    assert codes.now() == (NOW, True) and not codes.expired(codes.match("x"))
    codes.note_clock(False)
    assert codes.now() == (NOW, False)  # the floor followed it down, on disk too
    assert store.trusted() == NOW
