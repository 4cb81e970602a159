#!/usr/bin/env bash
# Install, or upgrade in place, locker-agent as a systemd service on the locker.
#
#   sudo systemd/install.sh                       from a checkout or a source tarball
#   sudo WHEEL=locker_agent-1.0-py3-none-any.whl systemd/install.sh    a wheel built elsewhere
#
# Steps, each safe to repeat (a second run upgrades and restarts a running service):
#   1. a wheel of this source, built from a scratch copy (nothing of .venv, .git,
#      build/ or caches goes in), unless WHEEL names one;
#   2. the venv /opt/locker-agent, made fresh when missing or broken, and the wheel
#      installed into it with the extra [pi] (lgpio) on a Raspberry Pi;
#   3. the command /usr/local/bin/locker-agent (a link into the venv);
#   4. the group gpio when missing, the system user locker-agent in dialout and gpio;
#   5. /etc/locker-agent (root:locker-agent 0750) with agent.toml, api.key and
#      api.token written when absent, each root:locker-agent 0640 (the service reads
#      them, nobody else does);
#   6. the unit, systemd reloaded, and the udev rule that lets the service start a
#      bulk temperature conversion (61-locker-agent-w1.rules, udev reloaded and the
#      1-wire sensors re-announced); a service that was running is restarted. The
#      unit makes /run/locker-agent (RuntimeDirectory=, 0750) for the technicians'
#      socket at each start: nothing to make here. A technician's own login may use
#      it without sudo once in the group: usermod -aG locker-agent NAME.
# It does not enable or start the service: edit the config first (README, "On a locker");
# it ends by naming each value still left to fill in (check-config's lines).
#
# Variables: ROOT (a directory to install into as if it were /: tests and image
# staging; the venv's scripts name their absolute path, so a venv made under ROOT
# runs from there), PYTHON (the venv's interpreter, 3.11 or newer; default python3),
# WHEEL, EXTRAS ("pi" or "none"; default: pi on a Raspberry Pi), PIP_ARGS (more pip
# options, e.g. "--no-index --find-links /media/usb/wheels" on a locker offline).
# getent, groupadd, useradd, usermod, chown, systemctl and udevadm are taken from
# PATH: the tests put stand-ins first. Accounts are those of the running system.
set -euo pipefail

src="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="${ROOT:-/}"
ROOT="${ROOT%/}"
PYTHON="${PYTHON:-python3}"
PIP_ARGS="${PIP_ARGS:-}"
user=locker-agent
prefix="$ROOT/opt/locker-agent"
etc="$ROOT/etc/locker-agent"
unit_dir="$ROOT/etc/systemd/system"
udev_dir="$ROOT/etc/udev/rules.d"
bin_link="$ROOT/usr/local/bin/locker-agent"

