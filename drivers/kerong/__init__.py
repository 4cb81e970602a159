"""Kerong KR-CU16 lock boards on RS-485: the codec, the bus, their config section.

Where things live (each module imports only the ones above it):

    codec.py        frames: encode, decode, a parser that resynchronises after garbage
    config.py       the config sections: KerongBusConfig, KerongDoorWiring
    lock.py         PriorityLock: waiters by priority, then arrival
    ../serialport.py SerialTransport: the lean reader (add_reader + os.read), open_port
    link.py         Link: the port kept open, the asyncio protocol, reopen with backoff,
                    the silent-link check; BusUnavailable
    timing.py       ReplyClock: the reply timeout, from the port's kind and the replies seen;
                    the pace at rest (REST_INTERVAL_S, ACTIVE_HOLD_S)
    expectation.py  Expectation: what one write may bring back, registered before it
    twins.py        TwinWatch: two boards on one address, told and held
    matcher.py      ReplyMatcher: which write a frame answers (a read, late or not, an
                    unlock, a sweep's board; twin, stray, echo; a reply known lost)
    transaction.py  Transactions: one request in flight, commands before polls, a timed
                    reply, the metrics; BoardTimeout
    pulse.py        Pulser: unlocks inside the power budget, staggered on the wire
    status.py       StatusTracker: reads decoded and confirmed, silence with hysteresis,
                    on_status and on_health; BoardStatus
    sweep.py        BusSweep: the bus-wide status at rest, probed board by board
    poller.py       Poller: when each board is read
    bus.py          KerongBus: builds and wires the parts, start/close; what callers import
"""
