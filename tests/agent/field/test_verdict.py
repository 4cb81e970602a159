"""One verdict on a technician's config (agent/field/verdict.py, ADR 0013 and 0020):
``doctor``'s first line, ``check-config`` and ``run`` say the same of the same file,
and a placeholder is a problem to fill in, never a host for ``doctor`` to probe."""

from __future__ import annotations

import socket

import pytest
import structlog

from agent import cli
from agent.field import doctor, probes
from tests.conftest import EXAMPLES_DIR, PLACEHOLDER_KEY, as_installed, write_small_config


@pytest.fixture(autouse=True)
def _reset_logging():
    yield
    structlog.reset_defaults()  # cli.main() configures logging for this process


@pytest.fixture
def no_network(monkeypatch):
    """Every name looked up or address connected to, refused and written down."""
    asked: list[object] = []

    def refuse(*args, **kwargs):
        asked.append(args[0])
        raise OSError("the test forbids the network")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    return asked


def doctor_lines(path) -> list[str]:
    return [str(line) for line in doctor.doctor(path)]


def said(err: str, path) -> list[str]:
    """The command's own lines on stderr, without ``PATH: `` (a JSON log line another
    in-process test's logging left behind is not one of them)."""
    return [line.removeprefix(f"{path}: ") for line in err.splitlines() if not line.startswith("{")]


def config_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.startswith(("ok   config: ", "FAIL config: "))]


def test_a_config_with_problems_is_never_called_valid(tmp_path, capsys, no_network):
    """As install.sh leaves it: the example's cloud host and api.key's placeholder. The
    doctor's first line says it is not valid, then the very lines check-config exits 78
    with and run refuses with, in their order."""
    path = as_installed(EXAMPLES_DIR / "kerong-3-boards.toml", tmp_path, key=PLACEHOLDER_KEY)
    lines = doctor_lines(path)
    assert lines[0] == (
        f"FAIL config: {path} is not valid here: 2 problems, each below: run refuses to start"
        " on this machine until they are fixed"
    )
    assert not [line for line in lines if "valid (" in line or " is valid" in line]

    assert cli.main(["check-config", str(path)]) == 78
    checked = said(capsys.readouterr().err, path)
    assert [line.removeprefix("FAIL config: ") for line in config_lines(lines)[1:]] == checked
    assert [line.split(":")[0] for line in checked] == ["cloud.url", "cloud.api_key_file"]

    storage = tmp_path / "storage"
    path.write_text(path.read_text().replace("/var/lib/locker-agent", str(storage)))
    assert cli.main(["run", "--config", str(path)]) == 78
    refused = said(capsys.readouterr().err, path)
    assert refused == checked
    assert not storage.exists()  # nothing started


def test_a_valid_config_is_called_valid_once_with_its_warnings_counted(tmp_path):
    path = write_small_config(tmp_path, cloud="https://cloud.lockers.test", token="t")
    lines = doctor_lines(path)
    assert lines[0].startswith(f"ok   config: {path} is valid (1 cabinet")
    assert len(config_lines(lines)) == 1
    warned = [line for line in lines if line.startswith("warn config: ")]
    if warned:
        assert lines[0].endswith(f"; {len(warned)} warning{'s' * (len(warned) > 1)} below)")


def test_what_a_driver_refuses_makes_the_first_line_fail(tmp_path, monkeypatch, capsys):
    """The dry build's problems are the verdict's too: doctor never calls such a file
    valid above them (it did: "valid" came from the build alone, FAIL lines after), and
    check-config exits 78 on the same line. A build that raises is a line, not a trace."""
    from agent.field import verdict

    async def refused(config):
        return ["cabinets[0].front.lock: the driver refuses it"]

    monkeypatch.setattr(verdict, "build_dry", refused)
    path = write_small_config(tmp_path, cloud="https://cloud.lockers.test")
    lines = doctor_lines(path)
    assert lines[0].startswith(f"FAIL config: {path} is not valid here: 1 problem, each below")
    assert lines[1] == "FAIL config: cabinets[0].front.lock: the driver refuses it"
    assert cli.main(["check-config", str(path)]) == 78
    assert said(capsys.readouterr().err, path) == ["cabinets[0].front.lock: the driver refuses it"]

    async def broken(config):
        raise RuntimeError("a bug")

    monkeypatch.setattr(verdict, "build_dry", broken)
    assert doctor_lines(path)[1] == "FAIL config: cannot build the drivers (RuntimeError)"


