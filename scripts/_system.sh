# Sourced by scripts/test: what the browser and deployment tests need, installed idempotently
# from the registries (Debian for Chromium, Node, nginx, docker-compose, PostgreSQL and Redis;
# npm for Pyodide).
# Nothing is downloaded at test time.

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
# The deployment tests: a real nginx in front of a coordinator, openssl for its certificate,
# and docker-compose for `config` (it validates the compose file; no engine runs here).
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_install nginx-light
command -v openssl >/dev/null 2>&1 || apt_install openssl
command -v docker-compose >/dev/null 2>&1 || apt_install docker-compose
# State in PostgreSQL and live rounds in Redis: the tests start real servers of both in
# temporary folders (tests/pg_server.py, tests/redis_server.py); nothing runs as a service.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || apt_install postgresql
command -v redis-server >/dev/null 2>&1 || apt_install redis-server

# The npm package `pyodide`, at the version package-lock.json pins.
want="$(cd "$ROOT" && node -p 'require("./package-lock.json").packages["node_modules/pyodide"].version')"
have="$(cd "$ROOT" && node -p 'try { require("./node_modules/pyodide/package.json").version } catch { "" }')"
if [ "$want" != "$have" ]; then
    echo "== installing pyodide@$want (npm)"
    (cd "$ROOT" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
