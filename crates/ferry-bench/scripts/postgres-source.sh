#!/bin/sh
# Rows/s from a PostgreSQL table into Ferry's store: one run of a `postgres` source over
# ROWS rows, pages of PAGE, timed by the hub's own "pull run finished" log line.
# Usage: postgres-source.sh BIN_DIR ROWS PAGE   (BIN_DIR holds release `ferry` and `ferry-bench`;
# the database is FERRY_BENCH_POSTGRES_URL, default the local `test`). Deliveries go to
# `ferry-bench ceiling` on 127.0.0.1:8099 while the run reads.
set -eu
T=$1; ROWS=$2; PAGE=$3
PG=${FERRY_BENCH_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/test}
SCHEMA=ferry_bench_$$
D=$(mktemp -d)
mkdir -p $D/cfg/flows
psql -q $PG -c "CREATE SCHEMA $SCHEMA; CREATE TABLE $SCHEMA.items (id bigint PRIMARY KEY, updated_at timestamptz NOT NULL, kind text NOT NULL, email text, amount_cents bigint, note text);
INSERT INTO $SCHEMA.items SELECT i, '2026-01-01'::timestamptz + (i / 3) * interval '1 ms', 'customer.updated', 'user' || i || '@example.com', i * 7, repeat('x', 120) FROM generate_series(1, $ROWS) i;
CREATE INDEX ON $SCHEMA.items (updated_at, id); ANALYZE $SCHEMA.items;"
printf '%s' "$PG" > $D/cfg/pg-url
cat > $D/cfg/ferry.yaml <<YAML
settings:
  listen: 127.0.0.1:0
  delivery:
    egress_allow: [127.0.0.0/8]
systems:
  crm: { owner: team-a }
  sink: { owner: team-b }
YAML
cat > $D/cfg/flows/bench.yaml <<YAML
flows:
  bench:
    source:
      postgres:
        system: crm
        url: { file: pg-url }
        table: $SCHEMA.items
        cursor: { column: updated_at }
        record_id: id
        event_type: kind
        schedule: "0 0 1 1 *"
        page_size: $PAGE
        max_pages: 100000
    destinations:
      sink:
        system: sink
        http: { url: "http://127.0.0.1:8099/" }
YAML
$T/ferry-bench ceiling --listen 127.0.0.1:8099 > /dev/null 2>&1 &
CEIL=$!
$T/ferry serve --config $D/cfg --data-dir $D/data > $D/out.log 2> $D/err.log &
HUB=$!
i=0
until grep -q "pull run finished" $D/err.log; do sleep 0.2; i=$((i+1)); [ $i -lt 3000 ] || break; done
grep "pull run finished" $D/err.log | sed 's/\x1b\[[0-9;]*m//g'
kill $HUB $CEIL; wait $HUB 2>/dev/null || true
psql -q $PG -c "DROP SCHEMA $SCHEMA CASCADE"
du -sh $D/data
rm -rf $D