def test_a_placeholder_cloud_is_a_problem_never_a_host_to_probe(tmp_path, capsys, no_network):
    url = "https://REPLACE-WITH-THE-CLOUDS-HOST"
    path = write_small_config(tmp_path, cloud=url)
    lines = doctor_lines(path)
    assert "FAIL config: cloud.url: still the example's placeholder" in "\n".join(lines)
    (cloud,) = [line for line in lines if " cloud: " in line and "config" not in line]
    assert cloud == (
        f"skip cloud: {url} not asked: cloud.url is still the example's (above): set the"
        " cloud's address, then doctor asks it"
    )
    assert no_network == []  # not looked up in DNS, not connected to
    assert cli.main(["check-config", str(path)]) == 78
    assert "cloud.url: still the example's placeholder" in capsys.readouterr().err


def test_a_documentation_host_is_a_warning_never_a_host_to_probe(tmp_path, capsys, no_network):
    """DESIGN.md's config contract itself uses lockers.example.com, and tests outside
    this repo run the agent on it: a warning, never a stop; still never probed."""
    url = "https://lockers.example.com"
    path = write_small_config(tmp_path, cloud=url)
    lines = doctor_lines(path)
    assert lines[0].startswith(f"ok   config: {path} is valid")
    warning = "cloud.url: lockers.example.com is a documentation host: set the cloud's address"
    assert f"warn config: {warning}" in lines
    assert [line for line in lines if line.startswith("skip cloud: ")]
    assert no_network == []
    assert cli.main(["check-config", str(path)]) == 0
    assert warning in capsys.readouterr().err


def test_a_real_cloud_is_still_probed(tmp_path, no_network):
    path = write_small_config(tmp_path, cloud="https://cloud.lockers.test")
    line = doctor.check_cloud(doctor.load_config(path))
    assert line.level == "FAIL" and "cannot resolve cloud.lockers.test" in line.says
    assert no_network == ["cloud.lockers.test"]
    assert probes.FEEDBACK_PATH  # the probe asks the feedback endpoint (probes.py)


def test_the_gateway_placeholder_is_a_problem_never_a_gateway_to_probe(
    tmp_path, capsys, no_network
):
    """The gateway example ships socket://REPLACE-WITH-THE-GATEWAY-ADDRESS: left as it
    is, it is named to fill in, and doctor connects to nothing there."""
    path = as_installed(
        EXAMPLES_DIR / "kerong-tcp-gateway.toml", tmp_path, url="https://cloud.lockers.test"
    )
    lines = doctor_lines(path)
    assert lines[1] == (
        "FAIL config: buses[0].port: still the example's placeholder"
        " ('socket://REPLACE-WITH-THE-GATEWAY-ADDRESS:5000'): set the gateway's own address"
        " and port (socket://ADDRESS:PORT)"
    )
    assert "skip bus gateway: buses[0].port is still the example's placeholder (above)" in lines
    assert [host for host in no_network if isinstance(host, tuple)] == []  # no connection
    assert cli.main(["check-config", str(path)]) == 78
    assert "buses[0].port: still the example's placeholder" in capsys.readouterr().err


def test_a_documentation_address_is_a_warning_never_a_gateway_to_probe(
    tmp_path, capsys, no_network
):
    path = as_installed(
        EXAMPLES_DIR / "kerong-tcp-gateway.toml", tmp_path, url="https://cloud.lockers.test"
    )
    path.write_text(path.read_text().replace("REPLACE-WITH-THE-GATEWAY-ADDRESS", "192.0.2.10"))
    lines = doctor_lines(path)
    assert (
        "warn config: buses[0].port: 192.0.2.10 is a documentation address: set the"
        " gateway's own address and port (socket://ADDRESS:PORT)"
    ) in lines
    assert [host for host in no_network if isinstance(host, tuple)] == []  # no connection
    assert cli.main(["check-config", str(path)]) == 0