say() { printf 'install.sh: %s\n' "$*"; }
die() { printf 'install.sh: %s\n' "$*" >&2; exit 1; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null \
  || die "$PYTHON is not Python 3.11 or newer: set PYTHON=/path/to/python3.11"
# Run from inside a developer's venv, python3 is that venv's: take the interpreter
# it was made from, so nothing installed names the checkout.
PYTHON="$("$PYTHON" -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# 1. The wheel.
if [ -n "${WHEEL:-}" ]; then
  [ -f "$WHEEL" ] || die "WHEEL=$WHEEL: no such file"
  wheel="$(cd "$(dirname "$WHEEL")" && pwd)/$(basename "$WHEEL")"
else
  mkdir "$work/src" "$work/dist"
  # Only what the wheel is built from: a checkout's other files (artifacts/, var/,
  # a test run's output) may change while tar reads them, which tar calls an error.
  parts=()
  for part in pyproject.toml README.md LICENSE MANIFEST.in agent drivers simulator; do
    [ -e "$src/$part" ] && parts+=("$part")
  done
  tar -C "$src" -cf - --exclude='*.egg-info' --exclude=__pycache__ "${parts[@]}" \
    | tar -C "$work/src" -xf -
  "$PYTHON" -m venv "$work/build-venv" || die "cannot make a venv: apt install python3-venv"
  # shellcheck disable=SC2086
  "$work/build-venv/bin/python" -m pip wheel --quiet --no-deps $PIP_ARGS \
    --wheel-dir "$work/dist" "$work/src"
  wheel="$(ls "$work"/dist/locker_agent-*.whl)"
fi
say "wheel: $(basename "$wheel")"

# 2. The venv. An install from the old layout (a copied checkout) is set aside.
if [ -e "$prefix/.git" ] || [ -e "$prefix/.venv" ]; then
  old="$prefix.old-$(date +%Y%m%d%H%M%S)"
  mv "$prefix" "$old"
  say "an old install (a copied checkout) was moved to $old"
fi
if ! "$prefix/bin/python" -c '' 2>/dev/null; then
  rm -rf "$prefix"
  mkdir -p "$(dirname "$prefix")"
  "$PYTHON" -m venv "$prefix" || die "cannot make a venv: apt install python3-venv"
  say "venv: $prefix (new)"
else
  say "venv: $prefix (upgrading in place)"
fi
if [ -z "${EXTRAS:-}" ]; then
  EXTRAS=none
  if grep -qs "Raspberry Pi" /proc/device-tree/model; then EXTRAS=pi; fi
fi
target="$wheel"
[ "$EXTRAS" = none ] || target="$wheel[$EXTRAS]"
# shellcheck disable=SC2086
"$prefix/bin/python" -m pip install --quiet --upgrade $PIP_ARGS "$target"
# The same version again (a fix rebuilt from the same tag) replaces the old files too.
# shellcheck disable=SC2086
"$prefix/bin/python" -m pip install --quiet --force-reinstall --no-deps $PIP_ARGS "$wheel"
mkdir -p "$prefix/share/locker-agent/examples"
cp "$src/README.md" "$prefix/share/locker-agent/"
cp "$src"/config/*.toml "$prefix/share/locker-agent/examples/"

# 3. The command on PATH.
mkdir -p "$(dirname "$bin_link")"
ln -sfn /opt/locker-agent/bin/locker-agent "$bin_link"
say "command: $("$prefix/bin/locker-agent" --version) (/usr/local/bin/locker-agent)"

# 4. The group and the user.
getent group gpio >/dev/null || groupadd --system gpio
if getent passwd "$user" >/dev/null; then
  usermod --append --groups dialout,gpio "$user"
else
  useradd --system --user-group --groups dialout,gpio --no-create-home \
    --home-dir /var/lib/locker-agent --shell /usr/sbin/nologin "$user"
  say "user: $user (groups dialout, gpio)"
fi

# 5. The config and its secrets: written when absent, their modes set every time.
mkdir -p "$etc"
chown "root:$user" "$etc"
chmod 0750 "$etc"
umask 077
if [ ! -e "$etc/agent.toml" ]; then
  cp "$src/systemd/agent.toml" "$etc/agent.toml"
  say "config: $etc/agent.toml (new: edit it)"
fi
if [ ! -e "$etc/api.key" ]; then
  echo "REPLACE-WITH-THIS-LOCKERS-API-KEY" >"$etc/api.key"
  say "secret: $etc/api.key (new: put the locker's api-key in it)"
fi
if [ ! -e "$etc/api.token" ]; then
  "$prefix/bin/python" -c 'import secrets; print(secrets.token_urlsafe(32))' >"$etc/api.token"
  say "secret: $etc/api.token (new: a random token for the local API)"
fi
for file in agent.toml api.key api.token; do
  chown "root:$user" "$etc/$file"
  chmod 0640 "$etc/$file"
done
umask 022

# 6. The unit.
mkdir -p "$unit_dir"
install -m 0644 "$src/systemd/locker-agent.service" "$unit_dir/locker-agent.service"
systemctl daemon-reload || say "systemctl daemon-reload failed (no systemd here?)"
mkdir -p "$udev_dir"
install -m 0644 "$src/systemd/61-locker-agent-w1.rules" "$udev_dir/61-locker-agent-w1.rules"
{ udevadm control --reload-rules && udevadm trigger --subsystem-match=w1 --action=add; } \
  || say "udevadm failed (no udev here?): the bulk conversion's rule applies at the next boot"
# The config's problems, as check-config, doctor and run judge them (placeholders
# left included): named one per line, and the service is neither enabled nor restarted.
if left="$("$prefix/bin/locker-agent" check-config "$etc/agent.toml" 2>&1 >/dev/null)"; then
  if [ -n "$left" ]; then  # warnings: it may start, but a technician should read them
    say "check-config's warnings (the service may start; read them first):"
    printf '%s\n' "$left" | sed "s|^$etc/agent.toml: warning: ||; s|^|  - |"
  fi
  if systemctl is-active --quiet locker-agent; then
    systemctl restart locker-agent
    say "service: restarted on the new version"
  else
    say "next: sudo systemctl enable --now locker-agent; then: sudo locker-agent doctor"
  fi
else
  say "left to fill in before the service can start (check-config, exit 78):"
  printf '%s\n' "$left" | sed "s|^$etc/agent.toml: ||; s|^|  - |"
  say "then: sudo locker-agent check-config $etc/agent.toml (exit 0), and only then:"
  say "      sudo systemctl enable --now locker-agent; sudo locker-agent doctor"
  if systemctl is-active --quiet locker-agent; then
    say "service: left running on the old version (a restart would stop it on these lines)"
  fi
fi
say "technicians: sudo locker-agent status (the agent's socket: root and the group $user)"
