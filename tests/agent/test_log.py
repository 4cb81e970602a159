"""Every line of the process goes through one masked, rate-limited renderer."""

import asyncio
import json
import logging

import pytest
import structlog
from aiohttp import web
from aiohttp.http_exceptions import BadStatusLine
from pydantic import SecretStr

from agent import log
from agent.api.server import LocalApi

TOKEN = "tok-Zq8xW2"
# What a careless client sends: a request line aiohttp cannot parse (a space, a NUL
# in the query) and an Authorization header with a control character.
MALFORMED = [
    f"GET /api/lockers/cabinets?secret_token={TOKEN} x HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    f"GET /api/lockers/cabinets?secret_token={TOKEN}\x00 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
    f"GET /api/lockers/cabinets HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    f"Authorization: Bearer {TOKEN}\x01\r\n\r\n",
]


class Stderr:
    """What the process wrote to stderr during the test, accumulated."""

    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self._capsys = capsys
        self._text = ""

    def getvalue(self) -> str:
        self._text += self._capsys.readouterr().err
        return self._text


@pytest.fixture
def out(capsys):
    """``log.configure`` as the agent runs it (JSON off a tty, to stderr); undone after."""
    saved = structlog.get_config()
    root = logging.getLogger()
    level = root.level
    log.configure(json=True)
    yield Stderr(capsys)
    log.reset()
    structlog.configure(**saved)
    root.setLevel(level)


def lines(buf: Stderr) -> list[dict]:
    """Every line written so far, each of which must be one JSON object."""
    return [json.loads(line) for line in buf.getvalue().splitlines()]


async def send_raw(port: int, raw: str) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw.encode("latin-1"))
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


def test_secrets_are_masked_in_any_string_of_any_line(out):
    structlog.get_logger("agent.test").warning(
        "calling",
        url=f"http://x/api?secret_token={TOKEN}&a=1",
        header=f"Authorization: Bearer {TOKEN}",
        raw=f"api-key: {TOKEN}",
        nested={"list": [f"token={TOKEN}", ("password", f'"password": "{TOKEN}"')]},
        api_key=TOKEN,
        count=3,
    )
    logging.getLogger("somelib").error("fetch %s failed", f"https://x/?token={TOKEN}")
    try:
        raise ValueError(f"refused 'Authorization: Basic {TOKEN}'")
    except ValueError:
        structlog.get_logger("agent.test").exception("boom")
    text = out.getvalue()
    assert TOKEN not in text
    first, second, third = lines(out)
    assert first["event"] == "calling" and first["count"] == 3
    assert first["url"] == "http://x/api?secret_token=***&a=1"
    assert first["header"] == "Authorization: ***"
    assert first["raw"] == "api-key: ***"
    assert first["api_key"] == "***"
    assert second == second | {"event": "fetch https://x/?token=*** failed", "logger": "somelib"}
    assert "ValueError" in third["exception"] and "***" in third["exception"]


def test_harmless_words_stay(out):
    structlog.get_logger("agent.test").info(
        "door.changed", key=5, tokens_left=4, note="token bucket refilled; 3 tokens=plenty"
    )
    (line,) = lines(out)
    assert line["tokens_left"] == 4
    assert line["note"] == "token bucket refilled; 3 tokens=plenty"


def test_aiohttp_lines_keep_the_exception_type_only(out):
    try:
        raise BadStatusLine(f"GET /x?secret_token={TOKEN} x HTTP/1.1")
    except BadStatusLine:
        logging.getLogger("aiohttp.server").exception("Error handling request from %s", "10.0.0.9")
    (line,) = lines(out)
    assert line["event"] == "Error handling request from 10.0.0.9"
    assert line["error"] == "BadStatusLine"
    assert "exception" not in line
    assert TOKEN not in out.getvalue() and "Traceback" not in out.getvalue()


async def test_aiohttp_parse_errors_never_log_the_request_line(out):
    """Any aiohttp server in the process (here a bare one, no guard in front): its
    "Error handling request" lines carry the peer and the error's type, nothing raw."""
    app = web.Application()
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        for raw in MALFORMED:
            await send_raw(runner.addresses[0][1], raw)
    finally:
        await runner.cleanup()
    text = out.getvalue()
    assert TOKEN not in text and "Traceback" not in text
    errors = [line for line in lines(out) if line["event"].startswith("Error handling request")]
    assert len(errors) == len(MALFORMED)
    assert all(line["error"] for line in errors)
    assert all("127.0.0.1" in line["event"] for line in errors)


