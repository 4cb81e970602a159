"""``GET /metrics``: the agent in Prometheus's text format (prometheus-client).

Names follow Prometheus's conventions (``locker_agent_`` prefix, base units,
``_total`` for counters, ``_seconds`` for time). Most figures are read from the
parts when scraped (a custom collector: nothing on the poll loop's hot path);
the few events counted as they happen (door changes, commands by result, uplink
answers by status) are plain counters. One registry per agent: no global state.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.hardware.bridge import Hardware
from agent.locker.door import DoorSeen
from agent.locker.locker import Locker
from agent.storage.outbox import Outbox
from agent.storage.store import StateStore
from agent.thermal.service import Thermal


class LinkState(Protocol):
    """One cloud link's health (``agent.cloud.link.LinkHealth``): up now, drops so far."""

    @property
    def up(self) -> bool: ...

    @property
    def drops(self) -> int: ...


class Parts(Protocol):
    """What the metrics read when scraped (``agent.app.Agent`` has them)."""

    outbox: Outbox
    store: StateStore
    locker: Locker
    hardware: Hardware
    thermal: Thermal | None

    @property
    def links(self) -> Mapping[str, LinkState]:
        """The cloud links by name: "uplink", and "commands" when configured."""
        ...


CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    """The agent's metrics; ``observe`` is a journal observer, ``command`` and
    ``uplink`` are called by the locker's edges and the uplink."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._doors = Counter(
            "locker_agent_door_changes",
            "Door changes queued for the cloud",
            ["side", "status"],
            registry=self.registry,
        )
        self._commands = Counter(
            "locker_agent_commands",
            "Cabinet commands by command and result",
            ["command", "result"],
            registry=self.registry,
        )
        self._uplink = Counter(
            "locker_agent_uplink_posts",
            "Feedback POSTs by the cloud's answer",
            ["status"],
            registry=self.registry,
        )
        self._codes = Counter(
            "locker_agent_pickup_codes",
            "Pickup codes read, by reader and outcome (opened, wrong, locked_out, ...)",
            ["reader", "outcome"],
            registry=self.registry,
        )

    def bind(self, agent: Parts) -> None:
        """Read the agent's parts when scraped."""
        self.registry.register(_Live(agent))

    def observe(self, entry: Any) -> None:
        """A journal observer: count a door change the cloud will hear."""
        if isinstance(entry, DoorSeen) and entry.report is not None:
            self._doors.labels(entry.side, entry.report).inc()

    def command(self, command: str, result: str) -> None:
        """A command finished: ``result`` is ``ok`` or the error type."""
        self._commands.labels(command, result).inc()

    def uplink(self, status: str) -> None:
        """The cloud answered a POST (an HTTP status, or ``unreachable``)."""
        self._uplink.labels(status).inc()

    def pickup(self, reader: str, outcome: str) -> None:
        """A pickup code was judged (``agent.codes.pickup.Outcome``)."""
        self._codes.labels(reader, outcome).inc()

    def render(self) -> bytes:
        """The text exposition of every metric."""
        return generate_latest(self.registry)


class _Live(Collector):
    """Figures read from the parts at scrape time."""

    def __init__(self, agent: Parts) -> None:
        self._agent = agent

    def collect(self) -> Iterator[Metric]:
        agent = self._agent
        stats = agent.outbox.stats()
        yield _gauge(
            "locker_agent_outbox_pending", "Messages waiting for the cloud", stats["pending"]
        )
        yield _gauge(
            "locker_agent_outbox_oldest_age_seconds",
            "Age of the oldest message waiting",
            stats["oldest_age_s"],
        )
        yield _gauge(
            "locker_agent_outbox_dead_letters",
            "Messages the cloud refused for good, kept aside",
            stats["dead"] or 0,
        )
        dead = CounterMetricFamily(
            "locker_agent_outbox_dead_letters_dropped",
            "Dead letters dropped, oldest first, to keep within the outbox's limits",
        )
        dead.add_metric([], stats["dead_dropped"])
        yield dead
        recovered = CounterMetricFamily(
            "locker_agent_storage_rows_recovered",
            "Rows read back from a damaged file, set aside and replaced",
            labels=["file"],
        )
        lost = CounterMetricFamily(
            "locker_agent_storage_rows_lost",
            "Rows of a damaged file that could not be read (at most)",
            labels=["file"],
        )
        stores = {"outbox": agent.outbox, "state": agent.store}
        if agent.thermal is not None:
            stores["thermal"] = agent.thermal.records
        for name, part in stores.items():
            got, gone = part.salvaged
            recovered.add_metric([name], got)
            lost.add_metric([name], gone)
        yield recovered
        yield lost
        yield _gauge(
            "locker_agent_commands_waiting",
            "Commands admitted and not yet answered",
            agent.locker.intake.waiting,
        )
        refused = CounterMetricFamily(
            "locker_agent_commands_refused_busy",
            "Commands refused at once (BUSY): too many waiting for a cabinet or in all",
        )
        refused.add_metric([], agent.locker.intake.refused)
        yield refused
        yield _gauge(
            "locker_agent_journal_waiting",
            "Changes waiting for the disk",
            agent.locker.journal.waiting,
        )
        alarms = GaugeMetricFamily("locker_agent_alarms_active", "Active alarms", labels=["alarm"])
        counts: dict[str, int] = {}
        for cabinet in agent.locker.cabinets.values():
            for alarm, _ in cabinet.alarms:
                counts[alarm] = counts.get(alarm, 0) + 1
        for alarm, n in sorted(counts.items()):
            alarms.add_metric([alarm], n)
        yield alarms
        counted = {
            count: CounterMetricFamily(name, text, labels=["bus", "board"])
            for count, name, text in _BOARD_COUNTS
        }
        rtt = CounterMetricFamily(
            "locker_agent_bus_round_trip_seconds",
            "Seconds from a status request to its reply, summed",
            labels=["bus", "board"],
        )
        bad = GaugeMetricFamily(
            "locker_agent_bus_garbage_bytes",
            "Bytes dropped as garbage on the current connection",
            labels=["bus"],
        )
        silent = GaugeMetricFamily(
            "locker_agent_bus_board_silent",
            "1 when a board does not answer",
            labels=["bus", "board"],
        )
        for name, bus in agent.hardware.kerong_buses().items():
            quiet = set(bus.silent_boards()) if bus.connected else set(bus.boards)
            for board in bus.boards:
                labels = [name, str(board)]
                for count, family in counted.items():
                    family.add_metric(labels, bus.counts[(board, count)])
                rtt.add_metric(labels, bus.rtt_s[board])
                silent.add_metric(labels, int(board in quiet))
            bad.add_metric([name], bus.bad_bytes)
        yield from (*counted.values(), rtt, bad, silent)
        yield from _links(agent.links)
        if agent.thermal is not None:
            yield from _thermal(agent.thermal)


