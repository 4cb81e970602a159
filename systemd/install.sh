#!/usr/bin/env bash
# Install locker-agent as a systemd service on the locker's controller.
# Run as root from a checkout: sudo systemd/install.sh
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/locker-agent

id locker-agent >/dev/null 2>&1 || useradd --system --no-create-home --groups dialout,gpio locker-agent 2>/dev/null \
  || useradd --system --no-create-home --groups dialout locker-agent
mkdir -p "$prefix" /etc/locker-agent
cp -a "$src/." "$prefix/"
python3 -m venv "$prefix/.venv"
"$prefix/.venv/bin/pip" install --quiet "$prefix"
if [ ! -f /etc/locker-agent/agent.toml ]; then
  cp "$prefix/config/kerong-3-boards.toml" /etc/locker-agent/agent.toml
  echo "Edit /etc/locker-agent/agent.toml, then: systemctl enable --now locker-agent"
fi
install -m 0644 "$src/systemd/locker-agent.service" /etc/systemd/system/locker-agent.service
systemctl daemon-reload
"$prefix/.venv/bin/locker-agent" check-config /etc/locker-agent/agent.toml || true
