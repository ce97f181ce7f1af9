#!/usr/bin/env bash
# The PostgreSQL-relevant tests once more, through PgBouncer (Debian's pgbouncer, 1.18),
# started on a free port of 127.0.0.1 and stopped when this script ends. The test
# servers reach PostgreSQL through the pooler with --db-pooler transaction; their
# databases are created and migrated over the direct URL (--db-migrate-url). See
# docs/scaling.md "Behind PgBouncer".
# PGBOUNCER_POOL_MODE: transaction (default; what CI runs) or session.
# PGBOUNCER_POOL_SIZE: server connections per database. Default in transaction mode 4,
# fewer than a test server's pool, so that clients share server connections between
# transactions; in session mode 20 (each client keeps one for its whole life).
#
# Needs: pgbouncer on PATH (or /usr/sbin), and IDLINK_TEST_POSTGRES_URL, the direct
# URL of a PostgreSQL that trusts local connections (CI's postgres://postgres@127.0.0.1:5432/test).
# Extra arguments go to `cargo test` (e.g. `-- --nocapture`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
direct="${IDLINK_TEST_POSTGRES_URL:?IDLINK_TEST_POSTGRES_URL (the direct PostgreSQL URL) is needed}"
pgbouncer="$(command -v pgbouncer || echo /usr/sbin/pgbouncer)"
[[ -x "$pgbouncer" ]] || { echo "pgbouncer: not installed (apt-get install pgbouncer)" >&2; exit 1; }

# host and port of the direct URL: postgres://user[:pw]@host:port/db
authority="${direct#*://}"; authority="${authority%%/*}"; hostport="${authority##*@}"
pg_host="${hostport%%:*}"; pg_port="${hostport##*:}"; [[ "$pg_port" == "$hostport" ]] && pg_port=5432
pg_user="${authority%%@*}"; pg_user="${pg_user%%:*}"

work="$(mktemp -d "${TMPDIR:-/tmp}/idlink-pgbouncer.XXXXXX")"
chmod 755 "$work"
pid=""
cleanup() {
    if [[ -n "$pid" ]]; then kill -TERM "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

pool_mode="${PGBOUNCER_POOL_MODE:-transaction}"
if [[ "$pool_mode" == transaction ]]; then pool_size="${PGBOUNCER_POOL_SIZE:-4}"; else pool_size="${PGBOUNCER_POOL_SIZE:-20}"; fi
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
printf '"%s" ""\n' "$pg_user" > "$work/userlist.txt"
cat > "$work/pgbouncer.ini" <<INI
[databases]
; every database name, including the tests' idlink_t_*, on the one server
* = host=$pg_host port=$pg_port

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
unix_socket_dir =
auth_type = trust
auth_file = $work/userlist.txt
pool_mode = $pool_mode
max_client_conn = 2000
default_pool_size = $pool_size
; sqlx sends extra_float_digits at start-up; PgBouncer 1.18 refuses unknown parameters
ignore_startup_parameters = extra_float_digits,options
logfile = $work/pgbouncer.log
INI

# PgBouncer refuses to run as root: switch to the PostgreSQL account then.
user_args=()
if [[ "$(id -u)" == 0 ]]; then user_args=(-u postgres); chown -R postgres "$work"; fi
"$pgbouncer" "${user_args[@]}" "$work/pgbouncer.ini" &
pid=$!
for _ in $(seq 1 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null || { cat "$work/pgbouncer.log" >&2; echo "pgbouncer did not start" >&2; exit 1; }
echo "pgbouncer $("$pgbouncer" --version | head -n1) on 127.0.0.1:$port, pool_mode = $pool_mode, default_pool_size = $pool_size"

pooled="postgres://$authority"; pooled="${pooled/$hostport/127.0.0.1:$port}/${direct##*/}"
cd "$root"
status=0
# --workspace (not -p idlink-server): the same feature set as CI's workspace build, so
# the dependencies already built are reused instead of built again.
IDLINK_TEST_BACKEND=postgres \
IDLINK_TEST_POSTGRES_URL="$pooled" \
IDLINK_TEST_POSTGRES_DIRECT_URL="$direct" \
    cargo test --workspace \
        --test linking --test concurrency_restart --test postgres_multi_instance \
        --test password_policy --test jobs --test idempotency --test events "$@" || status=$?
if [[ $status -ne 0 ]]; then tail -n 40 "$work/pgbouncer.log" >&2 || true; fi
exit $status
