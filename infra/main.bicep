// Conveyor on Azure: Flex Consumption function app + Azure Managed Redis + PostgreSQL flexible server,
// all reached with one user-assigned managed identity and Microsoft Entra tokens. No secrets anywhere.
//
// Deploy with `azd up` (azure.yaml at the repository root) or
// `az deployment group create -g <rg> -f infra/main.bicep -p environmentName=<env>`; see docs/deploy.md.
// Check locally with `infra/check` (build + lint with Bicep 0.49.2, fails on any warning).
targetScope = 'resourceGroup'

@description('Environment name (azd AZURE_ENV_NAME); part of every resource name.')
@minLength(1)
@maxLength(40)
param environmentName string

@description('Azure region for every resource. Flex Consumption, Azure Managed Redis and PostgreSQL flexible server must all be available there.')
param location string = resourceGroup().location

// ---- Function app (Flex Consumption) ----

@description('Most instances per function group (Flex Consumption, 40-1000). Timers run one invocation at a time whatever this is.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int = 100

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

@description('WEBSITE_USE_PLACEHOLDER_DOTNETISOLATED. 0 (default) avoids the .NET 10 on Flex Consumption worker crash (exit 139, Azure/azure-functions-dotnet-worker#3335) at the cost of placeholder cold-start optimisation.')
@allowed(['0', '1'])
param dotnetIsolatedPlaceholder string = '0'

// ---- Redis ----

@description('Azure Managed Redis SKU.')
param redisSkuName string = 'Balanced_B0'

// ---- PostgreSQL ----

@description('PostgreSQL major version.')
@allowed(['14', '15', '16', '17'])
param postgresVersion string = '16'

@description('PostgreSQL compute SKU.')
param postgresSkuName string = 'Standard_B1ms'

@description('PostgreSQL compute tier matching postgresSkuName.')
@allowed(['Burstable', 'GeneralPurpose', 'MemoryOptimized'])
param postgresSkuTier string = 'Burstable'

@description('PostgreSQL storage in GB.')
param postgresStorageSizeGB int = 32

@description('Firewall rule 0.0.0.0 (any Azure service). Needed by Flex Consumption without VNet integration.')
param postgresAllowAzureServices bool = true

@description('First address of an extra allowed client range for PostgreSQL (e.g. the machine that runs migrations). Empty: none.')
param postgresClientIpStart string = ''

@description('Last address of that range. Empty: same as postgresClientIpStart.')
param postgresClientIpEnd string = ''

@description('Object id of an extra PostgreSQL Entra administrator that runs migrations (azd: the signed-in user). Empty: none.')
param postgresAdminObjectId string = ''

@description('Name of that administrator: user principal name, group name or service principal display name. It is the PostgreSQL user name.')
param postgresAdminName string = ''

@description('Kind of that administrator.')
@allowed(['User', 'Group', 'ServicePrincipal'])
param postgresAdminType string = 'User'

var resourceToken = toLower(uniqueString(subscription().id, resourceGroup().id, environmentName, location))
var tags = { 'azd-env-name': environmentName }
var names = {
  identity: 'id-conveyor-${resourceToken}'
  logAnalytics: 'log-conveyor-${resourceToken}'
  applicationInsights: 'appi-conveyor-${resourceToken}'
  storage: 'stconveyor${take(resourceToken, 12)}'
  deploymentContainer: 'app-package'
  plan: 'plan-conveyor-${resourceToken}'
  functionApp: 'func-conveyor-${resourceToken}'
  redis: 'redis-conveyor-${resourceToken}'
  postgres: 'psql-conveyor-${resourceToken}'
  database: 'conveyor'
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

module storage 'modules/storage.bicep' = {
  name: 'storage'
  params: {
    location: location
    tags: tags
    storageAccountName: names.storage
    deploymentContainerName: names.deploymentContainer
    principalId: identity.properties.principalId
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
  }
}

module postgres 'modules/postgres.bicep' = {
  name: 'postgres'
  params: {
    location: location
    tags: tags
    serverName: names.postgres
    databaseName: names.database
    version: postgresVersion
    skuName: postgresSkuName
    skuTier: postgresSkuTier
    storageSizeGB: postgresStorageSizeGB
    allowAzureServices: postgresAllowAzureServices
    clientIpStart: postgresClientIpStart
    clientIpEnd: postgresClientIpEnd
    appPrincipalId: identity.properties.principalId
    appPrincipalName: identity.name
    extraAdminObjectId: postgresAdminObjectId
    extraAdminName: postgresAdminName
    extraAdminType: postgresAdminType
  }
}

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
    applicationInsightsName: monitoring.outputs.applicationInsightsName
    redisHostName: redis.outputs.hostName
    redisPort: redis.outputs.port
    postgresFqdn: postgres.outputs.fullyQualifiedDomainName
    postgresDatabaseName: postgres.outputs.databaseName
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
  }
}

// Outputs use azd's UPPER_SNAKE convention: azd stores them in the environment (.azure/<env>/.env), where
// infra/hooks/postprovision.sh reads them.
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
output AZURE_POSTGRES_DATABASE string = postgres.outputs.databaseName
@description('The app\'s connection string (user = the identity\'s role). Holds no password: Entra tokens authenticate.')
output CONVEYOR_POSTGRES_CONNECTION_STRING string = 'Host=${postgres.outputs.fullyQualifiedDomainName};Database=${postgres.outputs.databaseName};Username=${identity.name};Ssl Mode=Require'
