#!/bin/sh
# Install the sealdrop relay on Debian 12, as docs/operations.md ("Install on
# Debian 12") describes step by step. Run as root from a source checkout:
#
#   sh deploy/install.sh
#
# It is safe to run again: it skips the user, the venv and `init` when they
# exist, and reinstalls the package and the units. It never touches an existing
# data folder's database (schema upgrades are `sealdrop-relay db upgrade`, see
# docs/operations.md). SEALDROP_INSTALL_DRY_RUN=1 prints the commands instead of
# running them, as for a fresh machine (tests/deploy/test_install.py).
set -eu

SRC=$(cd "$(dirname "$0")/.." && pwd)
PREFIX=/opt/sealdrop
DATA=/var/lib/sealdrop-relay
BACKUPS=/var/backups/sealdrop-relay
UNITS=/etc/systemd/system
USER_NAME=sealdrop
DRY_RUN=${SEALDROP_INSTALL_DRY_RUN:-}
# The venv and the units must be readable by the relay's user even if root's
# umask is stricter; the folders that must be private get their mode explicitly.
umask 022
# Commands run as the relay's user start here: root's folder may be unreadable to it.
cd /

run() {
  if [ -n "$DRY_RUN" ]; then echo "+ $*"; else "$@"; fi
}
# On a dry run every check answers "not there yet": the output is a fresh install.
have() {
  [ -z "$DRY_RUN" ] && "$@" >/dev/null 2>&1
}

if [ -z "$DRY_RUN" ] && [ "$(id -u)" != 0 ]; then
  echo "install.sh: error: run as root (su - or sudo); it creates a system user and units" >&2
  exit 1
fi

# Debian's python3 ships venv without ensurepip; the package python3-venv adds it.
have python3 -c 'import ensurepip' || run apt-get install -y python3-venv

# A system user with no home folder and no login shell: the relay needs only its
# data folder, which systemd and this script create.
have getent passwd "$USER_NAME" || run useradd --system --user-group --no-create-home \
  --home-dir /nonexistent --shell /usr/sbin/nologin "$USER_NAME"

have test -x "$PREFIX/.venv/bin/python" || run python3 -m venv "$PREFIX/.venv"
run "$PREFIX/.venv/bin/pip" install --quiet --no-cache-dir --upgrade "$SRC"

# 0700 and owned by the relay's user: the data folder and the backups hold
# who-sent-to-whom metadata. The backup unit also creates its target if missing.
run install -d -m 0700 -o "$USER_NAME" -g "$USER_NAME" "$DATA" "$BACKUPS"
# For the database URL and other overrides (mode 0600, read by systemd as root).
run install -d -m 0755 /etc/sealdrop-relay

if have test -e "$DATA/relay.toml"; then
  echo "install.sh: $DATA already holds a relay; not running init" >&2
else
  run runuser -u "$USER_NAME" -- "$PREFIX/.venv/bin/sealdrop-relay" init --data "$DATA"
fi

# sealdrop-relay@.service (one process per port, behind nginx) is installed,
# not enabled: docs/operations.md, "Several relay processes".
for unit in sealdrop-relay.service sealdrop-relay@.service sealdrop-relay-gc.service \
            sealdrop-relay-gc.timer sealdrop-relay-backup.service sealdrop-relay-backup.timer \
            sealdrop-relay-verify.service sealdrop-relay-verify.timer; do
  run install -m 0644 "$SRC/deploy/$unit" "$UNITS/$unit"
done
run systemctl daemon-reload
run systemctl enable --now sealdrop-relay.service sealdrop-relay-gc.timer \
  sealdrop-relay-backup.timer sealdrop-relay-verify.timer
echo "install.sh: done; next: docs/operations.md, \"Serve behind a TLS reverse proxy\"" >&2
