#!/usr/bin/env bash
# A throwaway PostgreSQL server for the store's conformance tests.
#
#   eval "$(.ci/postgres.sh start)"   # prints: export VAPICTL_TEST_POSTGRES_URL=postgres://…
#   .ci/postgres.sh stop              # stops it and deletes its data
#
# `start` installs Debian's `postgresql` only when no initdb is present, creates a fresh data
# directory, and starts a server on 127.0.0.1 (port 55432, or the next free one) with fsync off
# and trust authentication: for tests only. It remembers the data directory in a state file keyed
# by this checkout, so `stop` finds it and two checkouts on one machine do not collide.
# Only the export line goes to stdout; everything else goes to stderr.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd -P)
state=${VAPICTL_PG_STATE:-${TMPDIR:-/tmp}/vapictl-postgres-$(printf '%s' "$repo" | cksum | cut -d' ' -f1).state}

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

pg_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

# Runs a PostgreSQL program as the `postgres` user when we are root (initdb refuses root).
as_pg() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

install_if_missing() {
  if compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null; then
    return
  fi
  [ "$(id -u)" -eq 0 ] || die "PostgreSQL is not installed; hint: run as root, or apt-get install -y postgresql"
  say "installing PostgreSQL from Debian"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
}

port_in_use() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

url_for() {
  printf 'postgres://postgres@127.0.0.1:%s/postgres' "$1"
}

start() {
  # Already running for this checkout: say so again.
  if [ -f "$state" ]; then
    # shellcheck disable=SC1090
    . "$state"
    if as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; then
      say "already running on port $PORT (data in $PGDATA)"
      echo "export VAPICTL_TEST_POSTGRES_URL=$(url_for "$PORT")"
      return
    fi
    rm -rf "$PGDATA" "$state"
  fi

  install_if_missing
  local bin
  bin=$(pg_bin)
  [ -x "$bin/initdb" ] || die "no initdb under /usr/lib/postgresql/*/bin"

  local data
  data=$(mktemp -d "${TMPDIR:-/tmp}/vapictl-pgdata.XXXXXX")
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres:postgres "$data"
  fi
  as_pg "$bin/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --no-locale >"$data.initdb.log" 2>&1 ||
    { cat "$data.initdb.log" >&2; die "initdb failed"; }
  rm -f "$data.initdb.log"

  local port
  for port in $(seq 55432 55482); do
    port_in_use "$port" && continue
    if as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 30 \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $data -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=200" \
      start >/dev/null 2>&1; then
      # pg_ctl -w waits for readiness; confirm over TCP, as the tests will connect.
      local tries=0
      until "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; do
        tries=$((tries + 1))
        [ "$tries" -lt 50 ] || die "server on port $port never became ready; see $data/server.log"
        sleep 0.1
      done
      printf 'PGDATA=%q\nPORT=%q\n' "$data" "$port" >"$state"
      say "started on 127.0.0.1:$port (data in $data)"
      echo "export VAPICTL_TEST_POSTGRES_URL=$(url_for "$port")"
      return
    fi
    # Lost a race for the port, most likely: try the next one.
    say "could not start on port $port; trying the next"
  done
  tail -n 20 "$data/server.log" >&2 || true
  rm -rf "$data"
  die "no free port in 55432-55482"
}

stop() {
  if [ ! -f "$state" ]; then
    say "not running (no state file $state)"
    return
  fi
  # shellcheck disable=SC1090
  . "$state"
  as_pg "$(pg_bin)/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || say "pg_ctl stop failed (already stopped?)"
  rm -rf "$PGDATA"
  rm -f "$state"
  say "stopped and removed $PGDATA"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *)
    echo "usage: $0 start|stop" >&2
    exit 2
    ;;
esac
