// Azure Managed Redis with Entra-only access. Redis holds Conveyor's jobs (the data, not a cache), so:
// - NoEviction: a job must never disappear because Redis ran short of memory (writes fail loudly instead);
// - AOF persistence, fsync every second: if the primary and its replica go down together, the database is rebuilt
//   from the append-only file on restart, losing at most about the last second of writes (RDB snapshots would
//   lose everything since the last snapshot, up to hours);
// - high availability (a replica per shard) stays on;
// - OSSCluster: every key of a queue carries the `{queue}` hash tag, so each Lua script touches one slot.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Azure Managed Redis cluster name.')
param redisName string

@description('Azure Managed Redis SKU (main.bicep lists the allowed ones).')
param skuName string

@description('False: reachable only through a private endpoint (the privateNetworking option). True: public endpoint, still Entra-only and TLS-only.')
param publicNetworkAccess bool = true

@description('Principal (object) id of the identity that gets data access; it is also the Redis ACL user name.')
param principalId string

resource redis 'Microsoft.Cache/redisEnterprise@2025-07-01' = {
  name: redisName
  location: location
  tags: tags
  sku: { name: skuName }
  properties: {
    minimumTlsVersion: '1.2'
    highAvailability: 'Enabled'
    publicNetworkAccess: publicNetworkAccess ? 'Enabled' : 'Disabled'
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
    persistence: {
      aofEnabled: true
      aofFrequency: '1s'
      rdbEnabled: false
    }
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
output redisId string = redis.id
output hostName string = redis.properties.hostName
output port int = database.properties.port
