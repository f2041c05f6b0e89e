#!/bin/sh
# azd postprovision hook: applies Conveyor's PostgreSQL schema migrations, then lets the app's managed
# identity use what they created.
#
# Uses the deployment outputs azd stored in the environment (CONVEYOR_POSTGRES_CONNECTION_STRING,
# AZURE_POSTGRES_FQDN, AZURE_POSTGRES_DATABASE, AZURE_IDENTITY_NAME). The connection string names the app's
# identity as user; that identity only gets tokens inside Azure, so the migration connects as the Entra
# administrator chosen by preprovision.sh (CONVEYOR_PG_ADMIN_NAME, or CONVEYOR_MIGRATION_USER) with a token
# from Azure.Identity's developer credentials (az / azd login). Same command by hand: see docs/deploy.md.
#
# Needs: .NET 10 SDK, Azure CLI signed in, psql (postgresql-client) for the grants, and this machine's IP
# allowed by the server firewall (azd env set CONVEYOR_PG_CLIENT_IP <ip>, then azd provision).
# CONVEYOR_SKIP_MIGRATIONS=1 skips everything.
set -eu

if [ "${CONVEYOR_SKIP_MIGRATIONS:-}" = "1" ]; then
  echo "postprovision: CONVEYOR_SKIP_MIGRATIONS=1, migrations not applied."
  exit 0
fi

root="$(cd "$(dirname "$0")/../.." && pwd)"

# Run outside azd (e.g. by hand): load the environment's values.
if [ -z "${CONVEYOR_POSTGRES_CONNECTION_STRING:-}" ] && command -v azd >/dev/null 2>&1; then
  eval "$(azd env get-values)"
fi
: "${CONVEYOR_POSTGRES_CONNECTION_STRING:?not set: run azd provision first}"
: "${AZURE_POSTGRES_FQDN:?not set: run azd provision first}"
: "${AZURE_POSTGRES_DATABASE:?not set: run azd provision first}"
: "${AZURE_IDENTITY_NAME:?not set: run azd provision first}"

user="${CONVEYOR_MIGRATION_USER:-${CONVEYOR_PG_ADMIN_NAME:-}}"
if [ -z "$user" ]; then
  echo "postprovision: no PostgreSQL administrator to migrate as. Set CONVEYOR_PG_ADMIN_OBJECT_ID/_NAME/_TYPE" >&2
  echo "  (azd env set ...) and run azd provision again, or CONVEYOR_SKIP_MIGRATIONS=1 to skip." >&2
  exit 1
fi
app_role="$AZURE_IDENTITY_NAME"
needs_grants=1
if [ "$user" = "$app_role" ]; then needs_grants=0; fi
if [ "$needs_grants" = 1 ] && ! command -v psql >/dev/null 2>&1; then
  echo "postprovision: psql not found; it grants the app's identity access to the migrated schema." >&2
  echo "  Install it (Debian/Ubuntu: apt-get install postgresql-client) and run infra/hooks/postprovision.sh again." >&2
  exit 1
fi

# Same connection string as the app, but as the migrating administrator.
user_sed="$(printf '%s' "$user" | sed 's/[&/\]/\\&/g')"
connection_string="$(printf '%s' "$CONVEYOR_POSTGRES_CONNECTION_STRING" | sed "s/Username=[^;]*/Username=$user_sed/")"

echo "postprovision: applying migrations to $AZURE_POSTGRES_FQDN/$AZURE_POSTGRES_DATABASE as $user"
Conveyor__Postgres__ConnectionString="$connection_string" \
  Conveyor__Postgres__UseEntraId=true \
  dotnet run --project "$root/selfhost" -- migrate

if [ "$needs_grants" = 0 ]; then
  exit 0
fi

# Tables created by the migrating administrator belong to it; the app's role (also an Entra admin, but
# azure_pg_admin is not a superuser) needs explicit privileges, now and for tables later migrations create.
echo "postprovision: granting $app_role access to the schema"
PGPASSWORD="$(az account get-access-token --resource-type oss-rdbms --query accessToken -o tsv)" \
  psql "host=$AZURE_POSTGRES_FQDN port=5432 dbname=$AZURE_POSTGRES_DATABASE user=$user sslmode=require" \
  --no-psqlrc --quiet -v ON_ERROR_STOP=1 -v app_role="$app_role" <<'SQL'
SET conveyor.app_role = :'app_role';
DO $$
DECLARE
  app_role text := current_setting('conveyor.app_role');
  s name;
BEGIN
  -- Schemas the migrations created, plus public (whose USAGE every role already has).
  FOR s IN
    SELECT n.nspname FROM pg_namespace n
    WHERE n.nspowner = (SELECT oid FROM pg_roles WHERE rolname = current_user) OR n.nspname = 'public'
  LOOP
    IF s <> 'public' THEN
      EXECUTE format('GRANT USAGE ON SCHEMA %I TO %I', s, app_role);
    END IF;
    EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA %I TO %I', s, app_role);
    EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA %I TO %I', s, app_role);
    EXECUTE format('GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA %I TO %I', s, app_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', s, app_role);
    EXECUTE format('ALTER DEFAULT PRIVILEGES IN SCHEMA %I GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO %I', s, app_role);
  END LOOP;
END
$$;
SQL
echo "postprovision: done"
