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

# find_python VERSION: print the path of a working interpreter for Python VERSION (e.g. 3.12), or fail.
# Candidates: pythonVERSION on PATH, pyenv's installed versions (newest first), then uv's discovery.
# A candidate that does not run, or runs another version (a pyenv shim whose version is not selected
# fails this way), counts as missing.
find_python() {
  local v="$1" c
  local -a candidates=()
  c="$(command -v "python$v" 2>/dev/null || true)"; [ -n "$c" ] && candidates+=("$c")
  while IFS= read -r c; do [ -n "$c" ] && candidates+=("$c"); done < <(
    ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/python"$v" 2>/dev/null | sort -rV)
  c="$(uv python find --no-python-downloads "$v" 2>/dev/null || true)"; [ -n "$c" ] && candidates+=("$c")
  for c in "${candidates[@]}"; do
    if [ "$("$c" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" = "$v" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

# make_venv DIR REQUIREMENTS EXTRAS [INTERPRETER]: INTERPRETER defaults to $PY. A DIR made with another
# Python version is made again.
make_venv() {
  local dir="$1" reqs="$2" extras="$3" interp="${4:-$PY}"
  local want
  want="$("$interp" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  if [ -x "$dir/bin/python" ] && \
     [ "$("$dir/bin/python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" != "$want" ]; then
    echo "==> $dir is not Python $want; making it again"
    rm -rf "$dir"
  fi
  if [ ! -x "$dir/bin/python" ]; then
    echo "==> creating $dir (Python $want)"
    uv venv --quiet --python "$interp" "$dir"
  fi
  echo "==> installing into $dir ($reqs, Python $want)"
  uv pip install --quiet --python "$dir/bin/python" -r "$reqs" -e ".[$extras]"
}
