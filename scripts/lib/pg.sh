# Throwaway PostgreSQL for tests and labs. Source this file, then:
#   pg_throwaway_start DIR PORT   -> exports CROSSPOD_TEST_PG_URL
#   pg_throwaway_stop DIR
# PostgreSQL refuses to run as root, so initdb and pg_ctl run as the postgres user.

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  if [ -z "$d" ]; then echo "pg.sh: no PostgreSQL server found under /usr/lib/postgresql (run scripts/install-deps.sh)" >&2; return 1; fi
  echo "$d"
}

pg_throwaway_start() {
  local dir=$1 port=$2 bin
  bin=$(pg_bin) || return 1
  mkdir -p "$dir"
  chown postgres:postgres "$dir"
  chmod 700 "$dir"
  runuser -u postgres -- "$bin/initdb" -D "$dir/data" -A trust -U postgres --no-sync >"$dir/initdb.log" 2>&1 \
    || { cat "$dir/initdb.log" >&2; return 1; }
  runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
    -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >/dev/null \
    || { cat "$dir/server.log" >&2; return 1; }
  runuser -u postgres -- "$bin/createdb" -h 127.0.0.1 -p "$port" crosspod_test
  export CROSSPOD_TEST_PG_URL="postgres://postgres@127.0.0.1:$port/crosspod_test"
}

pg_throwaway_stop() {
  local dir=$1 bin
  bin=$(pg_bin) || return 0
  if [ -f "$dir/data/postmaster.pid" ]; then
    runuser -u postgres -- "$bin/pg_ctl" -D "$dir/data" -m immediate stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}
