#!/bin/sh
# Knex-style migrations for the stand-in backend (`npm run db:migrate | db:rollback |
# db:status`), applied with psql to $DATABASE_URL and recorded in knex_migrations.
set -eu
if [ -z "${DATABASE_URL:-}" ]; then
  echo "Error: DATABASE_URL is not set" >&2
  exit 1
fi
export PGCONNECT_TIMEOUT=5
# Keep NOTICEs such as "relation already exists, skipping" out of the output.
export PGOPTIONS="-c client_min_messages=warning"
sql() {
  psql "${DATABASE_URL}" -v ON_ERROR_STOP=1 -qAt "$@"
}
sql -c "CREATE TABLE IF NOT EXISTS knex_migrations (id serial PRIMARY KEY,
  name text UNIQUE NOT NULL, batch integer NOT NULL,
  migration_time timestamptz NOT NULL DEFAULT now())"

is_applied() {
  [ -n "$(sql -c "SELECT 1 FROM knex_migrations WHERE name = '$1'")" ]
}

# A batch is all or nothing: its migrations and their bookkeeping run in one transaction,
# so a failing migration leaves the database as it was.
migrate() {
  batch=$(sql -c "SELECT coalesce(max(batch), 0) + 1 FROM knex_migrations")
  set --
  names=""
  for file in /app/migrations/*.up.sql; do
    [ -e "$file" ] || continue
    name=$(basename "$file" .up.sql)
    is_applied "$name" && continue
    echo "Migrating ${name}"
    set -- "$@" -f "$file" -c "INSERT INTO knex_migrations (name, batch) VALUES ('${name}', ${batch})"
    names="${names} ${name}"
  done
  if [ -z "$names" ]; then
    echo "Already up to date"
    return
  fi
  if ! sql --single-transaction "$@"; then
    echo "Migration failed: batch ${batch} (${names# }) was rolled back" >&2
    exit 1
  fi
  echo "Batch ${batch} run: ${names# }"
}

rollback() {
  batch=$(sql -c "SELECT coalesce(max(batch), 0) FROM knex_migrations")
  if [ "$batch" -eq 0 ]; then
    echo "Already at the base migration"
    return
  fi
  for name in $(sql -c "SELECT name FROM knex_migrations WHERE batch = ${batch} ORDER BY name DESC"); do
    file="/app/migrations/${name}.down.sql"
    if [ ! -f "$file" ]; then
      echo "Rollback failed: ${name} has no down migration in version ${APP_VERSION}" >&2
      exit 1
    fi
    echo "Rolling back ${name}"
    sql --single-transaction -f "$file" -c "DELETE FROM knex_migrations WHERE name = '${name}'"
  done
  echo "Batch ${batch} rolled back"
}

status() {
  for file in /app/migrations/*.up.sql; do
    [ -e "$file" ] || continue
    name=$(basename "$file" .up.sql)
    if is_applied "$name"; then echo "applied  ${name}"; else echo "pending  ${name}"; fi
  done
  for name in $(sql -c "SELECT name FROM knex_migrations ORDER BY name"); do
    [ -f "/app/migrations/${name}.up.sql" ] || echo "unknown  ${name} (applied by another version)"
  done
}

case "${1:-}" in
  migrate) migrate ;;
  rollback) rollback ;;
  status) status ;;
  *) echo "usage: db.sh migrate|rollback|status" >&2; exit 1 ;;
esac
