#!/usr/bin/env bash
# make demo: Tandem in front of three demo backends on the embedded default (no servers needed).
# Runs in the foreground; Ctrl-C or SIGTERM stops everything it started.
set -euo pipefail
TANDEM=${1:-build/src/tandem}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/tandem-demo.XXXXXX)
pids=()

cleanup() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 0' INT TERM

free_port() {  # a free loopback port, preferring $1
  /usr/bin/python3 - "$1" <<'PY'
import socket, sys
for p in (int(sys.argv[1]), 0):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); print(s.getsockname()[1]); break
    except OSError:
        pass
    finally:
        s.close()
PY
}

wait_port() {  # readiness probe: until the port accepts, at most 5 s
  for _ in $(seq 1 500); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
    sleep 0.01
  done
  echo "demo: nothing listens on port $1" >&2
  return 1
}

servers=""
for name in alpha beta gamma; do
  port=$(free_port 0)
  /usr/bin/python3 "$here/demo_backend.py" "$name" "$port" &
  pids+=($!)
  wait_port "$port"
  servers+="      - {name: $name, address: 127.0.0.1:$port}"$'\n'
done

web=$(free_port 8080)
admin=$(free_port 9900)
token=$(/usr/bin/python3 -c 'import secrets; print(secrets.token_hex(16))')
printf '%s\n' "$token" > "$work/admin.token"
cat > "$work/tandem.yaml" <<YAML
node: {id: demo}
workers: 1   # one worker keeps the round-robin order easy to see; production uses auto
admin: {listen: 127.0.0.1:$admin, token_file: admin.token}
alerts:
  rules: {error_rate: {above: 5%, for: 30s}, p99_latency: {above: 500ms, for: 30s}}
listeners:
  - {name: web, listen: 127.0.0.1:$web, mode: http, backend: demo}
backends:
  - name: demo
    balance: round_robin
    servers:
$servers
    health:
      active: {type: http, path: /, interval: 1s, timeout: 500ms, rise: 2, fall: 2}
YAML

"$TANDEM" run -c "$work/tandem.yaml" &
pids+=($!)
wait_port "$web"
wait_port "$admin"
cat <<MSG

Tandem demo is running (config: $work/tandem.yaml)
  proxy:     http://127.0.0.1:$web/
  dashboard: http://127.0.0.1:$admin/          (admin token: $token)
  metrics:   http://127.0.0.1:$admin/metrics
  try:       for i in 1 2 3 4; do curl -s http://127.0.0.1:$web/; done
             $TANDEM ctl --admin http://127.0.0.1:$admin backends
             $TANDEM ctl --admin http://127.0.0.1:$admin --token $token drain demo beta
Responses alternate between the backends alpha, beta and gamma (see the X-Backend header).
Press Ctrl-C to stop.
MSG
wait "${pids[-1]}"
