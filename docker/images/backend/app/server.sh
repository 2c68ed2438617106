#!/bin/sh
# Starts the stand-in backend: busybox nc forks handle-request.sh for each connection.
set -eu
echo "tasktracker-backend ${APP_VERSION} starting (NODE_ENV=${NODE_ENV})"
if [ "${APP_FAULT}" = crash ]; then
  echo "Error: Cannot find module '/app/dist/main.js'" >&2
  echo "    at Function.Module._resolveFilename (node:internal/modules/cjs/loader:1039:15)" >&2
  echo "tasktracker-backend ${APP_VERSION} exited with code 3" >&2
  exit 3
fi
# This shell stays PID 1 so that `docker stop` (SIGTERM) ends the server at once: a bare
# busybox nc as PID 1 would ignore the signal until Docker kills it after the grace period.
busybox nc -ll -p "${PORT}" -e /app/handle-request.sh &
server=$!
trap 'echo "tasktracker-backend ${APP_VERSION} shutting down"; kill "$server" 2>/dev/null; exit 0' TERM INT
echo "tasktracker-backend ${APP_VERSION} listening on port ${PORT}"
wait "$server"
