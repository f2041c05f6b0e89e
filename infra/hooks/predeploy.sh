#!/bin/sh
# azd predeploy hook: applies Conveyor's PostgreSQL schema migrations before the code that needs them is
# deployed, so `azd deploy` on its own migrates too. Idempotent: migrations are versioned (table schema_versions).
#
# Signs in as the Entra administrator (see lib.sh) acting as the database's owner role, checks first that it may
# (membership, has_schema_privilege('public', 'CREATE')), then runs the self-host's `migrate` verb.
# Needs the .NET 10 SDK besides what postprovision.sh needs.
set -eu

conveyor_hook=predeploy
conveyor_root="$(cd "$(dirname "$0")/../.." && pwd)"
. "$conveyor_root/infra/hooks/lib.sh"

conveyor_start "migrations not applied"

exists="$(echo "SELECT count(*) FROM pg_database WHERE datname = :'db';" | conveyor_psql postgres --tuples-only --no-align)"
if [ "$exists" != 1 ]; then
  conveyor_fail "database $conveyor_db does not exist on $PGHOST." "Run infra/hooks/postprovision.sh (azd provision) first."
fi
conveyor_join_owner_role
conveyor_check_owner_may_create
conveyor_say "applying migrations to $PGHOST/$conveyor_db as $conveyor_admin (acting as $conveyor_owner)"
conveyor_migrate
