"""`locker-agent simulate` on an install without the `sim` extra (a locker's): a clear
line naming what to install, exit 2, no traceback. Run in a subprocess where the
extra's yaml cannot be imported."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROBE = (
    "import sys; sys.modules['yaml'] = None\n"  # as if not installed
    "from agent.cli import main\n"
    "sys.exit(main(['simulate', '--api-port', '0', '--cloud-port', '0', '--web-port', '0']))\n"
)


def test_simulate_without_the_sim_extra_says_what_to_install():
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'locker-agent[sim]'" in done.stderr
    assert "Traceback" not in done.stderr
