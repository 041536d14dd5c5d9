# Sourced by scripts/*: create .venv and install the project into it, once.
# Re-installs only when pyproject.toml changed since the last install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEALDROP_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.sealdrop-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  log="$VENV/install.log"
  echo "sealdrop: installing into $VENV (log: $log)" >&2
  if ! "$VENV/bin/pip" install -e "$ROOT[test]" >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "sealdrop: pip install failed; see $log" >&2
    exit 1
  fi
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
