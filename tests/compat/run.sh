#!/usr/bin/env bash
# The official Auth0 SDKs against a live idlink: auth0-python (tests/compat/python) and
# the `auth0` npm package (tests/compat/node), each run twice:
#   1. plain HTTP, the SDKs given an explicit base URL where they take one;
#   2. HTTPS (--tls-self-signed), the SDKs given only a domain, trusting the generated
#      certificate through REQUESTS_CA_BUNDLE / SSL_CERT_FILE / NODE_EXTRA_CA_CERTS;
#   3. emulate: `idlink emulate` (in-memory tenant) over plain HTTP, where the suites also
#      count the SDKs' retries through the emulator's fault injection.
#
# Needs: cargo, python3 (3.9+) with venv, node 20+ and npm, and access to PyPI and npm.
# Installs into tests/compat/python/.venv and tests/compat/node/node_modules (reused when
# the pinned versions are already there). Exits non-zero on any failure and closes with
# `compat: N passed, N failed, N skipped`.
#
# Environment: IDLINK_BIN (use this binary instead of `cargo build -p idlink`),
# IDLINK_COMPAT_SUITES (default "python node"), IDLINK_COMPAT_MODES (default "http https emulate"),
# IDLINK_COMPAT_KEEP=1 keeps the temporary directory (logs, database).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
suites="${IDLINK_COMPAT_SUITES:-python node}"
modes="${IDLINK_COMPAT_MODES:-http https emulate}"

passed=0
failed=0
skipped=0
server_pid=""
work="$(mktemp -d "${TMPDIR:-/tmp}/idlink-compat.XXXXXX")"

say() { printf '== %s\n' "$*"; }

stop_server() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        for _ in $(seq 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}

