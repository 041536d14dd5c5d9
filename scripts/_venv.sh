# Sourced by scripts/*: create .venv and install the project into it, once.
# Re-installs only when pyproject.toml changed since the last install.
# While pip works, one short line per step (collecting, downloading, building,
# installing) instead of minutes of silence: on a terminal each line replaces
# the last; in a log (CI) each is its own line. pip's whole output goes to the
# install log, whose tail is shown if pip fails.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SEALDROP_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

# Reads pip's output on stdin; writes the progress lines to stderr. Never fails:
# the pipeline's status is pip's (pipefail).
_sealdrop_pip_progress() {
  local line last="" step=0 width=72 tty=""
  [ -t 2 ] && tty=1
  while IFS= read -r line; do
    line="${line#"${line%%[![:space:]]*}"}"   # pip indents the steps of a step
    case "$line" in
      Collecting\ *|Obtaining\ *|Downloading\ *|Building\ wheel\ for\ *|Building\ editable\ for\ *|\
Installing\ collected*|Successfully\ installed*)
        line="${line%% (*}"            # "(from …)", "(12 kB)": detail for the log
        line="${line:0:$width}"
        [ "$line" = "$last" ] && continue  # "started", then "finished": one step
        last="$line"
        step=$((step + 1))
        if [ -n "$tty" ]; then
          printf '\r\033[K  [%d] %s' "$step" "$line" >&2
        else
          printf '  [%d] %s\n' "$step" "$line" >&2
        fi
        ;;
    esac
  done
  if [ -n "$tty" ] && [ "$step" -gt 0 ]; then printf '\r\033[K' >&2; fi
  return 0
}

if [ ! -x "$VENV/bin/python" ]; then
  echo "sealdrop: creating the virtual environment $VENV" >&2
  "$PY" -m venv "$VENV"
fi
stamp="$VENV/.sealdrop-installed"
if [ ! -f "$stamp" ] || [ "$ROOT/pyproject.toml" -nt "$stamp" ]; then
  log="$VENV/install.log"
  echo "sealdrop: installing into $VENV, a few minutes the first time (log: $log)" >&2
  if ! PYTHONUNBUFFERED=1 "$VENV/bin/pip" install --progress-bar off -e "$ROOT[test]" 2>&1 \
      | tee "$log" | _sealdrop_pip_progress; then
    tail -n 30 "$log" >&2
    echo "sealdrop: pip install failed; see $log" >&2
    exit 1
  fi
  echo "sealdrop: installed" >&2
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