# The Kerong driver's per-board counts (``KerongBus.counts[(board, count)]``) as counters.
_BOARD_COUNTS = (
    ("replies", "locker_agent_bus_replies", "Status replies"),
    ("timeouts", "locker_agent_bus_reply_timeouts", "Status requests not answered in time"),
    (
        "twins",
        "locker_agent_bus_twin_replies",
        "Second replies to one request: two boards on one address",
    ),
    (
        "late",
        "locker_agent_bus_late_replies",
        "Status replies that came after their timeout (each its own request's)",
    ),
    (
        "lost",
        "locker_agent_bus_lost_replies",
        "Replies known lost: a later request on the same wire was answered first",
    ),
    (
        "resyncs",
        "locker_agent_bus_resyncs",
        "Pauses for a reply past its window to drain before the board is asked again",
    ),
)


def _links(links: Mapping[str, LinkState]) -> Iterator[Metric]:
    """Each cloud link's state and its drops (an up that went down)."""
    up = GaugeMetricFamily(
        "locker_agent_cloud_link_up",
        "1 while the cloud link works (heard from, or taking feedback)",
        labels=["link"],
    )
    drops = CounterMetricFamily(
        "locker_agent_cloud_link_drops",
        "Times the cloud link went down after working",
        labels=["link"],
    )
    for name, link in sorted(links.items()):
        up.add_metric([name], int(link.up))
        drops.add_metric([name], link.drops)
    yield from (up, drops)


def _thermal(thermal: Thermal) -> Iterator[Metric]:
    """Each thermal cabinet's trusted temperature, sensor, outputs and food clock."""
    temp = GaugeMetricFamily(
        "locker_agent_cabinet_temperature_celsius",
        "Trusted temperature (absent while the sensor is not trusted)",
        labels=["key"],
    )
    sensor = GaugeMetricFamily(
        "locker_agent_thermal_sensor_ok",
        "1 when the sensor is trusted (absent while the loop is stalled: not known)",
        labels=["key"],
    )
    outputs = GaugeMetricFamily(
        "locker_agent_thermal_output_on", "1 while an output is on", labels=["key", "output"]
    )
    food = GaugeMetricFamily(
        "locker_agent_food_out_of_temperature_seconds",
        "Time the food in an occupied cabinet spent out of temperature",
        labels=["key"],
    )
    latched = GaugeMetricFamily(
        "locker_agent_thermal_latched",
        "1 while a safety shut-off holds the unit off until a reset",
        labels=["key", "alarm"],
    )
    stalled = thermal.stalled() is not None  # temperatures and outputs unknown
    for key, unit in thermal.units.items():
        labels = [str(key)]
        if unit.verdict.temperature_c is not None and not stalled:
            temp.add_metric(labels, unit.verdict.temperature_c)
        if not stalled:
            sensor.add_metric(labels, int(unit.verdict.status == "ok"))
            outputs.add_metric([str(key), "heater"], int(thermal.outputs.heating(key)))
            outputs.add_metric([str(key), "cooler"], int(thermal.outputs.cooler_on(key)))
        food.add_metric(labels, unit.food.out_s)
        for alarm in unit.latches:
            latched.add_metric([str(key), alarm], 1)
    compressors = GaugeMetricFamily(
        "locker_agent_compressor_on", "1 while a shared compressor runs", labels=["compressor"]
    )
    for name in thermal.compressors:
        compressors.add_metric([name], int(thermal.outputs.compressor_on(name)))
    age = GaugeMetricFamily(
        "locker_agent_thermal_round_age_seconds",
        "Seconds since the thermal loop last completed a round",
        value=thermal.liveness.age_s(),
    )
    stall = GaugeMetricFamily(
        "locker_agent_thermal_stalled", "1 while the thermal loop is stalled", value=int(stalled)
    )
    yield from (temp, sensor, outputs, food, compressors, latched, age, stall)


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, value=value)
