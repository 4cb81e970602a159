"""Text from elsewhere is printed with every control character escaped."""

import pytest

from agent.config.text import printable


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("closed", "closed"),
        ("mini size", "mini size"),
        ("\x1b]0;pwned\x07", "\\x1b]0;pwned\\x07"),
        ("a\nb\r\tc", "a\\x0ab\\x0d\\x09c"),
        ("\x7f\x9b31m", "\\x7f\\x9b31m"),  # DEL, and the 8-bit CSI
        ("abc\u202edef", "abc\\u202edef"),  # a bidi override turns the line around
        ("x\u2028y", "x\\u2028y"),
        ("caf\u00e9 \u2603", "caf\u00e9 \u2603"),  # letters and symbols stay
        (42, "42"),
        (None, "None"),
    ],
)
def test_printable(raw, shown):
    assert printable(raw) == shown


async def test_doctor_escapes_the_reasons_the_agent_gives_on_its_socket(tmp_path):
    import asyncio

    from aiohttp import web

    from agent.field.running import Health, agent_line, ask_agent

    async def health(request):
        return web.json_response({"reasons": ["board 0 silent\x1b[2J"]}, status=503)

    app = web.Application()
    app.router.add_get("/healthz", health)
    runner = web.AppRunner(app)
    await runner.setup()
    sock = tmp_path / "a\x1b[2J.sock"
    await web.UnixSite(runner, str(sock)).start()
    try:
        found = await asyncio.to_thread(ask_agent, sock)
    finally:
        await runner.cleanup()
    where = str(tmp_path / "a\\x1b[2J.sock")
    assert found == Health(where, 503, ["board 0 silent\\x1b[2J"])
    assert "\x1b" not in agent_line(found)[2]
