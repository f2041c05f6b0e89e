# Shared by postprovision.sh and predeploy.sh (sourced, POSIX sh). Everything they do in PostgreSQL runs as the
# Entra administrator chosen by preprovision.sh (CONVEYOR_PG_ADMIN_NAME, or CONVEYOR_MIGRATION_USER), signed in
# with an Entra token from the Azure CLI, over TLS that verifies the server certificate and host name.
#
# Inputs (azd passes the environment; run by hand, the hooks read it with `azd env get-values`):
#   AZURE_POSTGRES_FQDN, AZURE_POSTGRES_PORT (default 5432), AZURE_POSTGRES_DATABASE, AZURE_IDENTITY_NAME,
#   AZURE_IDENTITY_PRINCIPAL_ID, CONVEYOR_PG_ADMIN_NAME or CONVEYOR_MIGRATION_USER;
#   PGSSLROOTCERT (optional): CA bundle that must have signed the server certificate; default the system's.
#   CONVEYOR_SKIP_DATABASE_HOOKS=1 skips the hooks' database work.

conveyor_fail() {
  printf '%s: %s\n' "$conveyor_hook" "$1" >&2
  shift
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  exit 1
}

conveyor_say() { printf '%s: %s\n' "$conveyor_hook" "$*"; }

# The common start of the database hooks: CONVEYOR_SKIP_DATABASE_HOOKS, the inputs, the connection settings.
# conveyor_start "<what skipping leaves undone>"
conveyor_start() {
  if [ "${CONVEYOR_SKIP_DATABASE_HOOKS:-}" = "1" ]; then
    conveyor_say "CONVEYOR_SKIP_DATABASE_HOOKS=1: $1."
    exit 0
  fi
  conveyor_load_env
  conveyor_connect_setup
}

# Loads the azd environment when the hook runs outside azd (by hand), unless the values are already there.
conveyor_load_env() {
  if [ -z "${AZURE_POSTGRES_FQDN:-}" ] && command -v azd >/dev/null 2>&1; then
    values="$(azd env get-values)" || conveyor_fail "could not read the azd environment (azd env get-values)"
    eval "$values"
  fi
  : "${AZURE_POSTGRES_FQDN:?not set: run azd provision first}"
  : "${AZURE_POSTGRES_DATABASE:?not set: run azd provision first}"
  : "${AZURE_IDENTITY_NAME:?not set: run azd provision first}"
  conveyor_db="$AZURE_POSTGRES_DATABASE"
  # The NOLOGIN role that owns the database and everything the migrations create in it.
  conveyor_owner="${conveyor_db}_owner"
  conveyor_admin="${CONVEYOR_MIGRATION_USER:-${CONVEYOR_PG_ADMIN_NAME:-}}"
  if [ -z "$conveyor_admin" ]; then
    conveyor_fail "no PostgreSQL administrator to sign in as." \
      "Set CONVEYOR_PG_ADMIN_OBJECT_ID/_NAME/_TYPE (azd env set ..., or let preprovision.sh do it) and run azd provision again."
  fi
}

# Where the CA certificates that must have signed the server certificate come from (libpq's sslrootcert).
conveyor_root_certificates() {
  if [ -n "${PGSSLROOTCERT:-}" ]; then
    printf '%s' "$PGSSLROOTCERT"
    return
  fi
  # Azure Database for PostgreSQL chains to DigiCert Global Root G2 / Microsoft RSA Root CA 2017, both in the
  # usual system bundles. libpq >= 16 can read the system store itself (sslrootcert=system).
  for bundle in /etc/ssl/certs/ca-certificates.crt /etc/pki/tls/certs/ca-bundle.crt /etc/ssl/cert.pem; do
    if [ -r "$bundle" ]; then
      printf '%s' "$bundle"
      return
    fi
  done
  major="$(psql --version | sed -n 's/^[^0-9]*\([0-9][0-9]*\).*/\1/p')"
  if [ "${major:-0}" -ge 16 ]; then
    printf 'system'
    return
  fi
  conveyor_fail "no CA bundle found to verify the PostgreSQL server certificate with." \
    "Set PGSSLROOTCERT to a file holding DigiCert Global Root G2 and Microsoft RSA Root CA 2017, or install psql 16+."
}

