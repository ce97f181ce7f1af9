#!/usr/bin/env bash
# Headless Chromium + @auth0/auth0-spa-js against a live `idlink serve` (see
# browser_test.mjs). Needs Debian's chromium (`apt-get install -y chromium`; CHROMIUM
# names another binary) and npm; installs the pinned packages of package-lock.json with
# `npm ci` (no browser download). Closes with `browser: N passed, N failed`.
# Then ui_test.mjs drives the admin web UI at /ui/ (closing with `ui: N passed, N failed`),
# and link_prompt_test.mjs linking at sign-in on a second server configured with
# `[linking] at_sign_in = "prompt"` (closing with `link-prompt: N passed, N failed`).
# IDLINK_BIN: use this binary instead of `cargo build -p idlink`.
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d "${TMPDIR:-/tmp}/idlink-browser.XXXXXX")"
server_pid=""
emulator_pid=""
prompt_pid=""
cleanup() {
    if [[ -n "$server_pid" ]]; then kill -TERM "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; fi
    if [[ -n "$prompt_pid" ]]; then kill -TERM "$prompt_pid" 2>/dev/null; wait "$prompt_pid" 2>/dev/null; fi
    if [[ -n "$emulator_pid" ]]; then kill -TERM "$emulator_pid" 2>/dev/null; wait "$emulator_pid" 2>/dev/null; fi
    rm -rf "$work"
}
trap cleanup EXIT
fatal() { echo "browser: $*" >&2; echo "browser: 0 passed, 1 failed"; exit 1; }

[[ -x "${CHROMIUM:-/usr/bin/chromium}" ]] || fatal "no chromium (apt-get install -y chromium)"
if ! cmp -s "$here/package-lock.json" "$here/node_modules/.package-lock.json.idlink" 2>/dev/null; then
    (cd "$here" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error) \
        || fatal "npm ci failed"
    cp "$here/package-lock.json" "$here/node_modules/.package-lock.json.idlink"
fi

bin="${IDLINK_BIN:-}"
if [[ -z "$bin" ]]; then
    (cd "$root" && cargo build --quiet -p idlink) || fatal "cargo build failed"
    target_dir="$(cd "$root" && cargo metadata --format-version 1 --no-deps \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')"
    bin="$target_dir/debug/idlink"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
port="$(free_port)"
app_port="$(free_port)"
reader_secret="browser-reader-secret-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
cat >"$work/idlink.toml" <<TOML
[[clients]]
name = "Browser SPA"
client_id = "browser-spa"
app_type = "spa"
token_endpoint_auth_method = "none"
callbacks = ["http://localhost:$app_port/"]
allowed_logout_urls = ["http://localhost:$app_port/"]
web_origins = ["http://localhost:$app_port"]

[[clients]]
name = "Read-only operator"
client_id = "browser-reader"
client_secret = "$reader_secret"
grant_types = ["client_credentials"]
scopes = ["read:users"]

[[connections]]
name = "google-oauth2"
strategy = "google-oauth2"
emulated = true
TOML
admin_id="browser-admin"
admin_secret="browser-admin-secret-$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
IDLINK_ADMIN_CLIENT_ID="$admin_id" IDLINK_ADMIN_CLIENT_SECRET="$admin_secret" RUST_LOG=warn \
    "$bin" serve --bind "127.0.0.1:$port" --db "sqlite://$work/idlink.db" --config "$work/idlink.toml" \
    >"$work/server.log" 2>&1 &
server_pid=$!
base="http://127.0.0.1:$port"
for _ in $(seq 150); do
    curl -fsS "$base/health" >/dev/null 2>&1 && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log"; fatal "idlink exited on start"; }
    sleep 0.1
done

