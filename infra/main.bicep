// Conveyor on Azure: Flex Consumption function app + Azure Managed Redis + PostgreSQL flexible server,
// all reached with one user-assigned managed identity and Microsoft Entra tokens. No secrets anywhere.
//
// Deploy with `azd up` (azure.yaml at the repository root) or
// `az deployment group create -g <rg> -f infra/main.bicep -p environmentName=<env> postgresAdmin...=...` and the
// hooks by hand; see docs/deploy.md. Check locally with `infra/check` (build + lint with Bicep 0.49.2, fails on
// any warning); tests/Conveyor.Tests/Infra checks the compiled template and runs the hooks.
targetScope = 'resourceGroup'

@description('Environment name (azd AZURE_ENV_NAME); part of every resource name.')
@minLength(1)
@maxLength(40)
param environmentName string

// Regions with Flex Consumption (Azure-Samples/functions-quickstart-dotnet-azd infra/main.bicep; its canary
// region eastus2euap left out). Azure Managed Redis and PostgreSQL flexible server must be offered there too.
@description('Azure region for every resource: one that has Flex Consumption, Azure Managed Redis and PostgreSQL flexible server.')
@allowed([
  'australiaeast'
  'centralindia'
  'centralus'
  'eastasia'
  'eastus'
  'eastus2'
  'francecentral'
  'germanywestcentral'
  'northcentralus'
  'northeurope'
  'southcentralus'
  'southeastasia'
  'swedencentral'
  'uksouth'
  'westcentralus'
  'westeurope'
  'westus2'
])
@metadata({ azd: { type: 'location' } })
param location string

@description('Private networking: Flex Consumption VNet integration, and private endpoints for storage (blob, queue, table), Redis and PostgreSQL with their public network access turned off. The hooks then have to run from a machine inside that network. False (default): public endpoints, Entra-only and TLS-only, PostgreSQL behind its firewall (see postgresAllowAzureServices).')
param privateNetworking bool = false

// ---- Function app (Flex Consumption) ----

