#!/bin/sh
# Answers one HTTP request on stdin/stdout. Routes: /health, /health/ready (database and
# redis checks), /health/live, /health/metrics, /api/v1/tasks, /.
read -r method path _protocol || exit 0
while IFS= read -r header; do
  [ "${#header}" -le 1 ] && break
done
now=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# The container's log is PID 1's stdout and stderr; this process's stdout is the socket.
log() {
  printf '%s %s %s %s\n' "$now" "$method" "$path" "$1" >/proc/1/fd/1 2>/dev/null || true
}
log_error() {
  printf '%s ERROR %s %s: %s\n' "$now" "$method" "$path" "$1" >/proc/1/fd/2 2>/dev/null || true
}
respond() {
  status=$1 content_type=$2 body=$3
  printf 'HTTP/1.0 %s\r\nContent-Type: %s\r\nContent-Length: %s\r\nConnection: close\r\n\r\n%s' \
    "$status" "$content_type" "${#body}" "$body"
  log "${status%% *}"
}
json() {
  respond "$1" application/json "$2"
}
faulty() {
  [ "${APP_FAULT}" = unhealthy ]
}
database_check() {
  [ -n "${DATABASE_URL:-}" ] || { echo "not configured"; return; }
  if PGCONNECT_TIMEOUT=2 psql "${DATABASE_URL}" -qAtc 'SELECT 1' >/dev/null 2>&1; then echo ok; else echo error; fi
}
redis_check() {
  [ -n "${REDIS_URL:-}" ] || { echo "not configured"; return; }
  if [ "$(timeout 2 redis-cli -u "${REDIS_URL}" ping 2>/dev/null)" = PONG ]; then echo ok; else echo error; fi
}

case "$path" in
  /health | /health/)
    if faulty; then
      log_error "health check failed: database pool exhausted"
      json "500 Internal Server Error" "{\"status\":\"error\",\"version\":\"${APP_VERSION}\",\"error\":\"database pool exhausted\"}"
    else
      json "200 OK" "{\"status\":\"ok\",\"version\":\"${APP_VERSION}\",\"timestamp\":\"${now}\"}"
    fi ;;
  /health/live)
    if faulty; then
      json "500 Internal Server Error" "{\"status\":\"error\"}"
    else
      json "200 OK" "{\"status\":\"alive\"}"
    fi ;;
  /health/ready)
    database=$(database_check)
    redis=$(redis_check)
    checks="{\"database\":\"${database}\",\"redis\":\"${redis}\"}"
    if [ "$database" = ok ] && [ "$redis" = ok ] && ! faulty; then
      json "200 OK" "{\"status\":\"ready\",\"checks\":${checks}}"
    else
      log_error "not ready: database ${database}, redis ${redis}"
      json "503 Service Unavailable" "{\"status\":\"not ready\",\"checks\":${checks}}"
    fi ;;
  /health/metrics)
    respond "200 OK" "text/plain; version=0.0.4" "# HELP tasktracker_up Whether the backend is up.
# TYPE tasktracker_up gauge
tasktracker_up 1
# HELP tasktracker_build_info Build of the running backend.
# TYPE tasktracker_build_info gauge
tasktracker_build_info{version=\"${APP_VERSION}\"} 1
" ;;
  /api/v1/tasks)
    if tasks=$(PGCONNECT_TIMEOUT=2 psql "${DATABASE_URL:-}" -qAtc \
        "SELECT coalesce(json_agg(t ORDER BY t.id), '[]') FROM tasks t" 2>/dev/null); then
      json "200 OK" "$tasks"
    else
      log_error "could not read tasks from the database"
      json "503 Service Unavailable" "{\"error\":\"database unavailable\"}"
    fi ;;
  /)
    json "200 OK" "{\"service\":\"tasktracker-backend\",\"version\":\"${APP_VERSION}\"}" ;;
  *)
    json "404 Not Found" "{\"error\":\"not found\"}" ;;
esac
