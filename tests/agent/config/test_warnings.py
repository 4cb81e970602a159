"""Warnings: valid configs a careful technician would not ship, and the private CA."""

import asyncio
import tomllib
from pathlib import Path

import pytest

from agent.config import ConfigError, parse_config
from agent.config.warnings import warnings
from tests.conftest import run_agent

GOOD = """
[cloud]
url = "https://cloud.lockers.test"
api_key = "k-9f3Qx1"

[api]
token = "t-7Hq2Lw"

[[buses]]
name = "rs485"
port = "/dev/ttyUSB0"
boards = [0]

[[cabinets]]
key = 0
front = { bus = "rs485", board = 0, channel = 1 }
"""


def config(tmp_path: Path, **cloud: object):
    data = tomllib.loads(GOOD)
    data["cloud"].update(cloud)
    return parse_config(data, tmp_path)


def test_a_good_config_has_no_warnings(tmp_path):
    assert warnings(config(tmp_path)) == []


def test_plain_http_and_ws_are_warned_of(tmp_path):
    found = warnings(
        config(tmp_path, url="http://cloud.lockers.test", commands_url="ws://cloud.lockers.test/ws")
    )
    assert found[0].startswith("cloud.url: plain http://") and "use https://" in found[0]
    assert found[1].startswith("cloud.commands_url: plain ws://")


def test_placeholders_are_no_warnings_but_problems(tmp_path):
    """A placeholder is a problem (agent/config/placeholders.py), never also a warning."""
    found = warnings(
        config(tmp_path, url="https://REPLACE-WITH-THE-CLOUD-HOST", api_key="REPLACE-WITH-KEY")
    )
    assert found == []


def test_a_documentation_host_is_a_warning_that_run_logs_too(tmp_path):
    """Review finding: moved out of the warnings' list, lockers.example.com was said by
    check-config and doctor but no longer logged by run (app.py logs ``warnings``)."""
    [found] = warnings(config(tmp_path, url="https://lockers.example.com"))
    assert found.startswith("cloud.url: lockers.example.com is a documentation host")


def test_a_key_file_every_user_can_read_is_warned_of(tmp_path):
    key = tmp_path / "api.key"
    key.write_text("k-9f3Qx1\n")
    key.chmod(0o644)
    data = tomllib.loads(GOOD)
    del data["cloud"]["api_key"]
    data["cloud"]["api_key_file"] = "api.key"
    [found] = warnings(parse_config(data, tmp_path))
    assert found.startswith("cloud.api_key_file:") and "chmod 640" in found
    key.chmod(0o640)
    assert warnings(parse_config(data, tmp_path)) == []


def test_check_config_prints_warnings_and_still_exits_0(tmp_path):
    path = tmp_path / "agent.toml"
    path.write_text(GOOD.replace("https://cloud", "http://cloud"))
    done = run_agent("check-config", path)
    assert done.returncode == 0, done.stderr
    assert f"{path}: warning: cloud.url: plain http://" in done.stderr


def test_a_ca_file_that_is_not_a_ca_stops_start_up_naming_the_key(tmp_path):
    (tmp_path / "ca.pem").write_text("not a certificate")
    with pytest.raises(ConfigError) as caught:
        config(tmp_path, ca_file="ca.pem")
    [problem] = caught.value.problems
    assert problem.startswith("cloud.ca_file: cannot use") and "ca.pem" in problem
    with pytest.raises(ConfigError):
        config(tmp_path, ca_file="missing.pem")


async def test_tls_is_verified_and_a_private_ca_is_trusted(tmp_path):
    """The uplink verifies the cloud's certificate: a cloud signed by a private CA is
    refused with the system's trust, and accepted with ``[cloud] ca_file``."""
    import ssl

    import trustme
    from aiohttp import web
    from pydantic import SecretStr

    from agent.cloud.uplink import Uplink
    from agent.storage.outbox import Outbox

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    received = []

    async def feedback(request):
        received.append(await request.json())
        return web.json_response({})

    app = web.Application()
    app.router.add_post("/api/lockers/cabinet/status", feedback)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=server_tls)
    await site.start()
    url = f"https://127.0.0.1:{runner.addresses[0][1]}"
    loaded = config(tmp_path, url=url, ca_file="ca.pem")
    try:
        for tls in (None, ssl.create_default_context(cafile=str(loaded.cloud.ca_file))):
            box = Outbox(tmp_path / f"o-{tls is None}.sqlite3")
            uplink = Uplink(url, SecretStr("k"), box, list, backoff_base_s=0.01, ssl_context=tls)
            await uplink.start()
            box.append("change", "door_changed", [{"key": 1, "front_status": "open"}])
            async with asyncio.timeout(5):
                while not (uplink.problems() if tls is None else not box.pending(1)):
                    await asyncio.sleep(0.01)
            await uplink.close()
            box.close()
            if tls is None:
                assert "cloud unreachable" in uplink.problems()[0]  # not verified: not sent
                assert received == []
        assert len(received) == 1  # with the private CA: verified and delivered
    finally:
        await runner.cleanup()


@pytest.mark.parametrize(
    ("section", "key", "value", "says"),
    [
        ("storage", "dir", "/tmp/\x00x", "control characters"),
        ("storage", "dir", "/etc/passwd", "is a file"),
        ("storage", "dir", "/etc/passwd/below", "is a file"),
        ("buses", "port", "\x00", "buses[0].port"),
    ],
)
def test_what_run_would_trip_on_stops_check_config(tmp_path, section, key, value, says):
    """A hostile tester's finds: check-config passed these and run then crashed, looped
    or kept nothing. Now each is a problem naming its key."""
    data = tomllib.loads(GOOD)
    if section == "buses":
        data["buses"][0][key] = value
    else:
        data.setdefault(section, {})[key] = value
    with pytest.raises(ConfigError) as caught:
        parse_config(data, tmp_path)
    assert any(says in line for line in caught.value.problems), caught.value.problems
    assert any(line.startswith(f"{section}") for line in caught.value.problems)


def test_a_secret_file_name_with_a_nul_is_named(tmp_path):
    data = tomllib.loads(GOOD)
    del data["api"]["token"]
    data["api"]["token_file"] = "/tmp/\x00"
    with pytest.raises(ConfigError) as caught:
        parse_config(data, tmp_path)
    [problem] = caught.value.problems
    assert problem.startswith("api.token_file:") and "not a valid path" in problem
