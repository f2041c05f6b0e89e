#!/bin/sh
# azd preprovision hook: makes the principal signed in to the Azure CLI (a developer, or CI's service
# principal) a Microsoft Entra administrator of the PostgreSQL server, so that postprovision.sh can apply
# migrations from this machine. The app's own identity is always an administrator too (infra/main.bicep).
#
# Writes CONVEYOR_PG_ADMIN_OBJECT_ID / _NAME / _TYPE into the azd environment unless already set;
# infra/main.parameters.json passes them to the template. Set them yourself (`azd env set ...`) to choose
# another principal, e.g. an Entra group.
set -eu

if [ -n "${CONVEYOR_PG_ADMIN_OBJECT_ID:-}" ]; then
  echo "preprovision: PostgreSQL Entra administrator already chosen: ${CONVEYOR_PG_ADMIN_NAME:-?} (${CONVEYOR_PG_ADMIN_OBJECT_ID})"
  exit 0
fi
if ! command -v az >/dev/null 2>&1; then
  echo "preprovision: Azure CLI (az) not found: no extra PostgreSQL administrator; migrations will need one." >&2
  echo "  Set CONVEYOR_PG_ADMIN_OBJECT_ID, CONVEYOR_PG_ADMIN_NAME and CONVEYOR_PG_ADMIN_TYPE with 'azd env set'." >&2
  exit 0
fi

kind="$(az account show --query user.type -o tsv)"
if [ "$kind" = "user" ]; then
  object_id="$(az ad signed-in-user show --query id -o tsv)"
  name="$(az ad signed-in-user show --query userPrincipalName -o tsv)"
  type=User
else
  app_id="$(az account show --query user.name -o tsv)"
  object_id="$(az ad sp show --id "$app_id" --query id -o tsv)"
  name="$(az ad sp show --id "$app_id" --query displayName -o tsv)"
  type=ServicePrincipal
fi

azd env set CONVEYOR_PG_ADMIN_OBJECT_ID "$object_id"
azd env set CONVEYOR_PG_ADMIN_NAME "$name"
azd env set CONVEYOR_PG_ADMIN_TYPE "$type"
echo "preprovision: $name ($type, $object_id) becomes a PostgreSQL Entra administrator."
if [ -z "${CONVEYOR_PG_CLIENT_IP:-}" ]; then
  echo "preprovision: CONVEYOR_PG_CLIENT_IP is not set: PostgreSQL will not accept this machine, and the" >&2
  echo "  postprovision migration will fail. Set it to this machine's public IP: azd env set CONVEYOR_PG_CLIENT_IP <ip>" >&2
fi