@description('Most instances per function group (Flex Consumption, 40-1000). The HTTP functions share one group, the queue-triggered Wake function (processor sessions woken by a backlog) is another; each timer function is its own group and runs on one instance. Bounded by the PostgreSQL connection budget below: with the default pool (3) and SKU (B2s), 3 x (2 x 60 + 5) + 5 = 380 of 414 user connections.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 60

@description('Memory per instance in MB (Flex Consumption).')
@allowed([512, 2048, 4096])
param instanceMemoryMB int = 2048

@description('Host functionTimeout (hh:mm:ss), set as AzureFunctionsJobHost__functionTimeout; keep equal to host.json. Must exceed processorSessionDuration + 30 s shutdown grace.')
param functionTimeout string = '00:10:00'

@description('Conveyor__Processor__SessionDuration (hh:mm:ss): one processor session per ConveyorProcessorSchedule tick. Session + 30 s grace must stay below functionTimeout and should not exceed the schedule period.')
param processorSessionDuration string = '00:04:30'

@description('Conveyor__Processor__Concurrency: handlers running at once per queue in a session.')
@minValue(1)
@maxValue(1024)
param processorConcurrency int = 16

@description('Conveyor__Processor__Prefetch: jobs claimed per script call and held beyond those running.')
@minValue(1)
@maxValue(1000)
param processorPrefetch int = 16

@description('ConveyorSchedulerSchedule (NCRONTAB with seconds, UTC): promote due scheduled jobs and retries.')
param schedulerSchedule string = '*/5 * * * * *'

@description('ConveyorCustodianSchedule (NCRONTAB with seconds, UTC): recover orphaned claims, trim the dead set.')
param custodianSchedule string = '*/15 * * * * *'

@description('ConveyorHeartbeatFlushSchedule (NCRONTAB with seconds, UTC): write buffered runtime heartbeats to PostgreSQL.')
param heartbeatFlushSchedule string = '*/10 * * * * *'

@description('ConveyorStaleSweeperSchedule (NCRONTAB with seconds, UTC): mark silent runtimes offline.')
param staleSweeperSchedule string = '*/30 * * * * *'

@description('ConveyorProcessorSchedule (NCRONTAB with seconds, UTC): start a bounded processor session.')
param processorSchedule string = '*/10 * * * * *'

@description('Client id of the Microsoft Entra app registration that signs users in to the dashboard (App Service authentication, docs/deploy.md). Empty (default): App Service authentication stays off and the dashboard stays closed; the key-based API works either way.')
param dashboardEntraClientId string = ''

@description('WEBSITE_USE_PLACEHOLDER_DOTNETISOLATED. 0 (default) avoids the .NET 10 on Flex Consumption worker crash (exit 139, Azure/azure-functions-dotnet-worker#3335) at the cost of placeholder cold-start optimisation.')
@allowed(['0', '1'])
param dotnetIsolatedPlaceholder string = '0'

// ---- Redis ----

@description('Azure Managed Redis SKU. Only in-memory tiers (Balanced, Memory Optimized, Compute Optimized): all of them support data persistence, which Conveyor turns on (AOF). Size it for the backlog that may build up: Redis runs noeviction and refuses writes when full.')
@allowed([
  'Balanced_B0'
  'Balanced_B1'
  'Balanced_B3'
  'Balanced_B5'
  'Balanced_B10'
  'Balanced_B20'
  'Balanced_B50'
  'Balanced_B100'
  'Balanced_B150'
  'Balanced_B250'
  'Balanced_B350'
  'Balanced_B500'
  'Balanced_B700'
  'Balanced_B1000'
  'MemoryOptimized_M10'
  'MemoryOptimized_M20'
  'MemoryOptimized_M50'
  'MemoryOptimized_M100'
  'MemoryOptimized_M150'
  'MemoryOptimized_M250'
  'MemoryOptimized_M350'
  'MemoryOptimized_M500'
  'MemoryOptimized_M700'
  'MemoryOptimized_M1000'
  'MemoryOptimized_M1500'
  'MemoryOptimized_M2000'
  'ComputeOptimized_X3'
  'ComputeOptimized_X5'
  'ComputeOptimized_X10'
  'ComputeOptimized_X20'
  'ComputeOptimized_X50'
  'ComputeOptimized_X100'
])
param redisSkuName string = 'Balanced_B0'

// ---- PostgreSQL ----

@description('PostgreSQL major version.')
@allowed(['14', '15', '16', '17'])
param postgresVersion string = '16'

@description('PostgreSQL compute SKU; its tier and connection limit come from postgresSkus below. Standard_B1ms is not offered: its 35 user connections cannot serve the 40 instances Flex Consumption may start at the least.')
@allowed([
  'Standard_B2s'
  'Standard_B2ms'
  'Standard_B4ms'
  'Standard_B8ms'
  'Standard_B12ms'
  'Standard_D2ds_v5'
  'Standard_D4ds_v5'
  'Standard_D8ds_v5'
  'Standard_D16ds_v5'
  'Standard_E2ds_v5'
  'Standard_E4ds_v5'
])
param postgresSkuName string = 'Standard_B2s'

@description('PostgreSQL storage in GB.')
param postgresStorageSizeGB int = 32

@description('Npgsql Maximum Pool Size per app instance: the most PostgreSQL connections one instance opens. pool x (maximumInstanceCount + timer functions) + 20 must fit the SKU\'s max_connections, or the deployment is rejected.')
@minValue(1)
@maxValue(100)
param postgresMaxPoolSize int = 3

@description('Public networking only: firewall rule 0.0.0.0, which admits any Azure service or resource (any tenant\'s) to the PostgreSQL endpoint; Entra authentication and verified TLS still apply. Flex Consumption without VNet integration has no fixed outbound address, so the app needs it. Use privateNetworking to do without.')
param postgresAllowAzureServices bool = true

@description('Public networking only: first address of an extra allowed client range for PostgreSQL (the machine that runs the hooks). Empty: none.')
param postgresClientIpStart string = ''

@description('Last address of that range. Empty: same as postgresClientIpStart.')
param postgresClientIpEnd string = ''

@description('Object id of the PostgreSQL Entra administrator: the principal that runs the hooks (azd: the one signed in to az, chosen by infra/hooks/preprovision.sh). The app\'s identity is never an administrator.')
@minLength(36)
@maxLength(36)
param postgresAdminObjectId string

@description('Name of that administrator: user principal name, group name, or service principal / managed identity display name. It is the PostgreSQL role name the hooks sign in as.')
@minLength(1)
param postgresAdminName string

@description('Kind of that administrator.')
@allowed(['User', 'Group', 'ServicePrincipal'])
param postgresAdminType string = 'User'

// ---- PostgreSQL connection budget ----
// max_connections of each offered SKU (learn.microsoft.com/azure/postgresql/flexible-server/concepts-limits,
// "Maximum connections"); Azure keeps 15 of them for replication and monitoring.
var postgresSkus = {
  Standard_B2s: { tier: 'Burstable', maxConnections: 429 }
  Standard_B2ms: { tier: 'Burstable', maxConnections: 859 }
  Standard_B4ms: { tier: 'Burstable', maxConnections: 1718 }
  Standard_B8ms: { tier: 'Burstable', maxConnections: 3437 }
  Standard_B12ms: { tier: 'Burstable', maxConnections: 5000 }
  Standard_D2ds_v5: { tier: 'GeneralPurpose', maxConnections: 859 }
  Standard_D4ds_v5: { tier: 'GeneralPurpose', maxConnections: 1718 }
  Standard_D8ds_v5: { tier: 'GeneralPurpose', maxConnections: 3437 }
  Standard_D16ds_v5: { tier: 'GeneralPurpose', maxConnections: 5000 }
  Standard_E2ds_v5: { tier: 'MemoryOptimized', maxConnections: 1718 }
  Standard_E4ds_v5: { tier: 'MemoryOptimized', maxConnections: 3437 }
}
var postgresAzureReservedConnections = 15
// The hooks' own sessions (psql, the migration's pool) and an administrator's psql.
var postgresOperatorConnections = 5
// Flex Consumption scales per function group. Scaled groups reach maximumInstanceCount: `http` (every HTTP
// function) and `function:Wake` (the wake queue's trigger). Each timer function is a group of its own that runs on one instance (its listener is a blob-lease
// singleton). Keep these in step with functions/: InfraTemplateTests counts the triggers there.
var scaledFunctionGroups = 2
var singleInstanceFunctionGroups = 5
var appInstances = maximumInstanceCount * scaledFunctionGroups + singleInstanceFunctionGroups
var postgresConnectionHeadroom = postgresSkus[postgresSkuName].maxConnections - postgresAzureReservedConnections - postgresOperatorConnections - postgresMaxPoolSize * appInstances

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var names = {
  identity: 'id-conveyor-${resourceToken}'
  logAnalytics: 'log-conveyor-${resourceToken}'
  applicationInsights: 'appi-conveyor-${resourceToken}'
  storage: 'stconveyor${take(resourceToken, 12)}'
  deploymentContainer: 'app-package'
  // Must equal functions/Queues/StorageWakeSender.DefaultQueue and local.settings.sample.json's ConveyorWakeQueue.
  wakeQueue: 'conveyor-wake'
  plan: 'plan-conveyor-${resourceToken}'
  functionApp: 'func-conveyor-${resourceToken}'
  redis: 'redis-conveyor-${resourceToken}'
  postgres: 'psql-conveyor-${resourceToken}'
  // Created by infra/hooks/postprovision.sh, not by this template (see modules/postgres.bicep).
  database: 'conveyor'
  vnet: 'vnet-conveyor-${resourceToken}'
}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2024-11-30' = {
  name: names.identity
  location: location
  tags: tags
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  params: {
    location: location
    tags: tags
    logAnalyticsName: names.logAnalytics
    applicationInsightsName: names.applicationInsights
    principalId: identity.properties.principalId
  }
}

