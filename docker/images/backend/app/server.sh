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
echo "tasktracker-backend ${APP_VERSION} listening on port ${PORT}"
exec busybox nc -ll -p "${PORT}" -e /app/handle-request.sh