async def test_the_api_neither_logs_nor_echoes_a_malformed_request(out, locker, actuator):
    api = LocalApi(locker, SecretStr(TOKEN), list, "127.0.0.1", 0)
    await api.start()
    try:
        answers = [await send_raw(api.port, raw) for raw in MALFORMED]
    finally:
        await api.close()
    for answer in answers:
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), answer[:80]
        assert json.loads(body)["type"] == "INVALID_REQUEST"
        assert TOKEN.encode() not in answer
    assert TOKEN not in out.getvalue()
    lines(out)  # JSON, every one


def test_a_flood_of_identical_errors_is_cut_to_a_few_and_a_count(out):
    flood = logging.getLogger("asyncio")
    for _ in range(1000):
        flood.error("socket.accept() out of system resource", exc_info=OSError(24, "EMFILE"))
    structlog.get_logger("agent.test").error("other.thing")
    assert len(lines(out)) == 6  # five of the flood, and the other line
    log.flush_suppressed()
    *_, summary = lines(out)
    assert summary["event"] == "log.suppressed"
    assert summary["suppressed"] == 995
    assert summary["of"]["event"] == "socket.accept() out of system resource"


def test_info_lines_are_never_cut(out):
    for key in range(20):
        structlog.get_logger("agent.test").info("door.changed", key=key)
    assert len(lines(out)) == 20


async def test_loop_errors_go_the_same_way(out):
    loop = asyncio.get_running_loop()
    log.install_loop_handler(loop)
    try:
        for _ in range(50):
            loop.call_exception_handler(
                {
                    "message": "socket.accept() out of system resource",
                    "exception": OSError(24, "Too many open files"),
                    "protocol": f"<proto secret_token={TOKEN}>",
                }
            )
    finally:
        loop.set_exception_handler(None)
    log.flush_suppressed()
    *first, summary = lines(out)
    assert len(first) == 5
    assert first[0]["event"] == "asyncio.error"
    assert first[0]["message"] == "socket.accept() out of system resource"
    assert "OSError" in first[0]["exception"]
    assert summary["suppressed"] == 45
    assert TOKEN not in out.getvalue()


def test_the_limiter_reports_each_window_once():
    now = [0.0]
    limiter = log.RepeatLimiter(burst=2, window_s=60, clock=lambda: now[0])
    assert [limiter.admit("x")[0] for _ in range(5)] == [True, True, False, False, False]
    now[0] = 61.0
    assert limiter.admit("x") == (True, [("x", 3)])
    assert limiter.admit("y") == (True, [])
    assert limiter.drain() == []


def test_the_limiter_forgets_the_oldest_kind_past_its_bound():
    limiter = log.RepeatLimiter(burst=1, window_s=60, clock=lambda: 0.0, max_kinds=2)
    for kind in ("a", "a", "b"):
        limiter.admit(kind)
    assert limiter.admit("c") == (True, [("a", 1)])


def test_under_journald_each_line_carries_its_priority():
    """JOURNAL_STREAM set (systemd's stderr to journald): a "<N>" prefix per line, so
    `journalctl -p warning` picks out warnings and errors."""
    import subprocess
    import sys

    script = (
        "from agent import log\n"
        "import structlog\n"
        "log.configure(json=True)\n"
        "structlog.get_logger('t').info('fine')\n"
        "structlog.get_logger('t').warning('careful')\n"
        "structlog.get_logger('t').error('broken')\n"
    )
    env = {"JOURNAL_STREAM": "8:12345", "PATH": "/usr/bin:/bin"}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=30
    )
    prefixes = [line[:3] for line in done.stderr.splitlines()]
    assert prefixes == ["<6>", "<4>", "<3>"], done.stderr


def test_alarms_of_many_cabinets_are_each_logged_and_one_cabinets_flood_is_cut(out):
    """Commissioning a food locker raises an alarm on sixteen cabinets at once: sixteen
    lines. One cabinet raising it every second is still cut to a few and a count."""
    logger = structlog.get_logger("agent.locker.locker")
    for key in range(16):
        logger.warning("alarm.raised", alarm="temperature_out_of_band", key=key, side=None)
    for _ in range(20):
        logger.warning("alarm.raised", alarm="temperature_sensor_failed", key=3, side=None)
    raised = [line for line in lines(out) if line.get("event") == "alarm.raised"]
    assert len({line["key"] for line in raised if line["alarm"].endswith("band")}) == 16
    assert len([line for line in raised if line["alarm"].endswith("failed")]) < 20