module network 'modules/network.bicep' = if (privateNetworking) {
  name: 'network'
  params: {
    location: location
    tags: tags
    vnetName: names.vnet
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    storageAccountName: names.storage
    deploymentContainerName: names.deploymentContainer
    wakeQueueName: names.wakeQueue
    principalId: identity.properties.principalId
    publicNetworkAccess: !privateNetworking
  }
}

module redis 'modules/redis.bicep' = {
  name: 'redis'
  params: {
    location: location
    tags: tags
    redisName: names.redis
    skuName: redisSkuName
    principalId: identity.properties.principalId
    publicNetworkAccess: !privateNetworking
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  params: {
    location: location
    tags: tags
    serverName: names.postgres
    version: postgresVersion
    skuName: postgresSkuName
    skuTier: postgresSkus[postgresSkuName].tier
    storageSizeGB: postgresStorageSizeGB
    publicNetworkAccess: !privateNetworking
    allowAzureServices: postgresAllowAzureServices
    clientIpStart: postgresClientIpStart
    clientIpEnd: postgresClientIpEnd
    adminObjectId: postgresAdminObjectId
    adminName: postgresAdminName
    adminType: postgresAdminType
    connectionHeadroom: postgresConnectionHeadroom
  }
}

// Private endpoints: one per storage sub-resource the host (and the coming wake queue) uses, one for Redis, one for
// PostgreSQL. Built from module outputs, so each waits for its service and for the network.
var privateEndpoints = [
  { name: 'pe-${names.storage}-blob', groupId: 'blob', zone: 'blob' }
  { name: 'pe-${names.storage}-queue', groupId: 'queue', zone: 'queue' }
  { name: 'pe-${names.storage}-table', groupId: 'table', zone: 'table' }
  { name: 'pe-${names.redis}', groupId: 'redisEnterprise', zone: 'redis' }
  { name: 'pe-${names.postgres}', groupId: 'postgresqlServer', zone: 'postgres' }
]
var privateEndpointServiceIds = {
  blob: storage.outputs.storageAccountId
  queue: storage.outputs.storageAccountId
  table: storage.outputs.storageAccountId
  redisEnterprise: redis.outputs.redisId
  postgresqlServer: postgres.outputs.serverId
}

@batchSize(1)
module endpoints 'modules/private-endpoint.bicep' = [
  for endpoint in privateEndpoints: if (privateNetworking) {
    name: endpoint.name
    params: {
      location: location
      tags: tags
      name: endpoint.name
      serviceId: privateEndpointServiceIds[endpoint.groupId]
      groupId: endpoint.groupId
      subnetId: network.?outputs.privateEndpointSubnetId ?? ''
      privateDnsZoneId: network.?outputs.zoneIds[endpoint.zone] ?? ''
    }
  }
]

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  params: {
    location: location
    tags: tags
    appTags: union(tags, { 'azd-service-name': 'functions' })
    planName: names.plan
    appName: names.functionApp
    identityId: identity.id
    identityClientId: identity.properties.clientId
    identityPrincipalId: identity.properties.principalId
    identityName: identity.name
    storageAccountName: storage.outputs.storageAccountName
    storageBlobEndpoint: storage.outputs.blobEndpoint
    deploymentContainerName: storage.outputs.deploymentContainerName
    storageQueueEndpoint: storage.outputs.queueEndpoint
    wakeQueueName: storage.outputs.wakeQueueName
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    redisHostName: redis.outputs.hostName
    redisPort: redis.outputs.port
    postgresFqdn: postgres.outputs.fullyQualifiedDomainName
    postgresDatabaseName: names.database
    postgresMaxPoolSize: postgresMaxPoolSize
    virtualNetworkSubnetId: network.?outputs.appSubnetId ?? ''
    maximumInstanceCount: maximumInstanceCount
    instanceMemoryMB: instanceMemoryMB
    functionTimeout: functionTimeout
    processorSessionDuration: processorSessionDuration
    processorConcurrency: processorConcurrency
    processorPrefetch: processorPrefetch
    schedules: {
      scheduler: schedulerSchedule
      custodian: custodianSchedule
      heartbeatFlush: heartbeatFlushSchedule
      staleSweeper: staleSweeperSchedule
      processor: processorSchedule
    }
    dotnetIsolatedPlaceholder: dotnetIsolatedPlaceholder
    dashboardEntraClientId: dashboardEntraClientId
  }
  // With private networking the app must not start before its endpoints resolve.
  dependsOn: [endpoints]
}

