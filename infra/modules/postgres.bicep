// Azure Database for PostgreSQL flexible server, Microsoft Entra authentication only (no passwords anywhere).
//
// What this module deliberately does NOT create, and why (docs/deploy.md, "Database ownership"):
// - the `conveyor` database. Created here, it would be created by the resource provider before any Entra
//   administrator exists and end up owned by a system role (azuresu), so no administrator could ever create
//   tables in its `public` schema (PostgreSQL 15+) or hand it over. infra/hooks/postprovision.sh creates it,
//   owned by the NOLOGIN role `conveyor_owner`, which every migrating administrator is made a member of.
// - the app's role. The app's managed identity is NOT an Entra administrator (that would make it a member of
//   azure_pg_admin, with CREATEROLE and CREATEDB); the post-provision hook creates its role with
//   pgaadauth_create_principal_with_oid and grants it rights on Conveyor's tables and sequences only.
// The one Entra administrator is the principal that deploys (azd: the signed-in `az` user, service principal or
// managed identity, chosen by infra/hooks/preprovision.sh).

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Flexible server name.')
param serverName string

@description('PostgreSQL major version.')
@allowed(['14', '15', '16', '17'])
param version string = '16'

@description('Compute SKU name, e.g. Standard_B2s (Burstable) or Standard_D2ds_v5 (GeneralPurpose).')
param skuName string

@description('Compute tier matching skuName.')
@allowed(['Burstable', 'GeneralPurpose', 'MemoryOptimized'])
param skuTier string

@description('Storage size in GB.')
param storageSizeGB int = 32

@description('False: public network access off, reachable only through a private endpoint (the privateNetworking option); the firewall rules below are then not created.')
param publicNetworkAccess bool = true

@description('Public access only: firewall rule 0.0.0.0, which admits connections from any Azure service or resource, including other tenants\' (Entra authentication and TLS still apply). Flex Consumption without VNet integration has no fixed outbound address, so it needs this rule.')
param allowAzureServices bool = true

@description('Public access only: first address of an extra allowed client range (the machine that runs the hooks). Empty: no rule.')
param clientIpStart string = ''

@description('Last address of the extra allowed client range. Empty: same as clientIpStart.')
param clientIpEnd string = ''

@description('Object id of the Entra administrator: the deploying principal (user, group or service principal / managed identity).')
@minLength(36)
@maxLength(36)
param adminObjectId string

@description('Name of the administrator (user principal name, group name, or service principal / managed identity display name); it is the PostgreSQL role name the hooks sign in as.')
@minLength(1)
param adminName string

@description('Kind of the administrator.')
@allowed(['User', 'Group', 'ServicePrincipal'])
param adminType string

@description('Connections left over when every app instance holds a full pool (see main.bicep, postgresConnectionHeadroom). ARM rejects the deployment when negative: the server tier cannot serve that many instances with that pool size.')
@minValue(0)
param connectionHeadroom int

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2025-08-01' = {
  name: serverName
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  properties: {
    version: version
    storage: { storageSizeGB: storageSizeGB }
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: 'Disabled'
      tenantId: subscription().tenantId
    }
    network: { publicNetworkAccess: publicNetworkAccess ? 'Enabled' : 'Disabled' }
    highAvailability: { mode: 'Disabled' }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
  }
}

// The server rejects concurrent writes to its children, so every child below waits for the previous one.
resource administrator 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2025-08-01' = {
  parent: server
  name: adminObjectId
  properties: {
    principalType: adminType
    principalName: adminName
    tenantId: subscription().tenantId
  }
}

resource allowAzure 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2025-08-01' = if (publicNetworkAccess && allowAzureServices) {
  parent: server
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
  dependsOn: [administrator]
}

resource allowClient 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2025-08-01' = if (publicNetworkAccess && !empty(clientIpStart)) {
  parent: server
  name: 'AllowClientRange'
  properties: {
    startIpAddress: clientIpStart
    endIpAddress: empty(clientIpEnd) ? clientIpStart : clientIpEnd
  }
  dependsOn: [allowAzure]
}

output serverName string = server.name
output serverId string = server.id
output fullyQualifiedDomainName string = server.properties.fullyQualifiedDomainName
output connectionHeadroom int = connectionHeadroom
