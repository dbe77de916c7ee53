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
