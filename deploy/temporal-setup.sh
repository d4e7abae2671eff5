#!/bin/sh
# What the temporalio/auto-setup image did, which Temporal no longer publishes for new releases,
# run by temporalio/admin-tools of the server's release:
#   temporal-setup.sh schema      create Temporal's two PostgreSQL databases and bring their
#                                 schemas up to this release (before the server starts)
#   temporal-setup.sh namespace   create the `default` namespace (once the server is up)
# Both are safe to run on every `docker compose up`: an existing database is left as it is,
# `setup-schema -v 0.0` does not reset a database that has a version, `update-schema` applies only
# the versions it lacks, and an existing namespace is kept.
set -eu

sql_tool() {
  # temporal-sql-tool reads the password from SQL_PASSWORD (the server from POSTGRES_PWD).
  SQL_PASSWORD="$POSTGRES_PWD" temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" \
    -u "$POSTGRES_USER" -p "${DB_PORT:-5432}" "$@"
}

schema() {
  versioned=/etc/temporal/schema/postgresql/v12
  for database in temporal temporal_visibility; do
    # Fails when the database exists; a server that cannot be reached fails the next step.
    sql_tool --db "$database" create || true
  done
  sql_tool --db temporal setup-schema -v 0.0
  sql_tool --db temporal update-schema -d "$versioned/temporal/versioned"
  sql_tool --db temporal_visibility setup-schema -v 0.0
  sql_tool --db temporal_visibility update-schema -d "$versioned/visibility/versioned"
}

namespace() {
  attempts=0
  until temporal operator cluster health --address "$TEMPORAL_ADDRESS"; do
    attempts=$((attempts + 1))
    if [ "$attempts" -ge 30 ]; then
      echo "Temporal at $TEMPORAL_ADDRESS is not healthy" >&2
      exit 1
    fi
    sleep 2
  done
  temporal operator namespace describe -n default --address "$TEMPORAL_ADDRESS" >/dev/null \
    || temporal operator namespace create -n default --retention 24h --address "$TEMPORAL_ADDRESS"
}

case "${1:-}" in
  schema) schema ;;
  namespace) namespace ;;
  *) echo "usage: temporal-setup.sh schema|namespace" >&2; exit 2 ;;
esac
