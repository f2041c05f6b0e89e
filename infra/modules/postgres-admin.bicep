// One Microsoft Entra administrator of a PostgreSQL flexible server. A module so that the resource name
// (the principal's object id) is a deployment-time value even when it comes from a managed identity
// created in the same deployment.

@description('Existing flexible server name.')
param serverName string

@description('Object id of the principal.')
param objectId string

@description('Principal name: managed identity or service principal display name, user principal name, or group name. It becomes the PostgreSQL role name.')
param principalName string

@description('Kind of principal.')
@allowed(['User', 'Group', 'ServicePrincipal'])
param principalType string

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2025-08-01' existing = {
  name: serverName
}

resource administrator 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2025-08-01' = {
  parent: server
  name: objectId
  properties: {
    principalType: principalType
    principalName: principalName
    tenantId: subscription().tenantId
  }
}
