# Sourced by scripts/test: what the browser tests need, installed idempotently from the
# registries (Debian for Chromium and Node, npm for Pyodide). Nothing is downloaded at test time.

apt_install() {
    # apt_install PACKAGE...: install the missing ones (as root, or through sudo).
    local missing=() pkg
    for pkg in "$@"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
            missing+=("$pkg")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    echo "== installing ${missing[*]} (Debian packages)"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# Chromium (driven by Playwright through executable_path: never `playwright install`), and
# Node with npm for the Pyodide runtime the worker bundle ships.
command -v chromium >/dev/null 2>&1 || apt_install chromium
command -v npm >/dev/null 2>&1 || apt_install nodejs npm

# The npm package `pyodide`, at the version package-lock.json pins.
want="$(cd "$ROOT" && node -p 'require("./package-lock.json").packages["node_modules/pyodide"].version')"
have="$(cd "$ROOT" && node -p 'try { require("./node_modules/pyodide/package.json").version } catch { "" }')"
if [ "$want" != "$have" ]; then
    echo "== installing pyodide@$want (npm)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
