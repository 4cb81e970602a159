"""``python -m agent``: the same as the ``locker-agent`` command."""

from agent.cli import main

raise SystemExit(main())
