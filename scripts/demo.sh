#!/usr/bin/env bash
# The main job, end to end, on a throwaway local Postgres:
#   install what is missing → build → start Postgres with logical replication →
#   apply the reference schema → run the daemon → write a simulated CRM workload →
#   show rows appearing, the metrics URL, a short report and the HTML report's
#   path (target/replytime-report.html, or $REPORT_HTML) → stop everything.
# DEMO_SECONDS (default 20) sets how long the workload runs; KEEP=1 keeps the
# temporary directory (Postgres data, RocksDB state, daemon log).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

./scripts/install-deps.sh
say "building replytime (release)"
cargo build --release --quiet
BIN=$PWD/target/release/replytime

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/replytime-demo.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
METRICS_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK"

cleanup() {
    [ -n "${DAEMON:-}" ] && kill -TERM "$DAEMON" 2>/dev/null && wait "$DAEMON" 2>/dev/null || true
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

say "starting a throwaway PostgreSQL on 127.0.0.1:$PORT (wal_level=logical)"
as_pg "$PG_BIN/initdb" -D "$WORK/pg" -A trust -U postgres >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w -o \
    "-c wal_level=logical -c max_replication_slots=8 -c max_wal_senders=8 -c listen_addresses=127.0.0.1 -p $PORT -k $WORK" start >/dev/null
PSQL=(psql -X -q -h 127.0.0.1 -p "$PORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE crm"
"${PSQL[@]}" -d crm -f schema/source.sql
echo "applied schema/source.sql"

export REPLYTIME_SOURCE_URL="postgres://postgres@127.0.0.1:$PORT/crm"
export REPLYTIME_STATE_DIR="$WORK/state"
export REPLYTIME_METRICS_ADDR="127.0.0.1:$METRICS_PORT"
export REPLYTIME_HEARTBEAT_INTERVAL_MS=1000

say "seeding existing data (picked up by the initial load)"
"$BIN" simulate --transactions 2000 --seed 1 --leads 500

say "starting: replytime run   (log: $WORK/replytime.log)"
"$BIN" run >"$WORK/replytime.log" 2>&1 &
DAEMON=$!
echo "metrics: http://$REPLYTIME_METRICS_ADDR/metrics   health: /healthz /readyz"

say "simulated CRM traffic for ${DEMO_SECONDS:-20} s (inbound bursts, setter and AI replies, drafts, delayed jobs)"
"$BIN" simulate --duration "${DEMO_SECONDS:-20}s" --rate 100 --seed 2 --leads 500 2>/dev/null &
SIM=$!
while kill -0 "$SIM" 2>/dev/null; do
    sleep 4
    "${PSQL[@]}" -d crm -At -c "SELECT format('rows in \"ResponseTimingEvent\": %s (setter answered %s, AI answered %s)',
        count(*), count(\"setterResponseMs\"), count(\"aiResponseMs\")) FROM \"ResponseTimingEvent\"" 2>/dev/null || true
done
wait "$SIM" || true
sleep 2

say "a few rows"
"${PSQL[@]}" -d crm -c "SELECT \"inboundMessageId\", channel, \"setterResponseMs\", \"aiResponseMs\", \"aiChosenDelaySeconds\", \"aiActualDelaySeconds\"
    FROM \"ResponseTimingEvent\" ORDER BY \"inboundSentAt\" DESC LIMIT 8"

say "metrics (selection) from http://$REPLYTIME_METRICS_ADDR/metrics"
curl -s "http://$REPLYTIME_METRICS_ADDR/metrics" | grep -E '^replytime_(replication_lag|changes_total|anchors_|outbox_pending|held_anchors|lsn|heartbeat_freshness_seconds_(sum|count))' || true

say "report: response times by channel"
"${PSQL[@]}" -d crm -c "SELECT channel, count(*) AS anchors,
        round(100.0 * count(*) FILTER (WHERE \"setterResponseMs\" IS NOT NULL OR \"aiResponseMs\" IS NOT NULL) / count(*), 1) AS answered_pct,
        round((percentile_cont(0.5) WITHIN GROUP (ORDER BY \"setterResponseMs\") / 1000)::numeric, 1) AS setter_p50_s,
        round((percentile_cont(0.5) WITHIN GROUP (ORDER BY \"aiResponseMs\") / 1000)::numeric, 1) AS ai_p50_s,
        count(*) FILTER (WHERE abs(extract(epoch FROM \"aiScheduledRunAt\" - \"inboundSentAt\") - \"aiChosenDelaySeconds\") > 1) AS delay_mismatches
    FROM \"ResponseTimingEvent\" GROUP BY channel ORDER BY channel"

say "replytime report: setter response time and AI delay vs booking rate (simulated March 2024)"
"$BIN" report --from 2024-03-01 --to 2024-04-01 --section setter --section ai-delay --section first-responder

say "replytime report as one self-contained HTML page (charts and tables; kept after the demo)"
REPORT_HTML=${REPORT_HTML:-$PWD/target/replytime-report.html}
"$BIN" report --from 2024-03-01 --to 2024-04-01 --format html --output "$REPORT_HTML"
echo "HTML report: $REPORT_HTML"

say "replytime status"
"$BIN" status || true

say "stopping (SIGTERM: drain, flush, final status update)"
kill -TERM "$DAEMON"; wait "$DAEMON" || true; DAEMON=
tail -3 "$WORK/replytime.log"
