# Shared set-up for scripts/demo and scripts/test: uv, then one virtualenv per Airflow version.
# Sourced, not run. Idempotent: a second run only checks that everything is installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"

if ! command -v uv >/dev/null 2>&1; then
  echo "==> installing uv (fast installer) from PyPI"
  "$PY" -m pip install --quiet --user uv 2>/dev/null || "$PY" -m pip install --quiet uv
  export PATH="$HOME/.local/bin:$PATH"
fi

# make_venv DIR REQUIREMENTS EXTRAS
make_venv() {
  local dir="$1" reqs="$2" extras="$3"
  if [ ! -x "$dir/bin/python" ]; then
    echo "==> creating $dir"
    uv venv --quiet --python "$PY" "$dir"
  fi
  echo "==> installing into $dir ($reqs)"
  uv pip install --quiet --python "$dir/bin/python" -r "$reqs" -e ".[$extras]"
}
