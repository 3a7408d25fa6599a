#!/usr/bin/env bash
# Every check and every test crosspod has, the root/OVS ones included. Run as root:
#   sudo scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "test.sh: the tests drive real namespaces, OVS and nftables: run as root (sudo scripts/test.sh)" >&2
  exit 1
fi

bash scripts/install-deps.sh
export CROSSPOD_VENV=${CROSSPOD_VENV:-/var/lib/crosspod/venv}
export PATH="$HOME/.cargo/bin:$PATH"
export CARGO_TERM_COLOR=never

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy (all targets: tests and benches included)"
cargo clippy --workspace --all-targets -- -D warnings

# A throwaway PostgreSQL for the store tests that run against both backends.
. scripts/lib/pg.sh
PGDIR=$(mktemp -d /tmp/crosspod-pg.XXXXXX)
PGPORT=${CROSSPOD_TEST_PG_PORT:-55432}
# Another PostgreSQL (a developer's, another checkout's run) may hold the port: take the next.
while ss -Hltn "sport = :$PGPORT" 2>/dev/null | grep -q .; do PGPORT=$((PGPORT + 1)); done
trap 'pg_throwaway_stop "$PGDIR"' EXIT
pg_throwaway_start "$PGDIR" "$PGPORT"
echo "== PostgreSQL for tests at $CROSSPOD_TEST_PG_URL"

echo "== cargo test"
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads="${CROSSPOD_TEST_THREADS:-4}"
echo "test.sh: all checks passed"
