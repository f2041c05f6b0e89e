#!/bin/sh
# azd postprovision hook: prepares Conveyor's PostgreSQL database. Idempotent; safe to run again.
#
#   1. the NOLOGIN role <db>_owner (conveyor_owner), with the signed-in administrator as a member;
#   2. the database, owned by that role. The template does not create it: a database the resource provider creates
#      before any Entra administrator exists belongs to a system role, and from PostgreSQL 15 on nobody else may
#      create tables in its public schema ("permission denied for schema public");
#   3. CREATE on schema public for the owner role where the server's template does not give it (Azure gives
#      public to azure_pg_admin), checked afterwards as the owner: has_schema_privilege('public', 'CREATE');
#   4. the app's role, for its managed identity, with pgaadauth_create_principal_with_oid (connected to database
#      postgres); the identity is NOT an Entra administrator;
#   5. its rights: CONNECT, and SELECT/INSERT/UPDATE/DELETE on Conveyor's tables, USAGE/SELECT/UPDATE on its
#      sequences, now and (default privileges of the owner role) for every table later migrations create.
# The migrations themselves run in predeploy.sh, before each deployment of the code that needs them.
#
# Needs psql, the Azure CLI signed in as that administrator, and (public networking) this machine's address in
# the PostgreSQL firewall: azd env set CONVEYOR_PG_CLIENT_IP <ip>, then azd provision. See lib.sh for the inputs.
set -eu

conveyor_hook=postprovision
conveyor_root="$(cd "$(dirname "$0")/../.." && pwd)"
. "$conveyor_root/infra/hooks/lib.sh"

conveyor_start "database not prepared"
: "${AZURE_IDENTITY_PRINCIPAL_ID:?not set: run azd provision first}"

conveyor_say "preparing database $conveyor_db on $PGHOST as $conveyor_admin (owner role $conveyor_owner, app role $AZURE_IDENTITY_NAME)"
conveyor_psql postgres <<'SQL'
SET conveyor.db = :'db';
SET conveyor.owner = :'owner';
DO $$
DECLARE
  db text := current_setting('conveyor.db');
  owner text := current_setting('conveyor.owner');
  db_owner text := (SELECT pg_get_userbyid(datdba) FROM pg_database WHERE datname = db);
BEGIN
  -- A database nobody here may take over (e.g. one an older template created, owned by azuresu) is a dead end:
  -- say so before changing anything.
  IF db_owner IS NOT NULL AND db_owner <> owner AND NOT pg_has_role(db_owner, 'MEMBER') THEN
    RAISE EXCEPTION 'conveyor: database "%" exists but belongs to role "%", which % is not a member of: its schema public will refuse the migrations (PostgreSQL 15+: "permission denied for schema public")', db, db_owner, current_user
      USING HINT = format('If it holds nothing yet (it was created by an older template), delete it (az postgres flexible-server db delete -g <group> -s <server> -d %s) and run this hook again; otherwise have its owner run: ALTER DATABASE %I OWNER TO %I;', db, db, owner);
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = owner) THEN
    EXECUTE format('CREATE ROLE %I NOLOGIN', owner);
  END IF;
END
$$;
SQL
conveyor_join_owner_role
conveyor_psql postgres --set app_role="$AZURE_IDENTITY_NAME" --set app_oid="$AZURE_IDENTITY_PRINCIPAL_ID" <<'SQL'
SET conveyor.app_role = :'app_role';
SET conveyor.app_oid = :'app_oid';
DO $$
DECLARE
  app_role text := current_setting('conveyor.app_role');
  app_oid text := current_setting('conveyor.app_oid');
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = app_role) THEN
    -- Azure's function: a LOGIN role that signs in with Entra tokens of this object id; not an administrator.
    PERFORM pgaadauth_create_principal_with_oid(app_role, app_oid, 'service', false, false);
  END IF;
  IF EXISTS (SELECT FROM pg_roles WHERE rolname = 'azure_pg_admin') AND pg_has_role(app_role, 'azure_pg_admin', 'MEMBER') THEN
    RAISE WARNING 'conveyor: role "%" (the app''s identity) is a member of azure_pg_admin: it is still a PostgreSQL Entra administrator, probably from an older template. Remove that administrator in the portal (server > Authentication) or with az postgres flexible-server microsoft-entra-admin delete.', app_role;
  END IF;
END
$$;
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'owner')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db') \gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'owner')
FROM pg_database WHERE datname = :'db' AND pg_get_userbyid(datdba) <> :'owner' \gexec
SQL

conveyor_psql "$conveyor_db" --set app_role="$AZURE_IDENTITY_NAME" <<'SQL'
SET conveyor.owner = :'owner';
SET conveyor.app_role = :'app_role';
DO $$
DECLARE
  owner text := current_setting('conveyor.owner');
  app_role text := current_setting('conveyor.app_role');
  public_owner text := (SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = 'public');
BEGIN
  -- Where public belongs to the database owner (pg_database_owner, PostgreSQL 15+) the owner role may create in
  -- it already; where it belongs to another role (Azure: azure_pg_admin, which the administrator is a member of)
  -- the administrator grants it. GRANT only warns when it may not, hence the check after.
  IF NOT has_schema_privilege(owner, 'public', 'CREATE') THEN
    EXECUTE format('GRANT USAGE, CREATE ON SCHEMA public TO %I', owner);
  END IF;
  IF NOT has_schema_privilege(app_role, 'public', 'USAGE') THEN
    EXECUTE format('GRANT USAGE ON SCHEMA public TO %I', app_role);
  END IF;
  IF NOT has_schema_privilege(owner, 'public', 'CREATE') OR NOT has_schema_privilege(app_role, 'public', 'USAGE') THEN
    RAISE EXCEPTION 'conveyor: schema public of database "%" belongs to "%", and % may not let "%" create in it (or "%" use it)', current_database(), public_owner, current_user, owner, app_role
      USING HINT = format('Its owner runs, in that database: GRANT USAGE, CREATE ON SCHEMA public TO %I; GRANT USAGE ON SCHEMA public TO %I;', owner, app_role);
  END IF;

  -- Everything else as the owner role, which owns the database and the tables: rights on Conveyor's tables and
  -- sequences only, now and for whatever later migrations create.
  EXECUTE format('SET LOCAL ROLE %I', owner);
  EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), app_role);
  EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO %I', app_role);
  EXECUTE format('GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA public TO %I', app_role);
  EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO %I', owner, app_role);
  EXECUTE format('ALTER DEFAULT PRIVILEGES FOR ROLE %I IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO %I', owner, app_role);
END
$$;
SQL
conveyor_check_owner_may_create
conveyor_say "database $conveyor_db ready; migrations run in predeploy.sh (azd deploy)"
