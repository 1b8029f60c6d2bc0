#!/usr/bin/env bash
# Runs the platform deployment on this machine: 2 api, 1 projector, 2 relays (one leads, one
# stands by), 2 notifiers, on PostgreSQL and RabbitMQ. Ctrl-C (or SIGTERM) stops them all cleanly.
#   MFA_DATABASE_URL=postgresql://postgres@127.0.0.1:5432/test MFA_SECRET_KEY=... infra/run-platform.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${MFA_DATABASE_URL:?set MFA_DATABASE_URL=postgresql://...}"
: "${MFA_SECRET_KEY:?set MFA_SECRET_KEY (32+ characters)}"
export MFA_AMQP_URL="${MFA_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}"
# The notifiers check session cookies through either API instance (the next if one is down).
export MFA_API_URL="${MFA_API_URL:-http://127.0.0.1:8080,http://127.0.0.1:8082}"
MFA=.venv/bin/mfa
pids=()
start() { "$@" & pids+=($!); }
trap 'kill -TERM "${pids[@]}" 2>/dev/null; wait' INT TERM EXIT
start env MFA_PORT=8080 "$MFA" api
start env MFA_PORT=8082 MFA_DEMO=0 "$MFA" api
start env MFA_HEALTH_PORT=8090 "$MFA" projector    # /healthz, /readyz, /metrics
start env MFA_HEALTH_PORT=8091 "$MFA" relay
start env MFA_HEALTH_PORT=8092 "$MFA" relay   # the standby: takes over when the leader dies
start env MFA_NOTIFIER_PORT=8081 "$MFA" notifier
start env MFA_NOTIFIER_PORT=8083 "$MFA" notifier
wait
