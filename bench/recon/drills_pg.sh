#!/usr/bin/env bash
# The longer drill run on PostgreSQL (nightly): every scenario on a fresh database, three seeds.
#   bash bench/recon/drills_pg.sh [postgresql+psycopg://postgres@127.0.0.1:5432]
set -euo pipefail
cd "$(dirname "$0")/../.."
BASE="${1:-postgresql+psycopg://postgres@127.0.0.1:5432}"
for seed in 1 2 3; do
  db="piaohao_drill_$$_$seed"
  psql -h 127.0.0.1 -U postgres -q -c "CREATE DATABASE $db"
  rc=0
  .venv/bin/piaohao drill run all --seed "$seed" --database-url "$BASE/$db" || rc=$?
  psql -h 127.0.0.1 -U postgres -q -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" || true
  [ "$rc" = 0 ] || exit "$rc"
done