// Outputs use azd's UPPER_SNAKE convention: azd stores them in the environment (.azure/<env>/.env), where the
// hooks read them.
output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = subscription().tenantId
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.appName
output AZURE_FUNCTION_APP_URL string = 'https://${functionApp.outputs.defaultHostName}'
output AZURE_FUNCTION_PLAN_NAME string = functionApp.outputs.planName
output AZURE_IDENTITY_NAME string = identity.name
output AZURE_IDENTITY_CLIENT_ID string = identity.properties.clientId
output AZURE_IDENTITY_PRINCIPAL_ID string = identity.properties.principalId
output AZURE_STORAGE_ACCOUNT_NAME string = storage.outputs.storageAccountName
output AZURE_LOG_ANALYTICS_NAME string = monitoring.outputs.logAnalyticsName
output AZURE_APPLICATION_INSIGHTS_NAME string = monitoring.outputs.applicationInsightsName
output AZURE_REDIS_NAME string = redis.outputs.redisName
output AZURE_REDIS_HOST string = '${redis.outputs.hostName}:${redis.outputs.port}'
output AZURE_POSTGRES_SERVER_NAME string = postgres.outputs.serverName
output AZURE_POSTGRES_FQDN string = postgres.outputs.fullyQualifiedDomainName
output AZURE_POSTGRES_PORT int = 5432
output AZURE_POSTGRES_DATABASE string = names.database
@description('Connections the PostgreSQL server has left when every app instance holds a full pool.')
output AZURE_POSTGRES_CONNECTION_HEADROOM int = postgres.outputs.connectionHeadroom
output CONVEYOR_PRIVATE_NETWORKING bool = privateNetworking
@description('The app\'s connection string (user = the identity\'s role). Holds no password: Entra tokens authenticate.')
output CONVEYOR_POSTGRES_CONNECTION_STRING string = functionApp.outputs.postgresConnectionString
