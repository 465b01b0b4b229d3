#!/usr/bin/env bash
# A throw-away PostgreSQL for end-to-end tests: TLS only (self-signed), scram passwords, on
# 127.0.0.1 and a free port, data in DIR. Installs Debian's postgresql when it is missing.
#
#   scripts/postgres.sh start --dir DIR [--owner-pid PID] [--listen ADDR]
#       prints KEY=VALUE lines (also in DIR/env); ADDR (default 127.0.0.1) is the address it
#       listens on and, as ADDR/24, the clients it admits: the node tier's pods reach the host at
#       its bridge address (10.244.0.1)
#   scripts/postgres.sh pause --dir DIR     stop the server, keep its data (a database that is down)
#   scripts/postgres.sh resume --dir DIR    start it again as it was
#   scripts/postgres.sh stop --dir DIR
#
# The databases `dittofs` (control plane) and `dittofs_metadata` (file metadata: a separate
# database, both schemas have a `shares` table) are owned by role `dittofs` (password in
# DIR/env), so DittoFS can migrate.
set -euo pipefail

cmd=${1:-}; shift || true
DIR= OWNER_PID= LISTEN=127.0.0.1
while [[ $# -gt 0 ]]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --owner-pid) OWNER_PID=$2; shift 2 ;;
    --listen) LISTEN=$2; shift 2 ;;
    *) echo "usage: $0 start|pause|resume|stop --dir DIR [--owner-pid PID] [--listen ADDR]" >&2; exit 2 ;;
  esac
done
[[ -n "$DIR" ]] || { echo "--dir is required" >&2; exit 2; }

pg_bin() {
  local bin
  bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [[ -z "$bin" ]]; then
    echo "installing Debian's postgresql" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
    bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$bin"
}

# PostgreSQL refuses to run as root: run it as the `postgres` system user when we are root.
as_pg() { if [[ $(id -u) == 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi; }

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

case $cmd in
  start)
    BIN=$(pg_bin)
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    PORT=$(free_port)
    PASSWORD=$(head -c 18 /dev/urandom | base64 | tr -d '/+=')
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=127.0.0.1" \
      -addext "subjectAltName=IP:127.0.0.1,DNS:localhost" \
      -keyout "$DIR/server.key" -out "$DIR/server.crt" >/dev/null 2>&1
    chmod 600 "$DIR/server.key"
    [[ $(id -u) == 0 ]] && chown -R postgres "$DIR"
    as_pg "$BIN/initdb" -D "$DIR/data" -U postgres --auth=trust >"$DIR/initdb.log" 2>&1
    CLIENTS=$LISTEN/32
    [[ "$LISTEN" == 127.0.0.1 ]] || CLIENTS=${LISTEN%.*}.0/24
    cat >"$DIR/data/pg_hba.conf" <<HBA
# TLS only (as Percona clusters): plain TCP is refused.
local     all all                trust
hostssl   all all $CLIENTS   scram-sha-256
host      all all $CLIENTS   reject
HBA
    echo "-c listen_addresses=$LISTEN -p $PORT -k $DIR -c ssl=on -c ssl_cert_file=$DIR/server.crt -c ssl_key_file=$DIR/server.key -c fsync=off" >"$DIR/options"
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 30 start -o "$(cat "$DIR/options")" >/dev/null
    as_pg "$BIN/psql" -h "$DIR" -p "$PORT" -U postgres -q -v ON_ERROR_STOP=1 <<SQL
CREATE ROLE dittofs LOGIN PASSWORD '$PASSWORD';
CREATE DATABASE dittofs OWNER dittofs;
CREATE DATABASE dittofs_metadata OWNER dittofs;
SQL
    {
      echo "PGHOST=$LISTEN"
      echo "PGPORT=$PORT"
      echo "PGDATABASE=dittofs"
      echo "PGUSER=dittofs"
      echo "PGPASSWORD=$PASSWORD"
      echo "PGSSLMODE=require"
      echo "PG_BIN=$BIN"
    } >"$DIR/env"
    if [[ -n "$OWNER_PID" ]]; then
      # Stop the server when the test process that started it goes away.
      setsid bash -c "while kill -0 $OWNER_PID 2>/dev/null; do sleep 1; done; '$0' stop --dir '$DIR'" >/dev/null 2>&1 </dev/null &
    fi
    cat "$DIR/env"
    ;;
  pause)
    BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null
    ;;
  resume)
    BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -l "$DIR/postgres.log" -w -t 30 start -o "$(cat "$DIR/options")" >/dev/null
    ;;
  stop)
    [[ -d "$DIR/data" ]] || { rm -rf "$DIR"; exit 0; }
    BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    as_pg "$BIN/pg_ctl" -D "$DIR/data" -m fast -w stop >/dev/null 2>&1 || true
    rm -rf "$DIR"
    ;;
  *) echo "usage: $0 start|pause|resume|stop --dir DIR [--owner-pid PID] [--listen ADDR]" >&2; exit 2 ;;
esac
