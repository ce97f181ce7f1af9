#!/usr/bin/env bash
# Peak and settled RSS of the release binary under concurrent bad-password attempts
# (docs/security.md, "Password hashing"). Usage:
#   cargo build --release -p idlink
#   bash bench/scripts/argon2_rss.sh [BINARY] [CONCURRENCY] [SECONDS]
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/idlink}
CONCURRENCY=${2:-64}
SECONDS_TO_RUN=${3:-10}
DIR=$(mktemp -d)
PORT=$((20000 + RANDOM % 20000))
URL=http://127.0.0.1:$PORT
ID=rss-admin
SECRET=rss-admin-secret-0123456789abcdef
IDLINK_ADMIN_CLIENT_ID=$ID IDLINK_ADMIN_CLIENT_SECRET=$SECRET \
  "$BIN" serve --bind 127.0.0.1:$PORT --db "sqlite://$DIR/idlink.db" >"$DIR/log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null; rm -rf "$DIR"' EXIT
for _ in $(seq 100); do curl -sf "$URL/health" >/dev/null && break; sleep 0.1; done
rss() { awk '/VmRSS/ {print int($2/1024)}' /proc/$PID/status; }
hwm() { awk '/VmHWM/ {print int($2/1024)}' /proc/$PID/status; }
TOKEN=$(curl -s "$URL/oauth/token" -H 'content-type: application/json' \
  -d "{\"grant_type\":\"client_credentials\",\"client_id\":\"$ID\",\"client_secret\":\"$SECRET\",\"audience\":\"https://127.0.0.1:$PORT/api/v2/\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')
curl -s -o /dev/null "$URL/api/v2/users" -H "authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"connection":"Username-Password-Authentication","email":"victim@example.com","password":"correct-Horse-battery-9"}'
echo "idle RSS: $(rss) MB"
attempt() {
  local end=$1 user=$2 n=0
  while [ "$(date +%s)" -lt "$end" ]; do
    curl -s -o /dev/null "$URL/oauth/token" -H 'content-type: application/json' \
      -d "{\"grant_type\":\"http://auth0.com/oauth/grant-type/password-realm\",\"realm\":\"Username-Password-Authentication\",\"username\":\"$user\",\"password\":\"wrong-$n\",\"client_id\":\"$ID\",\"client_secret\":\"$SECRET\"}"
    n=$((n + 1))
  done
  echo $n
}
END=$(($(date +%s) + SECONDS_TO_RUN))
WORKERS=()
for i in $(seq "$CONCURRENCY"); do
  # Half against the real user's hash, half unknown users (the dummy hash).
  if [ $((i % 2)) = 0 ]; then user=victim@example.com; else user=nobody$i@example.com; fi
  attempt "$END" "$user" >"$DIR/n$i" &
  WORKERS+=($!)
done
PEAK=0
while [ "$(date +%s)" -lt "$END" ]; do
  now=$(rss); [ "$now" -gt "$PEAK" ] && PEAK=$now; sleep 0.2
done
wait "${WORKERS[@]}"
TOTAL=$(cat "$DIR"/n* | paste -sd+ | bc)
sleep 2
echo "concurrency $CONCURRENCY, ${SECONDS_TO_RUN} s: $TOTAL attempts; peak RSS sampled ${PEAK} MB (VmHWM $(hwm) MB); 2 s later $(rss) MB"
