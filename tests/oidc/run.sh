#!/usr/bin/env bash
# A real OIDC relying party (Python authlib, pinned in requirements.txt) against a live
# `idlink serve`: code + PKCE through the login page, ID token verified via the JWKS.
# Installs into tests/oidc/.venv (reused while requirements.txt is unchanged). Closes with
# `oidc: N passed, N failed`. IDLINK_BIN: use this binary instead of `cargo build -p idlink`.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/idlink-oidc.XXXXXX")"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill -TERM "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; fi
    rm -rf "$work"
}
trap cleanup EXIT
fatal() { echo "oidc: $*" >&2; echo "oidc: 0 passed, 1 failed"; exit 1; }

venv="$here/.venv"
if ! cmp -s "$here/requirements.txt" "$venv/.idlink-requirements.txt" 2>/dev/null; then
    rm -rf "$venv"
    python3 -m venv "$venv" || fatal "cannot create a virtualenv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$here/requirements.txt" \
        || fatal "pip install failed"
    cp "$here/requirements.txt" "$venv/.idlink-requirements.txt"
fi

bin="${IDLINK_BIN:-}"
if [[ -z "$bin" ]]; then
    (cd "$root" && cargo build --quiet -p idlink) || fatal "cargo build failed"
    target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    bin="$target_dir/debug/idlink"
fi

cat >"$work/idlink.toml" <<'TOML'
[[clients]]
name = "OIDC relying party"
client_id = "oidc-rp"
app_type = "native"
token_endpoint_auth_method = "none"
callbacks = ["http://127.0.0.1:1/callback"]
TOML
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
admin_id="oidc-admin"
admin_secret="oidc-admin-secret-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
IDLINK_ADMIN_CLIENT_ID="$admin_id" IDLINK_ADMIN_CLIENT_SECRET="$admin_secret" RUST_LOG=warn \
    "$bin" serve --bind "127.0.0.1:$port" --db "sqlite://$work/idlink.db" --config "$work/idlink.toml" \
    >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 150); do
    curl -fsS "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; fatal "idlink exited on start"; }
    sleep 0.1
done

IDLINK_BASE_URL="http://127.0.0.1:$port" IDLINK_ADMIN_CLIENT_ID="$admin_id" \
    IDLINK_ADMIN_CLIENT_SECRET="$admin_secret" "$venv/bin/python" "$here/oidc_test.py"
