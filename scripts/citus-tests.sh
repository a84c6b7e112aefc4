#!/usr/bin/env bash
# The Citus suite: the store contract (every case), the Citus-only tests (how the schema is
# distributed, a worker drained and added back with the shards moved while the store keeps
# answering), a focused set of use cases (reports, bulk 104, capacity, the outbox worker) and the
# governance benchmark at a small size, on a real three-node Citus 13.2 cluster (a coordinator and two workers on
# loopback), built and started with ../shared/citus/citus.sh, in a fresh database each run.
#
# Where that script is not here (it is beside every development checkout and in CI), this says
# plainly that the Citus suite did not run and why, and succeeds: to run it against an installed
# Citus, start a coordinator with its workers, create a database with the extension and the
# workers added, and run
#   CALDICOTT_TEST_CITUS=postgres://postgres@HOST:PORT/DB cargo test -p caldicott-store --features citus --test contract --test citus -- citus
#   CALDICOTT_TEST_CITUS=… cargo test -p caldicott-app --features citus --test app_tests -- citus::
# (and CALDICOTT_BENCH_PG=… scripts/bench-governance.sh for the governance benchmark).
set -euo pipefail
cd "$(dirname "$0")/.."
CITUS_SH="${CALDICOTT_CITUS_SH:-$(cd .. && pwd)/shared/citus/citus.sh}"
if [ -z "${CALDICOTT_TEST_CITUS:-}" ]; then
  if [ ! -x "$CITUS_SH" ]; then
    echo "== The Citus suite did not run: $CITUS_SH is not here (set CALDICOTT_CITUS_SH, or CALDICOTT_TEST_CITUS to a running cluster's database)."
    exit 0
  fi
  "$CITUS_SH" install
  # The servers run as the postgres user, which cannot enter /root: the data lives under /tmp.
  DIR="${CALDICOTT_CITUS_DIR:-/tmp/caldicott-citus}"
  # Each Citus database runs background workers of its own and a server has few of them
  # (max_worker_processes): databases of earlier runs are dropped, and this run's at the end.
  drop_runs() {
    for port in 9700 9701 9702; do
      for db in $(psql -X -At -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "SELECT datname FROM pg_database WHERE datname LIKE 'caldicott_citus_%'"); do
        psql -X -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "DROP DATABASE \"$db\" WITH (FORCE)"
      done
    done
  }
  if pg_isready -q -h 127.0.0.1 -p 9700; then
    # A cluster already up (a developer's): used as it is, and left running.
    echo "== using the Citus cluster already running on 127.0.0.1:9700"
    trap 'drop_runs' EXIT
  else
    "$CITUS_SH" start "$DIR"
    trap '"$CITUS_SH" stop "$DIR"' EXIT
  fi
  drop_runs
  # A shard move runs as Citus background tasks on the coordinator, each a background worker, and
  # every database that has used Citus since the server started holds one more (its maintenance
  # daemon): a developer's cluster with a few databases of its own has none left at PostgreSQL's
  # default of 8, and the rebalance then never starts. Each server gets 32, restarted once for it
  # (which also lets go of the daemons of databases nobody has used since).
  as_postgres() { if [ "$(id -un)" = postgres ]; then "$@"; elif [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi; }
  BINDIR="/usr/lib/postgresql/$(ls /usr/lib/postgresql | sort -n | tail -1)/bin"
  for port in 9700 9701 9702; do
    q() { psql -X -At -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "$1"; }
    if [ "$(q 'SHOW max_worker_processes')" -lt 32 ]; then
      q 'ALTER SYSTEM SET max_worker_processes = 32' >/dev/null
      as_postgres "$BINDIR/pg_ctl" -D "$(q 'SHOW data_directory')" -l "/tmp/caldicott-citus-$port.log" -w restart -m fast >/dev/null
    fi
  done
  NAME="caldicott_citus_$(date +%s)"
  # One database for the contract, one for the shard moves (a drain moves only its own shards),
  # one for the governance benchmark.
  for db in "$NAME" "${NAME}_moves" "${NAME}_gov"; do
    "$CITUS_SH" createdb "$db" >/dev/null
    # Four shards a table: enough to spread practices over both workers, few enough that each
    # test's fresh schema is distributed quickly.
    psql -X -q -h 127.0.0.1 -p 9700 -U postgres -d "$db" -c "ALTER DATABASE \"$db\" SET citus.shard_count = 4"
  done
  export CALDICOTT_TEST_CITUS="postgres://postgres@127.0.0.1:9700/$NAME"
  export CALDICOTT_TEST_CITUS_MOVES="postgres://postgres@127.0.0.1:9700/${NAME}_moves"
  export CALDICOTT_TEST_CITUS_GOV="postgres://postgres@127.0.0.1:9700/${NAME}_gov"
fi
echo "== The Citus suite on $CALDICOTT_TEST_CITUS"
cargo test -p caldicott-store --features citus --test contract --test citus -- citus "$@"
# The focused set of use cases on Citus: the practice and ICB reports, bulk 104, appointment
# capacity and the outbox worker (the cases `both!(…; citus: …)` names).
cargo test -p caldicott-app --features citus --test app_tests -- citus:: "$@"
if [ $# -eq 0 ] && [ -n "${CALDICOTT_TEST_CITUS_GOV:-}" ]; then
  # The governance benchmark on Citus at a small size, with the test build: a service of ten
  # practices, the ICB and practice reports, and a bulk 104 with its audit chain verified.
  echo "== The governance benchmark on Citus (10 practices x 300 patients)"
  cargo build -q -p caldicott
  BENCH_BIN="${CARGO_TARGET_DIR:-target}/debug/caldicott" CALDICOTT_BENCH_PG="$CALDICOTT_TEST_CITUS_GOV" \
    scripts/bench-governance.sh 10 300 1100
fi
