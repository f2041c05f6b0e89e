#!/bin/sh
# azd preprovision hook: chooses the PostgreSQL Entra administrator, the principal signed in to the Azure CLI
# (a developer, a CI service principal, or a managed identity after `az login --identity`). The other hooks sign
# in as it to prepare the database and run migrations; the app's own identity is never an administrator.
#
# Writes CONVEYOR_PG_ADMIN_OBJECT_ID / _NAME / _TYPE into the azd environment unless both the id and the name are
# set already; infra/main.parameters.json passes them to the template. Set them yourself (azd env set ...) to
# choose another principal, e.g. an Entra group the CI identity belongs to.
#
# The object id comes from the oid claim of the CLI's own token for PostgreSQL (no Microsoft Graph permission
# needed). The name, which becomes the PostgreSQL role name, is: a user's user principal name (Graph, else the
# token's upn claim); a managed identity's resource name (the token's xms_mirid claim); a service principal's
# display name (Graph: az ad sp show); if that is not readable, set CONVEYOR_PG_ADMIN_NAME yourself.
set -eu

fail() {
  printf 'preprovision: %s\n' "$1" >&2
  shift
  for line in "$@"; do printf '  %s\n' "$line" >&2; done
  exit 1
}

if [ -n "${CONVEYOR_PG_ADMIN_OBJECT_ID:-}" ] && [ -n "${CONVEYOR_PG_ADMIN_NAME:-}" ]; then
  echo "preprovision: PostgreSQL Entra administrator already chosen: ${CONVEYOR_PG_ADMIN_NAME} (${CONVEYOR_PG_ADMIN_OBJECT_ID})"
  exit 0
fi
if ! command -v az >/dev/null 2>&1; then
  fail "the Azure CLI (az) is not found; the PostgreSQL server needs an Entra administrator, and the hooks sign in as it." \
    "Install and sign in to az, or set CONVEYOR_PG_ADMIN_OBJECT_ID, CONVEYOR_PG_ADMIN_NAME and CONVEYOR_PG_ADMIN_TYPE with azd env set."
fi

token="$(az account get-access-token --resource-type oss-rdbms --query accessToken -o tsv)" \
  || fail "could not get a token from the Azure CLI: sign in with az login (or az login --identity / --service-principal)."

# The JWT's payload, base64url-decoded.
payload="$(printf '%s' "$token" | cut -d. -f2 | tr '_-' '/+')"
case $((${#payload} % 4)) in
  2) payload="$payload==" ;;
  3) payload="$payload=" ;;
esac
claims="$(printf '%s' "$payload" | base64 -d 2>/dev/null)" || fail "the Azure CLI's token is not a JWT."
# claim NAME: the value of a string claim (JWT payloads are compact JSON; "\/" unescaped).
claim() { printf '%s' "$claims" | sed -n "s/.*\"$1\" *: *\"\([^\"]*\)\".*/\1/p" | sed 's#\\/#/#g'; }

object_id="$(claim oid)"
[ -n "$object_id" ] || fail "the Azure CLI's token has no oid claim."

kind="$(az account show --query user.type -o tsv)"
login="$(az account show --query user.name -o tsv)"
name="${CONVEYOR_PG_ADMIN_NAME:-}"
if [ "$kind" = user ]; then
  type=User
  # Guests sign in as user#EXT#@tenant: Graph has the exact user principal name, the token may not.
  [ -n "$name" ] || name="$(az ad signed-in-user show --query userPrincipalName -o tsv 2>/dev/null || true)"
  [ -n "$name" ] || name="$(claim upn)"
  [ -n "$name" ] || name="$login"
else
  type=ServicePrincipal
  case "$login" in
    systemAssignedIdentity | userAssignedIdentity)
      # az login --identity. A managed identity's display name is its resource's name: the last segment of the
      # resource id in xms_mirid (the identity itself, or the VM/app a system-assigned one belongs to).
      [ -n "$name" ] || name="$(claim xms_mirid | sed 's#.*/##')"
      ;;
    *)
      # A service principal (user.name is its application id).
      [ -n "$name" ] || name="$(az ad sp show --id "$login" --query displayName -o tsv 2>/dev/null || true)"
      ;;
  esac
fi
if [ -z "$name" ]; then
  fail "could not tell the name of the signed-in principal ($kind $login, object id $object_id)." \
    "Set it: azd env set CONVEYOR_PG_ADMIN_NAME '<display name>' (a service principal's display name needs Microsoft Graph read access to look up)."
fi

azd env set CONVEYOR_PG_ADMIN_OBJECT_ID "$object_id"
azd env set CONVEYOR_PG_ADMIN_NAME "$name"
azd env set CONVEYOR_PG_ADMIN_TYPE "$type"
echo "preprovision: $name ($type, $object_id) becomes the PostgreSQL Entra administrator."
if [ -z "${CONVEYOR_PG_CLIENT_IP:-}" ] && [ "${CONVEYOR_PRIVATE_NETWORKING:-false}" != true ]; then
  echo "preprovision: CONVEYOR_PG_CLIENT_IP is not set: the PostgreSQL firewall will not admit this machine, and the" >&2
  echo "  database hooks will fail. Set it to this machine's public IP: azd env set CONVEYOR_PG_CLIENT_IP <ip>" >&2
fi
