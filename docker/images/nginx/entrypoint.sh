#!/bin/sh
# Makes a self-signed certificate for SERVER_NAME (valid SSL_DAYS days) unless
# /etc/nginx/ssl already holds one (the runbook's SSL rotation replaces these files), then
# runs "$@".
set -eu
mkdir -p /etc/nginx/ssl
if [ ! -s /etc/nginx/ssl/cert.pem ] || [ ! -s /etc/nginx/ssl/key.pem ]; then
  openssl req -x509 -newkey rsa:2048 -nodes -days "${SSL_DAYS:-30}" \
    -subj "/CN=${SERVER_NAME:-localhost}" \
    -keyout /etc/nginx/ssl/key.pem -out /etc/nginx/ssl/cert.pem 2>/dev/null
  echo "made a self-signed certificate for ${SERVER_NAME:-localhost}, valid ${SSL_DAYS:-30} days"
fi
exec "$@"
