# Shell helpers shared by the scripts in scripts/ (sourced, not run):
# process bookkeeping, free ports, progress lines.
#
# A script keeps the pids it started in PIDS and calls stop_all on exit.

PIDS=()

# SIGTERM (the playground stops its servers on it), SIGKILL after 30 s.
stop_pid() {
  local pid=$1 n
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((n = 0; n < 300; n++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# Drops $1 from PIDS (after stopping it by hand).
forget_pid() {
  local p keep=()
  for p in "${PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
  PIDS=("${keep[@]+"${keep[@]}"}")
}

# Stops every pid in PIDS, newest first.
stop_all() {
  local i
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
    stop_pid "${PIDS[$i]}"
  done
  PIDS=()
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

log() { echo "==> $*" >&2; }

# Starts tiox for a client suite and waits until root can log in over
# MySQL TLS: `tiox playground --pd 1 --kv 3 --db 1`, or with
# TARGET=unistore one `tidb-server --store=unistore`. Uses BIN, WORK,
# RESULTS, TARGET; sets TIOX_PORT, TIOX_PW (root's password) and TIOX_CA
# (the MySQL CA to verify the server with); creates the databases named
# in $@.
start_tiox() {
  local dir=$WORK/tiox
  if [ "$TARGET" = unistore ]; then
    "$BIN/tiox" cert init --dir "$dir/certs" >/dev/null
    TIOX_PORT=$(free_port)
    log "tiox: tidb-server --store=unistore on 127.0.0.1:$TIOX_PORT (MySQL TLS)"
    "$BIN/tidb-server" --store=unistore --path "$dir/data" --initialize-insecure \
      -P "$TIOX_PORT" --status "$(free_port)" \
      --ssl-cert "$dir/certs/mysql/server.pem" --ssl-key "$dir/certs/mysql/server-key.pem" \
      --ssl-ca "$dir/certs/mysql/ca.pem" >"$RESULTS/tidb-server.log" 2>&1 &
    PIDS+=("$!")
    TIOX_PW=""
  else
    log "tiox: tiox playground --pd 1 --kv 3 --db 1"
    "$BIN/tiox" playground --pd 1 --kv 3 --db 1 --data-dir "$dir" \
      >"$RESULTS/playground.out" 2>&1 &
    local pg=$!
    PIDS+=("$pg")
    local n
    for ((n = 0; n < 3000; n++)); do
      grep -q 'Press Ctrl-C' "$RESULTS/playground.out" 2>/dev/null && break
      kill -0 "$pg" 2>/dev/null || { cat "$RESULTS/playground.out" >&2; exit 1; }
      sleep 0.1
    done
    TIOX_PORT=$(sed -n 's/.*--port \([0-9]*\).*/\1/p' "$RESULTS/playground.out" | head -1)
    TIOX_PW=$(cat "$dir/root-password")
  fi
  TIOX_CA=$dir/certs/mysql/ca.pem
  local n
  for ((n = 0; n < 600; n++)); do
    mariadb --protocol=TCP -h127.0.0.1 -P"$TIOX_PORT" -uroot --password="$TIOX_PW" \
      --ssl-ca="$TIOX_CA" --ssl-verify-server-cert -e 'SELECT 1' >/dev/null 2>&1 && break
    sleep 0.1
  done
  mariadb --protocol=TCP -h127.0.0.1 -P"$TIOX_PORT" -uroot --password="$TIOX_PW" \
    --ssl-ca="$TIOX_CA" --ssl-verify-server-cert \
    -e "$(printf 'CREATE DATABASE IF NOT EXISTS %s; ' "$@")"
}

