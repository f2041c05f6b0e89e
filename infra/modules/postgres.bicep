// Azure Database for PostgreSQL flexible server, Microsoft Entra authentication only (no passwords anywhere).
// The app's managed identity is an Entra administrator; optionally a second administrator (the deploying
// developer or a CI principal) so migrations can run from outside Azure.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Flexible server name.')
param serverName string

@description('Database the app uses.')
param databaseName string = 'conveyor'

@description('PostgreSQL major version.')
@allowed(['14', '15', '16', '17'])
param version string = '16'

@description('Compute SKU name, e.g. Standard_B1ms (Burstable) or Standard_D2ds_v5 (GeneralPurpose).')
param skuName string = 'Standard_B1ms'

@description('Compute tier matching skuName.')
@allowed(['Burstable', 'GeneralPurpose', 'MemoryOptimized'])
param skuTier string = 'Burstable'

@description('Storage size in GB.')
param storageSizeGB int = 32

@description('Allow connections from any Azure service (firewall rule 0.0.0.0). Flex Consumption without VNet integration needs it.')
param allowAzureServices bool = true

@description('First address of an extra allowed client range (e.g. a developer machine for migrations). Empty: no rule.')
param clientIpStart string = ''

@description('Last address of the extra allowed client range. Empty: same as clientIpStart.')
param clientIpEnd string = ''

@description('Principal (object) id of the app\'s user-assigned managed identity.')
param appPrincipalId string

@description('Name of the app\'s user-assigned managed identity; it becomes the PostgreSQL role name.')
param appPrincipalName string

@description('Object id of an extra Entra administrator (user, group or service principal). Empty: none.')
param extraAdminObjectId string = ''

@description('Name of the extra administrator (user principal name, group or service principal display name); the PostgreSQL role name.')
param extraAdminName string = ''

@description('Kind of the extra administrator.')
@allowed(['User', 'Group', 'ServicePrincipal'])
param extraAdminType string = 'User'

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
    network: { publicNetworkAccess: 'Enabled' }
    highAvailability: { mode: 'Disabled' }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
  }
}

// The server rejects concurrent writes to its children, so every child below waits for the previous one.
resource database 'Microsoft.DBforPostgreSQL/flexibleServers/databases@2025-08-01' = {
  parent: server
  name: databaseName
  properties: {
    charset: 'UTF8'
    collation: 'en_US.utf8'
  }
}

resource allowAzure 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2025-08-01' = if (allowAzureServices) {
  parent: server
  name: 'AllowAllAzureServicesAndResourcesWithinAzureIps'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
  dependsOn: [database]
}

resource allowClient 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2025-08-01' = if (!empty(clientIpStart)) {
  parent: server
  name: 'AllowClientRange'
  properties: {
    startIpAddress: clientIpStart
    endIpAddress: empty(clientIpEnd) ? clientIpStart : clientIpEnd
  }
  dependsOn: [allowAzure]
}

// The administrators resource is named by the principal's object id, which must be known when the deployment
// starts (BCP120): a module parameter is, a property of a resource deployed alongside is not.
module appAdmin 'postgres-admin.bicep' = {
  name: 'postgres-admin-app'
  params: {
    serverName: server.name
    objectId: appPrincipalId
    principalName: appPrincipalName
    principalType: 'ServicePrincipal'
  }
  dependsOn: [database, allowAzure, allowClient]
}

module extraAdmin 'postgres-admin.bicep' = if (!empty(extraAdminObjectId)) {
  name: 'postgres-admin-extra'
  params: {
    serverName: server.name
    objectId: extraAdminObjectId
    principalName: extraAdminName
    principalType: extraAdminType
  }
  dependsOn: [appAdmin]
}

output serverName string = server.name
output fullyQualifiedDomainName string = server.properties.fullyQualifiedDomainName
output databaseName string = database.name
