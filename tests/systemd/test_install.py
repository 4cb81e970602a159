"""systemd/install.sh into a temporary root, from this checkout (which has a .venv):
a fresh venv from a built wheel, nothing of the checkout in it, and a second run that
upgrades in place. Accounts and systemctl are stand-ins on PATH that write down calls.

pip reaches the package index configured on this machine for the dependencies.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import agent

CHECKOUT = Path(__file__).resolve().parents[2]
SCRIPT = CHECKOUT / "systemd" / "install.sh"
# The install builds a venv (about a minute on a quiet machine): the suite's 60 s
# timeout also counts fixture set-up, so a loaded machine failed it as a hang.
pytestmark = pytest.mark.timeout(600)

# getent answers from a file the stand-ins for groupadd and useradd append to.
STUBS = {
    "getent": 'grep -qx "$1 $2" "$STUB_DIR/db" && echo "$2:x:999:" || exit 2\n',
    "groupadd": 'echo "group ${@: -1}" >>"$STUB_DIR/db"\n',
    "useradd": 'echo "passwd ${@: -1}" >>"$STUB_DIR/db"\n',
    "usermod": "",
    "chown": "",
    # is-active answers yes once the test made the file "active".
    "systemctl": '[ "$1" != is-active ] || [ -e "$STUB_DIR/active" ]\n',
    "udevadm": "",
    # The real tar, its arguments written down: which of the checkout's files it read.
    "tar": 'exec /usr/bin/tar "$@"\n',
}


def make_stubs(where: Path) -> Path:
    where.mkdir()
    for name, body in STUBS.items():
        path = where / name
        path.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >>"$STUB_DIR/calls"\n{body}')
        path.chmod(0o755)
    (where / "db").write_text("group dialout\n")
    (where / "calls").write_text("")
    return where


def install(root: Path, stubs: Path) -> subprocess.CompletedProcess[str]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))},
        "ROOT": str(root),
        "STUB_DIR": str(stubs),
        "PATH": f"{stubs}:{os.environ['PATH']}",
        # The developer's venv interpreter: the new venv must still not point into it.
        "PYTHON": sys.executable,
        "EXTRAS": "none",
    }
    return subprocess.run(
        ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=540, cwd=root
    )


@pytest.fixture(scope="session")
def installed(tmp_path_factory):
    """One install into a temporary root (once: make test sends a file's tests to one
    worker, --dist loadfile); yields (root, stubs, first run's result)."""
    assert (CHECKOUT / ".venv").is_dir(), "the test is about a checkout that has a .venv"
    base = tmp_path_factory.mktemp("install")
    root, stubs = base / "root", make_stubs(base / "stubs")
    root.mkdir()
    result = install(root, stubs)
    assert result.returncode == 0, result.stdout + result.stderr
    return root, stubs, result


def calls(stubs: Path) -> list[str]:
    return (stubs / "calls").read_text().splitlines()


def run_installed(root: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    return subprocess.run(
        [str(root / "opt/locker-agent/bin" / args[0]), *args[1:]],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_command_runs_from_its_own_venv_and_imports_nothing_of_the_checkout(
    installed, tmp_path
):
    root, _, _ = installed
    link = root / "usr/local/bin/locker-agent"
    assert os.readlink(link) == "/opt/locker-agent/bin/locker-agent"
    version = run_installed(root, "locker-agent", "--version", cwd=tmp_path)
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"locker-agent {agent.__version__}"
    probe = run_installed(
        root,
        "python",
        "-c",
        "import json, sys, agent, drivers, simulator, agent.cli;"
        "print(json.dumps({'files': [agent.__file__, drivers.__file__, simulator.__file__],"
        " 'path': sys.path, 'prefix': sys.prefix}))",
        cwd=tmp_path,
    )
    assert probe.returncode == 0, probe.stderr
    seen = json.loads(probe.stdout)
    venv = root / "opt/locker-agent"
    assert Path(seen["prefix"]) == venv
    for file in seen["files"]:
        assert Path(file).is_relative_to(venv / "lib"), file
    for entry in seen["path"]:
        assert not (tmp_path / entry).resolve().is_relative_to(CHECKOUT), entry  # "" is the cwd
    # Not an editable install, nor a venv made from the checkout's .venv.
    config = (venv / "pyvenv.cfg").read_text()
    assert str(CHECKOUT) not in config
    for pth in venv.rglob("*.pth"):
        assert str(CHECKOUT) not in pth.read_text(), pth


def test_nothing_of_the_checkout_was_copied(installed):
    root, _, _ = installed
    venv = root / "opt/locker-agent"
    names = {p.name for p in venv.rglob("*")}
    assert not names & {".git", ".venv", ".pytest_cache", ".ruff_cache"}
    assert not list(venv.rglob("*.egg-info"))
    # The distribution holds the three packages and its metadata, nothing else.
    record = next(venv.rglob("site-packages/locker_agent-*.dist-info/RECORD")).read_text()
    files = [line.split(",")[0] for line in record.splitlines() if line]
    tops = {f.split("/")[0] for f in files if not f.startswith("../")}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"agent", "drivers", "simulator"}
    assert [f for f in files if f.startswith("../")] == ["../../../bin/locker-agent"]
    examples = sorted(p.name for p in (venv / "share/locker-agent/examples").iterdir())
    assert examples == sorted(p.name for p in (CHECKOUT / "config").glob("*.toml"))
    assert not (CHECKOUT / "build").exists()  # the wheel was built from a scratch copy


def test_the_wheel_is_built_from_its_sources_alone(installed):
    """tar reads only what the wheel is built from: a whole-checkout copy failed CI when
    another test wrote a screenshot into artifacts/ as tar read it ("file changed as we
    read it", exit 1)."""
    _, stubs, _ = installed
    reads = [c.split() for c in calls(stubs) if c.startswith(f"tar -C {CHECKOUT} ")]
    assert len(reads) == 1, calls(stubs)
    named = [a for a in reads[0][3:] if not a.startswith("-")]
    assert named == ["pyproject.toml", "README.md", "agent", "drivers", "simulator"]


def test_the_user_groups_config_and_secrets(installed, tmp_path):
    root, stubs, _ = installed
    done = calls(stubs)
    assert "groupadd --system gpio" in done
    useradd = [c for c in done if c.startswith("useradd ")]
    assert len(useradd) == 1 and "--groups dialout,gpio" in useradd[0]
    assert useradd[0].endswith(" locker-agent")
    etc = root / "etc/locker-agent"
    assert stat.S_IMODE(etc.stat().st_mode) == 0o750
    assert f"chown root:locker-agent {etc}" in done
    for name in ("agent.toml", "api.key", "api.token"):
        path = etc / name
        assert stat.S_IMODE(path.stat().st_mode) == 0o640, name
        assert f"chown root:locker-agent {path}" in done
    assert len((etc / "api.token").read_text().strip()) >= 32
    unit = root / "etc/systemd/system/locker-agent.service"
    assert unit.read_text() == (CHECKOUT / "systemd/locker-agent.service").read_text()
    assert "systemctl daemon-reload" in done
    rule = root / "etc/udev/rules.d/61-locker-agent-w1.rules"  # the bulk conversion's
    assert "therm_bulk_read" in rule.read_text()
    assert "udevadm trigger --subsystem-match=w1 --action=add" in done


def test_the_install_names_what_is_left_to_fill_in_and_never_says_enable(installed, tmp_path):
    """The skeleton's placeholders (the cloud, the key install.sh wrote, the port) are
    problems: check-config exits 78 on each, and install.sh lists them where it used to
    say "next: sudo systemctl enable --now"."""
    root, _, result = installed
    etc = root / "etc/locker-agent"
    check = run_installed(
        root, "locker-agent", "check-config", str(etc / "agent.toml"), cwd=tmp_path
    )
    assert check.returncode == 78, check.stderr
    keys = [line.split(": ")[1] for line in check.stderr.splitlines()]
    assert keys == ["cloud.url", "cloud.api_key_file", "buses[0].port"]
    out = result.stdout.splitlines()
    at = out.index(
        "install.sh: left to fill in before the service can start (check-config, exit 78):"
    )
    assert [line.split(":")[0] for line in out[at + 1 : at + 4]] == [
        "  - cloud.url",
        "  - cloud.api_key_file",
        "  - buses[0].port",
    ]
    assert f"{etc / 'api.key'} still holds the placeholder" in out[at + 2]
    assert out[at + 4].startswith("install.sh: then: sudo locker-agent check-config")
    assert not [line for line in out if line.startswith("install.sh: next:")]
    assert "REPLACE-WITH-THIS-LOCKERS-API-KEY" not in result.stdout + result.stderr


def test_a_second_run_upgrades_in_place_and_restarts(installed):
    root, stubs, _ = installed
    venv = root / "opt/locker-agent"
    (venv / "kept").write_text("the venv is not made anew")
    init = next(venv.rglob("site-packages/agent/__init__.py"))
    init.write_text(init.read_text() + "\nBROKEN = True\n")
    key = root / "etc/locker-agent/api.key"
    key.write_text("the-real-key\n")
    toml = root / "etc/locker-agent/agent.toml"  # filled in: nothing left, so a restart
    text = toml.read_text().replace("REPLACE-WITH-THE-CLOUD-HOST", "cloud.lockers.test")
    toml.write_text(text.replace("REPLACE-WITH-THE-RS485-ADAPTER", "usb-FTDI_A10K1234-if00-port0"))
    (stubs / "active").write_text("")
    (stubs / "calls").write_text("")
    result = install(root, stubs)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "upgrading in place" in result.stdout
    assert (venv / "kept").exists()
    assert "BROKEN" not in init.read_text()  # the package's files were replaced
    assert key.read_text() == "the-real-key\n"
    done = calls(stubs)
    assert not [c for c in done if c.startswith(("useradd", "groupadd"))]
    assert "usermod --append --groups dialout,gpio locker-agent" in done
    assert "systemctl restart locker-agent" in done
    assert "left to fill in" not in result.stdout
    # Valid, but its port is not plugged in here: the warning is shown, not swallowed.
    out = result.stdout.splitlines()
    at = out.index("install.sh: check-config's warnings (the service may start; read them first):")
    assert out[at + 1].startswith("  - buses[0].port: /dev/serial/by-id/usb-FTDI_A10K1234")


def test_the_readme_steps_run_as_written(installed, tmp_path):
    """Install, config and secrets, check-config, start, doctor: in that order, with
    commands the installed locker-agent has and files the install made."""
    root, _, _ = installed
    section = (CHECKOUT / "README.md").read_text().split("## On a locker\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [
        line.split("  #")[0].strip()
        for line in block.splitlines()
        if line.strip() and not line.startswith("#")
    ]
    steps = [c.removeprefix("sudo ") for c in commands]
    first = {
        name: next(i for i, s in enumerate(steps) if name in s)
        for name in (
            "systemd/install.sh",
            "sudoedit /etc/locker-agent/agent.toml",
            "sudoedit /etc/locker-agent/api.key",
            "locker-agent check-config",
            "systemctl enable --now locker-agent",
            "locker-agent doctor",
        )
    }
    assert list(first.values()) == sorted(first.values()), first
    for step in steps:
        if step.startswith("locker-agent "):
            sub = [w for w in step.split()[1:3] if not w.startswith(("-", "/"))]
            helped = run_installed(root, "locker-agent", *sub, "--help", cwd=tmp_path)
            assert helped.returncode == 0, (step, helped.stderr)
        for word in step.split():
            if word.startswith("/etc/locker-agent/"):
                assert (root / word.lstrip("/")).exists(), word
    assert "config.toml" not in section
    assert (CHECKOUT / "systemd" / "install.sh").exists()
