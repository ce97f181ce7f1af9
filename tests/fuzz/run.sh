#!/usr/bin/env bash
# Fuzz idlink with schemathesis against its own OpenAPI document.
#
# Starts `idlink serve` on a temporary SQLite database (pinned admin credentials,
# rate limit off), seeds a few users, gets an admin token, and runs schemathesis
# (PyPI, pinned, installed into tests/fuzz/.venv) against /api/v2/openapi.json with a
# bounded number of examples per operation. Checks: no 5xx, every status documented,
# content types and response bodies as the document says. About 10 s on 2 cores with
# the defaults (plus the build and, on first run, the install).
#
# Needs: cargo, python3 (3.9+) with venv, curl, and access to PyPI on first run.
# Exits non-zero on any failure and closes with `fuzz: N passed, N failed` (operations).
#
# Environment: IDLINK_BIN (use this binary instead of `cargo build -p idlink`),
# IDLINK_FUZZ_EXAMPLES (examples per operation and phase, default 40),
# IDLINK_FUZZ_SEED (default 1; `random` for a new seed each run),
# IDLINK_FUZZ_PHASES (default examples,coverage,fuzzing,stateful; stateful follows the
# links schemathesis infers between operations), IDLINK_FUZZ_CHECKS (default the four
# above; `all` also reports where the document is looser than the server's validation),
# IDLINK_FUZZ_DATABASE_URL (default a temporary SQLite file; an empty postgres:// database
# works too), IDLINK_FUZZ_KEEP=1 keeps the temporary directory (server log, reports).
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
schemathesis_version="4.32.5"
examples="${IDLINK_FUZZ_EXAMPLES:-40}"
seed="${IDLINK_FUZZ_SEED:-1}"
client_id="fuzz-admin"
client_secret="fuzz-admin-secret-0123456789abcdef0123"
work="$(mktemp -d "${TMPDIR:-/tmp}/idlink-fuzz.XXXXXX")"
server_pid=""

cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    if [[ "${IDLINK_FUZZ_KEEP:-0}" == 1 ]]; then echo "kept $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

fatal() {
    echo "fuzz: $*" >&2
    echo "fuzz: 0 passed, 1 failed"
    exit 1
}

# 1. schemathesis, pinned, in its own virtualenv.
venv="$here/.venv"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$schemathesis_version"; then
    echo "== installing schemathesis $schemathesis_version into $venv"
    python3 -m venv "$venv" || fatal "cannot create $venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        "schemathesis==$schemathesis_version" || fatal "cannot install schemathesis"
fi

# 2. The server.
bin="${IDLINK_BIN:-}"
if [[ -z "$bin" ]]; then
    echo "== building idlink"
    (cd "$root" && cargo build --quiet -p idlink) || fatal "build failed"
    bin="${CARGO_TARGET_DIR:-$root/target}/debug/idlink"
fi
database_url="${IDLINK_FUZZ_DATABASE_URL:-sqlite://$work/idlink.db}"
echo "== starting $bin on $database_url"
RUST_LOG=warn "$bin" serve --bind 127.0.0.1:0 --db "$database_url" \
    --rate-limit off --admin-client-id "$client_id" --admin-client-secret "$client_secret" \
    >"$work/server.out" 2>"$work/server.err" </dev/null &
server_pid=$!
base=""
for _ in $(seq 300); do
    base="$(sed -n 's/^idlink listening on \([^ ]*\).*/http:\/\/\1/p' "$work/server.out" | head -n1)"
    [[ -n "$base" ]] && break
    kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; fatal "idlink exited"; }
    sleep 0.1
done
[[ -n "$base" ]] || fatal "idlink did not start"
echo "== idlink at $base"

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }
audience="https://${base#http://}/api/v2/"
token="$(curl -sf "$base/oauth/token" -H 'content-type: application/json' \
    -d "{\"grant_type\":\"client_credentials\",\"client_id\":\"$client_id\",\"client_secret\":\"$client_secret\",\"audience\":\"$audience\"}" \
    | json_field "['access_token']")" || fatal "no admin token"

# A few users, so that reads and links find something.
api() { curl -sf -o /dev/null "$@" -H "authorization: Bearer $token" -H 'content-type: application/json'; }
api "$base/api/v2/users" -d '{"connection":"Username-Password-Authentication","email":"fuzz@example.com","password":"fuzz-Password-1"}' || fatal "seeding failed"
api "$base/api/v2/users" -d '{"connection":"github","user_id":1,"email":"gh@example.com"}' || fatal "seeding failed"
api "$base/api/v2/users" -d '{"connection":"google-oauth2","user_id":"g1","email":"g@example.com"}' || fatal "seeding failed"
api "$base/api/v2/users/github%7C1/identities" -d '{"provider":"google-oauth2","user_id":"g1"}' || fatal "seeding failed"

# 3. The fuzzing.
seed_args=()
[[ "$seed" != random ]] && seed_args=(--seed "$seed")
echo "== schemathesis: $examples examples per operation and phase, seed $seed"
# (From the temporary directory: schemathesis keeps a cache in the working directory.)
(cd "$work" && "$venv/bin/schemathesis" run "$base/api/v2/openapi.json" \
    --url "$base" \
    --header "Authorization: Bearer $token" \
    --checks "${IDLINK_FUZZ_CHECKS:-not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance}" \
    --phases "${IDLINK_FUZZ_PHASES:-examples,coverage,fuzzing,stateful}" \
    --max-examples "$examples" \
    "${seed_args[@]}" \
    --workers 2 \
    --request-timeout 20 \
    --suppress-health-check all \
    --report junit --report-junit-path "$work/junit.xml" \
    --no-color 2>&1) | tee "$work/schemathesis.out"
status=${PIPESTATUS[0]}

kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.err" >&2; fatal "idlink died during the run"; }
if grep -q "internal error" "$work/server.err"; then
    echo "== the server logged internal errors:" >&2
    grep "internal error" "$work/server.err" | head -n 20 >&2
    status=1
fi

# 4. The verdict, per operation, from the JUnit report.
read -r passed failed < <(python3 - "$work/junit.xml" <<'EOF'
import sys, xml.etree.ElementTree as ET
try:
    root = ET.parse(sys.argv[1]).getroot()
except Exception:
    print(0, 1); raise SystemExit
cases = root.iter("testcase")
passed = failed = 0
for case in cases:
    if case.find("failure") is not None or case.find("error") is not None:
        failed += 1
    elif case.find("skipped") is None:
        passed += 1
print(passed, failed)
EOF
)
if [[ "$status" -ne 0 && "$failed" -eq 0 ]]; then failed=1; fi
echo "fuzz: $passed passed, $failed failed"
[[ "$status" -eq 0 && "$failed" -eq 0 ]]
