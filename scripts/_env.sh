# Sourced by scripts/demo and scripts/test: find Python >= 3.12 and make the project's venv.
# Idempotent: a second run reuses .venv and installs nothing new.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${DANDELION_VENV:-$ROOT/.venv}"

find_python() {
    local candidate
    for candidate in "${PYTHON:-}" python3.12 python3.13 python3; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
            echo "$candidate"
            return 0
        fi
    done
    echo "Dandelion needs Python >= 3.12 (set PYTHON=/path/to/python3.12)" >&2
    return 1
}

if [ ! -x "$VENV/bin/python" ]; then
    PY="$(cd "$ROOT" && find_python)"
    (cd "$ROOT" && "$PY" -m venv "$VENV")
    "$VENV/bin/python" -m pip install -q --upgrade pip
fi

# pip_install EXTRA: install the project (editable) with an optional extra, quietly.
pip_install() {
    local spec="$ROOT"
    [ -n "${1:-}" ] && spec="$ROOT[$1]"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$spec"
}