cleanup() {
    stop_server
    if [[ "${IDLINK_COMPAT_KEEP:-0}" == 1 ]]; then
        echo "kept $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A failure outside the suites (install, build, start) counts as one failed check.
fatal() {
    echo "compat: $*" >&2
    failed=$((failed + 1))
    echo "compat: $passed passed, $failed failed, $skipped skipped"
    exit 1
}

# Adds the counts from a suite's closing line ("...: N passed, N failed[, N skipped]").
tally() {
    local line="$1" p f s
    p="$(sed -n 's/.* \([0-9][0-9]*\) passed.*/\1/p' <<<"$line")"
    f="$(sed -n 's/.* \([0-9][0-9]*\) failed.*/\1/p' <<<"$line")"
    s="$(sed -n 's/.* \([0-9][0-9]*\) skipped.*/\1/p' <<<"$line")"
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
    skipped=$((skipped + ${s:-0}))
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# --- install -------------------------------------------------------------------------

if [[ " $suites " == *" python "* ]]; then
    say "python: virtualenv with tests/compat/python/requirements.txt"
    venv="$here/python/.venv"
    if ! "$venv/bin/python" -c 'import auth0' 2>/dev/null \
        || ! cmp -s "$here/python/requirements.txt" "$venv/.idlink-requirements.txt"; then
        rm -rf "$venv"
        python3 -m venv "$venv" || fatal "cannot create a virtualenv (python3 -m venv)"
        "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps \
            -r "$here/python/requirements.txt" || fatal "pip install failed"
        "$venv/bin/pip" check >/dev/null || fatal "pip check: inconsistent requirements.txt"
        cp "$here/python/requirements.txt" "$venv/.idlink-requirements.txt"
    fi
fi

if [[ " $suites " == *" node "* ]]; then
    say "node: npm ci (package-lock.json)"
    if ! cmp -s "$here/node/package-lock.json" "$here/node/node_modules/.package-lock.json.idlink" 2>/dev/null; then
        (cd "$here/node" && npm ci --no-audit --no-fund --loglevel=error) || fatal "npm ci failed"
        cp "$here/node/package-lock.json" "$here/node/node_modules/.package-lock.json.idlink"
    fi
fi

# --- build ---------------------------------------------------------------------------

bin="${IDLINK_BIN:-}"
if [[ -z "$bin" ]]; then
    say "cargo build -p idlink"
    (cd "$root" && cargo build --quiet -p idlink) || fatal "cargo build failed"
    target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps 2>/dev/null \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    bin="${target_dir:-$root/target}/debug/idlink"
fi
[[ -x "$bin" ]] || fatal "no idlink binary at $bin"

# --- run -----------------------------------------------------------------------------

admin_id="compat-admin"
admin_secret="compat-admin-secret-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"

healthy() { # url cert
    python3 - "$1" "$2" <<'PY' 2>/dev/null
import os, ssl, sys, urllib.request
url, cert = sys.argv[1], sys.argv[2]
context = ssl.create_default_context(cafile=cert) if url.startswith("https") and os.path.exists(cert) else None
with urllib.request.urlopen(url + "/health", timeout=2, context=context) as response:
    sys.exit(0 if response.status == 200 else 1)
PY
}

start_server() { # mode
    local mode="$1" dir="$work/$1" port url
    mkdir -p "$dir"
    port="$(free_port)"
    local args=(serve --bind "127.0.0.1:$port" --db "sqlite://$dir/idlink.db")
    [[ "$mode" == https ]] && args+=(--tls-self-signed)
    [[ "$mode" == emulate ]] && args=(emulate --bind "127.0.0.1:$port")
    local scheme=http
    [[ "$mode" == https ]] && scheme=https
    IDLINK_ADMIN_CLIENT_ID="$admin_id" IDLINK_ADMIN_CLIENT_SECRET="$admin_secret" \
        RUST_LOG="${RUST_LOG:-warn}" "$bin" "${args[@]}" >"$dir/server.log" 2>&1 &
    server_pid=$!
    url="$scheme://127.0.0.1:$port"
    for _ in $(seq 150); do
        if ! kill -0 "$server_pid" 2>/dev/null; then
            cat "$dir/server.log" >&2
            fatal "idlink ($mode) exited on start"
        fi
        if healthy "$url" "$dir/idlink-tls.crt"; then
            domain="127.0.0.1:$port"
            base_url="$url"
            cert="$dir/idlink-tls.crt"
            return 0
        fi
        sleep 0.1
    done
    cat "$dir/server.log" >&2
    fatal "idlink ($mode) did not answer /health on $url"
}

run_suite() { # suite mode
    local suite="$1" mode="$2" log="$work/$2/$1.log" status line
    local env=(
        IDLINK_MODE="$mode" IDLINK_DOMAIN="$domain" IDLINK_BASE_URL="$base_url"
        IDLINK_ADMIN_CLIENT_ID="$admin_id" IDLINK_ADMIN_CLIENT_SECRET="$admin_secret"
        IDLINK_RUN_ID="$(date +%s%N)"
    )
    if [[ "$mode" == https ]]; then
        env+=(REQUESTS_CA_BUNDLE="$cert" SSL_CERT_FILE="$cert" NODE_EXTRA_CA_CERTS="$cert")
    fi
    say "$suite over $mode ($base_url)"
    case "$suite" in
        python) (cd "$here/python" && env "${env[@]}" .venv/bin/python compat_test.py) 2>&1 | tee "$log" ;;
        node) (cd "$here/node" && env "${env[@]}" node compat.mjs) 2>&1 | tee "$log" ;;
        *) fatal "unknown suite $suite" ;;
    esac
    status=${PIPESTATUS[0]}
    line="$(grep -E '^[a-z]+ \([a-z]+\): [0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)"
    if [[ -z "$line" ]]; then
        echo "compat: $suite ($mode) ended (status $status) without a summary line"
        failed=$((failed + 1))
        return
    fi
    tally "$line"
    if [[ $status -ne 0 && "$line" == *" 0 failed"* ]]; then
        echo "compat: $suite ($mode) exited with status $status"
        failed=$((failed + 1))
    fi
}

for mode in $modes; do
    start_server "$mode"
    for suite in $suites; do
        run_suite "$suite" "$mode"
    done
    stop_server
    if [[ "$mode" == https ]]; then
        # The certificate is kept beside the database and reused on restart.
        cp "$work/https/idlink-tls.crt" "$work/https/first.crt"
        start_server https
        cmp -s "$work/https/idlink-tls.crt" "$work/https/first.crt" \
            && { echo "PASS self-signed certificate reused on restart"; passed=$((passed + 1)); } \
            || { echo "FAIL self-signed certificate was not reused on restart"; failed=$((failed + 1)); }
        stop_server
    fi
done

echo "compat: $passed passed, $failed failed, $skipped skipped"
[[ $failed -eq 0 ]]