def test_doctor_judges_this_machine_and_claims_nothing_of_check_config(
    tmp_path, capsys, monkeypatch, no_network
):
    """Finding (a new user's trial): on a laptop, check-config took a GPIO bus whose
    pin factory's module is missing as a warning (exit 0), while doctor's first line
    said check-config exits 78. doctor judges the machine it runs on (run imports the
    module), and says so."""
    from agent.field import access

    if access.importable("lgpio"):
        pytest.skip("lgpio is installed here: the case needs it missing")
    monkeypatch.setattr(access, "has_gpio", lambda dev=None: False)  # a laptop
    path = as_installed(EXAMPLES_DIR / "food-locker.toml", tmp_path, url="https://c.lockers.test")
    text = path.read_text().replace("_UART_REPLACE-if00", "_UART_A10K1234-if00")
    path.write_text(text)
    assert cli.main(["check-config", str(path)]) == 0
    assert "lgpio" in capsys.readouterr().err  # a warning on a laptop
    lines = doctor_lines(path)
    assert lines[0].startswith(f"FAIL config: {path} is not valid here: 1 problem")
    assert "check-config" not in lines[0]
    assert lines[1].startswith('FAIL gpio: buses[1].pin_factory: "lgpio" needs')


def test_a_dns_server_that_never_answers_is_said_within_the_probes_time(monkeypatch):
    """getaddrinfo has no timeout: a resolver that does not answer held doctor for its
    tries. The probe says so within its own time instead."""
    import threading

    from agent.config import CloudConfig

    held = threading.Event()

    def no_answer(*_a, **_k):
        held.wait(10)  # the resolver's tries
        raise OSError("too late")

    monkeypatch.setattr(socket, "getaddrinfo", no_answer)
    cloud = CloudConfig.model_validate({"url": "https://cloud.lockers.test", "api_key": "k"})
    try:
        answer = probes.probe_cloud(cloud, timeout_s=0.2)
    finally:
        held.set()
    assert (answer.ok, answer.step) == (False, "resolve")
    assert answer.detail == "cannot resolve cloud.lockers.test: no answer from DNS within 0.2 s"


def test_a_gateway_the_running_agent_uses_is_not_polled_by_doctor():
    """A TCP gateway has no exclusive lock: doctor's polls would share the RS-485 line
    with the agent's, and a gateway that takes one client may drop the agent's for
    doctor's. With the agent asked, doctor says what it hears and never connects."""
    from agent.config import KerongBusConfig
    from agent.field.running import Health

    with socket.create_server(("127.0.0.1", 0)) as gateway:
        port = gateway.getsockname()[1]
        bus = KerongBusConfig.model_validate(
            {"name": "rs485", "port": f"socket://127.0.0.1:{port}", "boards": [0, 1]}
        )
        lines = [str(line) for line in doctor.check_bus(0, bus, Health("sock", 200, []))]
        gateway.setblocking(False)
        with pytest.raises(BlockingIOError):  # a connection made is waiting here
            gateway.accept()
    assert lines == ["ok   bus rs485: the running agent hears every board (its health: HTTP 200)"]


def test_a_gateway_is_not_reached_when_the_agent_runs_but_could_not_be_asked(tmp_path):
    """doctor without sudo (the socket refused it) or an agent slow to answer: doctor
    connected to the gateway the running agent uses, which may drop the agent's
    connection for doctor's. A socket someone serves says the agent may be running."""
    from agent.config import KerongBusConfig
    from agent.field.channel import AgentUnreachable

    path = tmp_path / "agent.sock"
    with (
        socket.create_server(("127.0.0.1", 0)) as gateway,
        socket.socket(socket.AF_UNIX) as agent,
    ):
        agent.bind(str(path))
        agent.listen()  # takes the connection, never answers: as a busy agent's
        port = gateway.getsockname()[1]
        bus = KerongBusConfig.model_validate(
            {"name": "rs485", "port": f"socket://127.0.0.1:{port}", "boards": [0, 1]}
        )
        unasked = AgentUnreachable(f"{path}: permission denied")
        lines = [str(line) for line in doctor.check_bus(0, bus, unasked, path)]
        gateway.setblocking(False)
        with pytest.raises(BlockingIOError):  # no connection waits here
            gateway.accept()
    assert lines == [
        f"skip bus rs485: not reached: the agent may be using it (not asked: {unasked});"
        " sudo locker-agent doctor says what it hears"
    ]
    # Nobody serves the socket (the agent stopped): the gateway is tried (now gone).
    bus = KerongBusConfig.model_validate(
        {"name": "rs485", "port": f"socket://127.0.0.1:{port}", "boards": [0]}
    )
    stopped = AgentUnreachable(f"nobody serves {path}")
    first = str(next(doctor.check_bus(0, bus, stopped, path)))
    assert first.startswith(f"FAIL bus rs485: cannot reach the gateway 127.0.0.1:{port}")
