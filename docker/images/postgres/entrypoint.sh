#!/bin/sh
# Initialises $PGDATA on first start (superuser POSTGRES_USER with POSTGRES_PASSWORD,
# database POSTGRES_DB, password logins over TCP, trusted local socket), then runs "$@".
set -eu
if [ "${1:-}" = postgres ] && [ ! -s "${PGDATA}/PG_VERSION" ]; then
  user=${POSTGRES_USER:-postgres}
  database=${POSTGRES_DB:-$user}
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "error: POSTGRES_PASSWORD is not set" >&2
    exit 1
  fi
  password_file=$(mktemp)
  printf '%s\n' "${POSTGRES_PASSWORD}" >"$password_file"
  initdb --username="$user" --pwfile="$password_file" --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 --locale=C.UTF-8 -D "${PGDATA}" >/dev/null
  rm -f "$password_file"
  echo "listen_addresses = '*'" >>"${PGDATA}/postgresql.conf"
  echo "host all all all scram-sha-256" >>"${PGDATA}/pg_hba.conf"
  if [ "$database" != postgres ]; then
    echo "CREATE DATABASE \"${database}\" OWNER \"${user}\";" \
      | postgres --single -D "${PGDATA}" -j postgres >/dev/null
  fi
  echo "initialised ${PGDATA}: database ${database}, owner ${user}"
fi
exec "$@"
