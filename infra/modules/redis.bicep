// Azure Managed Redis with Entra-only access. Conveyor's data model needs:
// - NoEviction: a job must never disappear because Redis ran short of memory (writes fail loudly instead);
// - OSSCluster: every key of a queue carries the `{queue}` hash tag, so each Lua script touches one slot.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Azure Managed Redis cluster name.')
param redisName string

@description('Azure Managed Redis SKU (Balanced_B0 is the smallest).')
param skuName string = 'Balanced_B0'

@description('Principal (object) id of the identity that gets data access; it is also the Redis ACL user name.')
param principalId string

resource redis 'Microsoft.Cache/redisEnterprise@2025-07-01' = {
  name: redisName
  location: location
  tags: tags
  sku: { name: skuName }
  properties: {
    minimumTlsVersion: '1.2'
    publicNetworkAccess: 'Enabled'
  }
}

resource database 'Microsoft.Cache/redisEnterprise/databases@2025-07-01' = {
  parent: redis
  name: 'default'
  properties: {
    clientProtocol: 'Encrypted'
    port: 10000
    clusteringPolicy: 'OSSCluster'
    evictionPolicy: 'NoEviction'
    accessKeysAuthentication: 'Disabled'
  }
}

resource appAccess 'Microsoft.Cache/redisEnterprise/databases/accessPolicyAssignments@2025-07-01' = {
  parent: database
  name: 'conveyorapp'
  properties: {
    accessPolicyName: 'default'
    user: { objectId: principalId }
  }
}

output redisName string = redis.name
output hostName string = redis.properties.hostName
output port int = database.properties.port
