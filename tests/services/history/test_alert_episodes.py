"""Alert episodes in the history store: idempotent saves, acknowledgements, the audit trail."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.history.store import HistoryStore

T0 = datetime(2026, 11, 21, 22, 0, tzinfo=UTC)


def episode(started: datetime, resolved: datetime | None = None, room: str = "north",
            ident: str = "north:long_wait:999", message: str = "999: a caller waits 75 s",
            ) -> dict[str, object]:
    return {"id": ident, "room": room, "rule": ident.split(":")[1], "subject": "999",
            "severity": "critical", "started_at": started, "resolved_at": resolved,
            "message": message, "figures": {"value": 75.0, "threshold": 60.0}}


@pytest.fixture
def store():
    opened = HistoryStore.open("sqlite:///:memory:")
    yield opened
    opened.close()


def _times(rows, name="started_at"):
    return [r[name] for r in rows]


def test_saving_the_same_transitions_twice_keeps_one_episode(store):
    firing = episode(T0)
    resolved = episode(T0, resolved=T0 + timedelta(minutes=3), message="resolved: it's over")
    for _ in range(2):
        store.save_alert_episodes([firing, resolved])
    rows = store.alert_history("north", T0 - timedelta(hours=1), T0 + timedelta(hours=1))
    assert len(rows) == 1
    assert rows[0]["resolved_at"] == "2026-11-21T22:03:00Z"
    assert rows[0]["message"] == "resolved: it's over"
    assert rows[0]["figures"] == {"value": 75.0, "threshold": 60.0}


def test_a_replayed_firing_transition_does_not_reopen_a_resolved_episode(store):
    store.save_alert_episodes([episode(T0, resolved=T0 + timedelta(minutes=3))])
    store.save_alert_episodes([episode(T0)])  # an API replica replaying the topic
    rows = store.alert_history("north", T0, T0 + timedelta(hours=1))
    assert rows[0]["resolved_at"] == "2026-11-21T22:03:00Z"


def test_a_refire_after_resolve_is_a_new_episode_with_its_own_acknowledgement(store):
    store.save_alert_episodes([episode(T0, resolved=T0 + timedelta(minutes=3))])
    again = T0 + timedelta(minutes=10)
    store.save_alert_episodes([episode(again)])
    acked = store.acknowledge_alert("north", "north:long_wait:999", again, "a.khan",
                                    "two more handlers called in", T0 + timedelta(minutes=11))
    assert acked is not None and acked["acknowledged_by"] == "a.khan"
    rows = store.alert_history("north", T0, T0 + timedelta(hours=1))
    assert _times(rows) == ["2026-11-21T22:00:00Z", "2026-11-21T22:10:00Z"]
    assert [r["acknowledged_by"] for r in rows] == [None, "a.khan"]
    assert rows[1]["note"] == "two more handlers called in"
    assert rows[1]["acknowledged_at"] == "2026-11-21T22:11:00Z"


def test_the_first_acknowledgement_stays_and_saves_never_erase_it(store):
    store.save_alert_episodes([episode(T0)])
    first = store.acknowledge_alert("north", "north:long_wait:999", T0, "a.khan", "seen",
                                    T0 + timedelta(minutes=1))
    second = store.acknowledge_alert("north", "north:long_wait:999", T0, "b.lee", "me too",
                                     T0 + timedelta(minutes=2))
    assert first is not None and second is not None
    assert (second["acknowledged_by"], second["note"]) == ("a.khan", "seen")
    store.save_alert_episodes([episode(T0, resolved=T0 + timedelta(minutes=5))])
    row = store.alert_history("north", T0, T0 + timedelta(hours=1))[0]
    assert (row["acknowledged_by"], row["resolved_at"]) == ("a.khan", "2026-11-21T22:05:00Z")


def test_acknowledging_an_unknown_episode_or_another_rooms_gives_none(store):
    store.save_alert_episodes([episode(T0)])
    assert store.acknowledge_alert("north", "north:long_wait:999", T0 + timedelta(seconds=1),
                                   "a.khan", None, T0) is None
    assert store.acknowledge_alert("south", "north:long_wait:999", T0, "a.khan", None,
                                   T0) is None


def test_history_holds_episodes_overlapping_the_range_oldest_first(store):
    store.save_alert_episodes([
        episode(T0, resolved=T0 + timedelta(minutes=5)),                      # before
        episode(T0 + timedelta(minutes=50), ident="north:staffing_gap:room"),  # still firing
        episode(T0 + timedelta(minutes=20), resolved=T0 + timedelta(minutes=40),
                ident="north:abandonment_above_standard:101"),                 # overlaps
        episode(T0 + timedelta(minutes=30), room="south", ident="south:long_wait:999"),
        episode(T0 + timedelta(hours=3), ident="north:failure_demand_high:101"),  # after
    ])
    rows = store.alert_history("north", T0 + timedelta(minutes=30), T0 + timedelta(hours=2))
    assert [r["rule"] for r in rows] == ["abandonment_above_standard", "staffing_gap"]
    assert rows[1]["resolved_at"] is None


def test_sub_second_start_times_sort_in_time_order(store):
    store.save_alert_episodes([episode(T0 + timedelta(microseconds=500_000)),
                               episode(T0, ident="north:staffing_gap:room")])
    rows = store.alert_history("north", T0, T0 + timedelta(seconds=1))
    assert _times(rows) == ["2026-11-21T22:00:00Z", "2026-11-21T22:00:00.5Z"]


def test_acknowledgements_are_shared_by_two_connections_to_one_file(tmp_path):
    url = f"sqlite:///{tmp_path / 'history.db'}"
    with HistoryStore.open(url) as one, HistoryStore.open(url) as two:
        one.save_alert_episodes([episode(T0)])
        two.acknowledge_alert("north", "north:long_wait:999", T0, "a.khan", "seen", T0)
        assert one.alert_history("north", T0, T0 + timedelta(hours=1))[0]["note"] == "seen"
