#!/usr/bin/env bash
# Make sure a PostgreSQL server answers on 127.0.0.1:5432 and lets the tests in as `postgres` without a
# password (the Dagster instance test and the Unleash server use it). Idempotent: when the server is
# already up and reachable it returns at once; otherwise it installs Debian's `postgresql` (as root),
# allows trust on loopback, starts the cluster and waits until it accepts connections.
set -euo pipefail

HOST=127.0.0.1
PORT=5432

reachable() {
  command -v psql >/dev/null 2>&1 &&
    psql -h "$HOST" -p "$PORT" -U postgres -d postgres -Atqc 'select 1' >/dev/null 2>&1
}

if reachable; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  cat >&2 <<EOF
PostgreSQL is not reachable on $HOST:$PORT as user 'postgres' without a password, and this script is
not running as root, so it cannot install or start it. Either run 'make test' as root once, or:
  sudo apt-get install -y postgresql            # Debian 12 ships PostgreSQL 15
  add 'host all all 127.0.0.1/32 trust' at the top of /etc/postgresql/15/main/pg_hba.conf
  sudo pg_ctlcluster 15 main start
EOF
  exit 1
fi

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
  echo "ensure_postgres: installing Debian's postgresql" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql >/dev/null
fi

version=$(ls /etc/postgresql | sort -V | tail -n 1)
hba=/etc/postgresql/$version/main/pg_hba.conf
marker="# rollback-assets: trust on loopback for the tests"
if ! grep -qF "$marker" "$hba"; then
  # pg_hba.conf is read top-down, first match wins: put the trust lines first.
  tmp=$(mktemp)
  {
    echo "$marker"
    echo "local all all trust"
    echo "host all all 127.0.0.1/32 trust"
    echo "host all all ::1/128 trust"
    cat "$hba"
  } >"$tmp"
  cat "$tmp" >"$hba"
  rm -f "$tmp"
fi

if pg_ctlcluster "$version" main status >/dev/null 2>&1; then
  pg_ctlcluster "$version" main reload
else
  pg_ctlcluster "$version" main start
fi

for _ in $(seq 1 60); do
  if pg_isready -q -h "$HOST" -p "$PORT" && reachable; then
    exit 0
  fi
  sleep 0.5
done
echo "ensure_postgres: PostgreSQL $version did not accept connections on $HOST:$PORT within 30 s;" \
  "see /var/log/postgresql/postgresql-$version-main.log" >&2
exit 1
