#!/usr/bin/env bash
# EXPLAIN ANALYZE of the analytics functions (schema/analytics.sql) at scale, on a
# throwaway local Postgres: EVENTS rows of "ResponseTimingEvent" (default 10
# million) over one year, 200 clients, 500,000 leads (a quarter booked).
# Prints the plan and timing of a one-client month and an all-clients month for
# the main sections. KEEP=1 keeps the temporary directory.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

EVENTS=${EVENTS:-10000000}
LEADS=${LEADS:-500000}
./scripts/install-deps.sh >/dev/null
cargo build --release --quiet
BIN=$PWD/target/release/replytime

PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
WORK=$(mktemp -d /tmp/replytime-explain.XXXXXX)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
[ "$(id -u)" -eq 0 ] && chown postgres: "$WORK"
cleanup() {
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -m fast stop >/dev/null 2>&1 || true
    if [ "${KEEP:-0}" = 1 ]; then echo "kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

as_pg "$PG_BIN/initdb" -D "$WORK/pg" -A trust -U postgres >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg.log" -w -o \
    "-c listen_addresses=127.0.0.1 -p $PORT -k $WORK -c shared_buffers=1GB -c work_mem=64MB -c max_wal_size=8GB -c fsync=off" start >/dev/null
PSQL=(psql -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres)
"${PSQL[@]}" -d postgres -c "CREATE DATABASE crm"
"${PSQL[@]}" -d crm -f schema/source.sql
"${PSQL[@]}" -d crm -f schema/sink.sql
# Secondary indexes are built after the bulk insert (sink.sql again, idempotent).
"${PSQL[@]}" -d crm -c "DO \$\$ DECLARE i text; BEGIN
    FOR i IN SELECT indexname FROM pg_indexes WHERE tablename = 'ResponseTimingEvent'
             AND indexname <> 'ResponseTimingEvent_pkey' LOOP
        EXECUTE format('DROP INDEX %I', i);
    END LOOP; END \$\$"

echo "generating $LEADS leads and $EVENTS events ..."
start=$(date +%s)
"${PSQL[@]}" -d crm <<SQL
INSERT INTO "Lead" (id, "clientId", "appointmentBookedAt", "appointmentCanceledAt")
SELECT 'lead_' || i, 'client_' || (i % 200),
       CASE WHEN i % 4 = 0 THEN timestamptz '2024-01-01' + (i % 365) * interval '1 day' + interval '2 days' END,
       CASE WHEN i % 40 = 0 THEN timestamptz '2024-01-01' + (i % 365) * interval '1 day' + interval '3 days' END
FROM generate_series(1, $LEADS) i;
INSERT INTO "ResponseTimingEvent"
    (id, "clientId", "leadId", channel, "inboundMessageId", "inboundSentAt",
     "setterResponseMessageId", "setterResponseSentAt", "setterSentByUserId", "setterResponseMs",
     "aiDraftId", "aiResponseMessageId", "aiResponseSentAt", "aiResponseMs",
     "aiDelayMinSeconds", "aiDelayMaxSeconds", "aiChosenDelaySeconds", "aiActualDelaySeconds",
     "aiScheduledRunAt")
SELECT gen_random_uuid(), 'client_' || (l % 200), 'lead_' || l,
       (ARRAY['sms','email','linkedin'])[(1 + i % 3)::int], 'in_' || i, t,
       CASE WHEN i % 3 <> 0 THEN 'set_' || i END,
       CASE WHEN i % 3 <> 0 THEN t + (i % 7200) * interval '1 second' END,
       CASE WHEN i % 3 <> 0 THEN 'user_' || (i % 50) END,
       CASE WHEN i % 3 <> 0 THEN (i % 7200) * 1000 END,
       CASE WHEN i % 2 = 0 THEN 'draft_' || i END,
       CASE WHEN i % 2 = 0 THEN 'ai_' || i END,
       CASE WHEN i % 2 = 0 THEN t + (180 + i % 241) * interval '1 second' + (i % 90) * interval '1 second' END,
       CASE WHEN i % 2 = 0 THEN (180 + i % 241 + i % 90) * 1000 END,
       CASE WHEN i % 2 = 0 THEN 180 END, CASE WHEN i % 2 = 0 THEN 420 END,
       CASE WHEN i % 2 = 0 THEN 180 + i % 241 END,
       CASE WHEN i % 2 = 0 THEN 180 + i % 241 + i % 90 END,
       CASE WHEN i % 2 = 0 THEN t + (180 + i % 241) * interval '1 second' END
FROM generate_series(1::bigint, $EVENTS) i,
     LATERAL (SELECT 1 + (i * 7919) % $LEADS AS l,
                     timestamptz '2024-01-01' + ((i * 104729) % 31536000) * interval '1 second' AS t) x;
SQL
"${PSQL[@]}" -d crm -f schema/sink.sql
"${PSQL[@]}" -d crm -c "VACUUM ANALYZE"
echo "generated in $(( $(date +%s) - start )) s"
export REPLYTIME_SOURCE_URL="postgres://postgres@127.0.0.1:$PORT/crm"
# `report` applies schema/analytics.sql (functions and indexes) before it runs.
"$BIN" report --from 2024-06-01 --to 2024-07-01 --client client_7 --section setter >/dev/null
"${PSQL[@]}" -d crm -c "VACUUM ANALYZE"

explain() {
    echo
    echo "### $1"
    "${PSQL[@]}" -d crm -c "EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF, SUMMARY ON) $2" | \
        grep -E "Index|Seq Scan|Execution Time|Planning Time|Hash Join|Nested Loop|Rows Removed" | head -14
}
for client in "'client_7'" "NULL"; do
    w="'2024-06-01', '2024-07-01', $client"
    explain "replytime_setter_buckets (month, client $client)" "SELECT * FROM replytime_setter_buckets($w)"
    explain "replytime_ai_delay_buckets (month, client $client)" "SELECT * FROM replytime_ai_delay_buckets($w)"
    explain "replytime_first_responder (month, client $client)" "SELECT * FROM replytime_first_responder($w)"
    explain "replytime_weekly_summary (month, client $client)" "SELECT * FROM replytime_weekly_summary($w)"
done
explain "replytime_lead_anchors (one lead)" "SELECT * FROM replytime_lead_anchors('lead_4242')"