email="browser-db@example.com"
password="correct-Horse-battery-9"
token="$(curl -fsS "$base/oauth/token" -H 'content-type: application/json' -d "{\"grant_type\":\"client_credentials\",\"client_id\":\"$admin_id\",\"client_secret\":\"$admin_secret\",\"audience\":\"https://127.0.0.1:$port/api/v2/\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')" || fatal "no admin token"
curl -fsS "$base/api/v2/users" -H "authorization: Bearer $token" -H 'content-type: application/json' \
    -d "{\"connection\":\"Username-Password-Authentication\",\"email\":\"$email\",\"password\":\"$password\",\"email_verified\":true}" \
    >/dev/null || fatal "cannot create the database user"

IDLINK_BASE_URL="$base" APP_PORT="$app_port" DB_EMAIL="$email" DB_PASSWORD="$password" \
    node "$here/browser_test.mjs"
status=$?
# The admin web UI (ui_test.mjs): screenshots into tests/browser/screenshots/. An
# emulator beside the server, for the Emulator page (signed in automatically on loopback).
emulator_port="$(free_port)"
RUST_LOG=warn "$bin" emulate --bind "127.0.0.1:$emulator_port" >"$work/emulator.log" 2>&1 &
emulator_pid=$!
emulator_url="http://127.0.0.1:$emulator_port"
for _ in $(seq 150); do
    curl -fsS "$emulator_url/health" >/dev/null 2>&1 && break
    kill -0 "$emulator_pid" 2>/dev/null || { cat "$work/emulator.log"; fatal "idlink emulate exited on start"; }
    sleep 0.1
done
EMULATOR_URL="$emulator_url" IDLINK_BASE_URL="$base" ADMIN_CLIENT_ID="$admin_id" ADMIN_CLIENT_SECRET="$admin_secret" ADMIN_TOKEN="$token" \
    READER_CLIENT_ID="browser-reader" READER_CLIENT_SECRET="$reader_secret" \
    node "$here/ui_test.mjs"
ui_status=$?
[[ $status -eq 0 ]] && status=$ui_status

# Linking at sign-in: its own server, the same page, the setting on.
prompt_port="$(free_port)"
prompt_app_port="$(free_port)"
sed -e "s|localhost:$app_port|localhost:$prompt_app_port|g" "$work/idlink.toml" >"$work/prompt.toml"
printf '\n[linking]\nat_sign_in = "prompt"\n' >>"$work/prompt.toml"
IDLINK_ADMIN_CLIENT_ID="$admin_id" IDLINK_ADMIN_CLIENT_SECRET="$admin_secret" RUST_LOG=warn \
    "$bin" serve --bind "127.0.0.1:$prompt_port" --db "sqlite://$work/prompt.db" --config "$work/prompt.toml" \
    >"$work/prompt.log" 2>&1 &
prompt_pid=$!
prompt_base="http://127.0.0.1:$prompt_port"
for _ in $(seq 150); do
    curl -fsS "$prompt_base/health" >/dev/null 2>&1 && break
    kill -0 "$prompt_pid" 2>/dev/null || { cat "$work/prompt.log"; fatal "idlink (at_sign_in = prompt) exited on start"; }
    sleep 0.1
done
prompt_token="$(curl -fsS "$prompt_base/oauth/token" -H 'content-type: application/json' -d "{\"grant_type\":\"client_credentials\",\"client_id\":\"$admin_id\",\"client_secret\":\"$admin_secret\",\"audience\":\"https://127.0.0.1:$prompt_port/api/v2/\"}" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')" || fatal "no admin token (prompt server)"
create_user() {
    curl -fsS "$prompt_base/api/v2/users" -H "authorization: Bearer $prompt_token" -H 'content-type: application/json' \
        -d "{\"connection\":\"Username-Password-Authentication\",\"email\":\"$1\",\"password\":\"$password\",\"email_verified\":true}" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["user_id"])'
}
link_id="$(create_user link-db@example.com)" || fatal "cannot create the user to link"
decline_id="$(create_user decline-db@example.com)" || fatal "cannot create the user who declines"
IDLINK_BASE_URL="$prompt_base" APP_PORT="$prompt_app_port" ADMIN_TOKEN="$prompt_token" DB_PASSWORD="$password" \
    LINK_EMAIL="link-db@example.com" LINK_USER_ID="$link_id" \
    DECLINE_EMAIL="decline-db@example.com" DECLINE_USER_ID="$decline_id" \
    node "$here/link_prompt_test.mjs"
prompt_status=$?
[[ $status -eq 0 ]] && status=$prompt_status
[[ $prompt_status -ne 0 ]] && tail -20 "$work/prompt.log" >&2
[[ $status -ne 0 ]] && tail -20 "$work/server.log" >&2
exit $status