# Checks the tools, gets a token and sets the libpq environment every psql call below uses. Values go through
# environment variables, never through a conninfo string, so names with spaces or quotes need no escaping.
conveyor_connect_setup() {
  if ! command -v psql >/dev/null 2>&1; then
    conveyor_fail "psql not found." "Install it (Debian/Ubuntu: apt-get install postgresql-client) and run the hook again."
  fi
  if ! command -v az >/dev/null 2>&1; then
    conveyor_fail "the Azure CLI (az) is not found: it provides the Entra token the hooks sign in with."
  fi
  token="$(az account get-access-token --resource-type oss-rdbms --query accessToken -o tsv)" \
    || conveyor_fail "could not get an Entra token for PostgreSQL from the Azure CLI: sign in with az login."
  conveyor_rootcert="$(conveyor_root_certificates)"
  PGHOST="$AZURE_POSTGRES_FQDN"
  PGPORT="${AZURE_POSTGRES_PORT:-5432}"
  PGUSER="$conveyor_admin"
  PGPASSWORD="$token"
  PGSSLMODE=verify-full
  PGSSLROOTCERT="$conveyor_rootcert"
  PGAPPNAME="conveyor-$conveyor_hook"
  PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-30}"
  export PGHOST PGPORT PGUSER PGPASSWORD PGSSLMODE PGSSLROOTCERT PGAPPNAME PGCONNECT_TIMEOUT
}

# conveyor_psql DATABASE [psql args...] < script
conveyor_psql() {
  database="$1"
  shift
  PGDATABASE="$database" psql --no-psqlrc --quiet --set ON_ERROR_STOP=1 \
    --set db="$conveyor_db" --set owner="$conveyor_owner" "$@"
}

# Makes the administrator a member of the owner role, so it may act as it (SET ROLE). Fails with the statement
# another member must run when the administrator may not add itself (PostgreSQL 16+: CREATEROLE is not enough).
conveyor_join_owner_role() {
  conveyor_psql postgres <<'SQL'
SET conveyor.owner = :'owner';
DO $$
DECLARE
  owner text := current_setting('conveyor.owner');
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = owner) THEN
    RAISE EXCEPTION 'conveyor: role "%" does not exist yet', owner
      USING HINT = 'Run infra/hooks/postprovision.sh (azd provision) first: it creates the database and its owner role.';
  END IF;
  IF NOT pg_has_role(owner, 'MEMBER') THEN
    BEGIN
      EXECUTE format('GRANT %I TO CURRENT_USER', owner);
    EXCEPTION WHEN insufficient_privilege THEN
      RAISE EXCEPTION 'conveyor: % is not a member of role "%", which owns the Conveyor database and its tables, and may not make itself one', current_user, owner
        USING HINT = format('An administrator who is a member (the one who deployed first) runs, connected to database postgres: GRANT %I TO %I;', owner, current_user);
    END;
  END IF;
END
$$;
SQL
}

# Acting as the owner role, checks has_schema_privilege('public', 'CREATE'): without it the first migration fails
# with "permission denied for schema public".
conveyor_check_owner_may_create() {
  conveyor_psql "$conveyor_db" <<'SQL'
SET conveyor.owner = :'owner';
DO $$
DECLARE
  owner text := current_setting('conveyor.owner');
BEGIN
  EXECUTE format('SET LOCAL ROLE %I', owner);
  IF NOT has_schema_privilege('public', 'CREATE') THEN
    RAISE EXCEPTION 'conveyor: acting as "%", has_schema_privilege(''public'', ''CREATE'') is false in database "%" (schema owner: %): migrations would fail with "permission denied for schema public"',
      owner, current_database(), (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public')
      USING HINT = 'Run infra/hooks/postprovision.sh again: it grants CREATE on public to that role where it may.';
  END IF;
END
$$;
SQL
}

# Applies the schema migrations with the self-host's `migrate` verb, signed in as the administrator acting as the
# owner role (Npgsql Options "-c role=..."), so every table belongs to the owner whoever migrates.
# CONVEYOR_SELFHOST: a built Conveyor.SelfHost.dll (or executable) to use instead of `dotnet run --project selfhost`.
conveyor_migrate() {
  quote() { printf '"%s"' "$(printf '%s' "$1" | sed 's/"/""/g')"; }
  connection="Host=$(quote "$PGHOST");Port=$PGPORT;Database=$(quote "$conveyor_db");Username=$(quote "$conveyor_admin")"
  connection="$connection;Ssl Mode=VerifyFull;Options=$(quote "-c role=$conveyor_owner");Application Name=conveyor-migrate"
  if [ "$conveyor_rootcert" != system ]; then
    connection="$connection;Root Certificate=$(quote "$conveyor_rootcert")"
  fi
  # The migration signs in with the same principal as psql: the Azure CLI's (not a managed identity of the machine,
  # not AZURE_CLIENT_ID).
  set -- env Conveyor__Postgres__ConnectionString="$connection" Conveyor__Postgres__UseEntraId=true \
    AZURE_TOKEN_CREDENTIALS=AzureCliCredential Logging__LogLevel__Npgsql=Warning
  case "${CONVEYOR_SELFHOST:-}" in
    "") "$@" dotnet run --project "$conveyor_root/selfhost" -- migrate ;;
    *.dll) "$@" dotnet "$CONVEYOR_SELFHOST" migrate ;;
    *) "$@" "$CONVEYOR_SELFHOST" migrate ;;
  esac
}
