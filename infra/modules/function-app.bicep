// Flex Consumption plan (FC1) + the Conveyor function app (.NET 10 isolated), running as a user-assigned
// managed identity. No secrets in app settings: storage, Redis, PostgreSQL and Application Insights all take
// Microsoft Entra tokens for that identity.

@description('Azure region.')
param location string

@description('Tags applied to the plan.')
param tags object

@description('Tags applied to the function app (azd finds the service by azd-service-name).')
param appTags object

@description('Flex Consumption plan name.')
param planName string

@description('Function app name (also the <name>.azurewebsites.net host).')
param appName string

@description('Resource id of the user-assigned managed identity the app runs as.')
param identityId string

@description('Client id of that identity.')
param identityClientId string

@description('Principal (object) id of that identity; the Redis ACL user name.')
param identityPrincipalId string

@description('Name of that identity; the PostgreSQL role name.')
param identityName string

@description('Storage account used as AzureWebJobsStorage (identity-based).')
param storageAccountName string

@description('Blob endpoint of that account, e.g. https://<account>.blob.core.windows.net/.')
param storageBlobEndpoint string

@description('Container that receives the deployment package.')
param deploymentContainerName string

@description('Existing Application Insights component (local auth disabled; ingestion uses the identity).')
param applicationInsightsName string

@description('Azure Managed Redis host name, without port.')
param redisHostName string

@description('Azure Managed Redis database port.')
param redisPort int

@description('PostgreSQL flexible server fully qualified domain name.')
param postgresFqdn string

@description('PostgreSQL database name.')
param postgresDatabaseName string

@description('Npgsql Maximum Pool Size: the most PostgreSQL connections one instance opens (see main.bicep for the budget).')
@minValue(1)
@maxValue(100)
param postgresMaxPoolSize int

@description('Queue endpoint of that storage account (https://<account>.queue.core.windows.net/).')
param storageQueueEndpoint string

@description('Storage queue of wake-ups: the Wake function\'s trigger (%ConveyorWakeQueue%) and where the app posts them.')
param wakeQueueName string

@description('Subnet for VNet integration (delegated to Microsoft.App/environments). Empty: no VNet integration (public networking).')
param virtualNetworkSubnetId string = ''

@description('Most instances per function group (Flex Consumption: 40-1000). Every HTTP function shares the group `http`; each other function has its own group.')
@minValue(40)
@maxValue(1000)
param maximumInstanceCount int

@description('Memory per instance in MB.')
@allowed([512, 2048, 4096])
param instanceMemoryMB int

@description('Host functionTimeout (hh:mm:ss). Must exceed Processor session duration + its 30 s shutdown grace.')
param functionTimeout string

@description('Length of one processor session (hh:mm:ss).')
param processorSessionDuration string

@description('Handlers running at once per queue in one processor session.')
param processorConcurrency int

@description('Jobs claimed per script call / held beyond those running.')
param processorPrefetch int

@description('NCRONTAB schedules (6 fields, UTC).')
param schedules {
  scheduler: string
  custodian: string
  heartbeatFlush: string
  staleSweeper: string
  processor: string
}

@description('Client id of the Microsoft Entra app registration that signs users in to the dashboard (App Service authentication). Empty: App Service authentication stays off, and the dashboard refuses every request.')
param dashboardEntraClientId string = ''

@description('Value of WEBSITE_USE_PLACEHOLDER_DOTNETISOLATED: 0 works around the .NET 10 on Flex Consumption worker crash (Azure/azure-functions-dotnet-worker#3335).')
@allowed(['0', '1'])
param dotnetIsolatedPlaceholder string

// The app's connection string: the role is the identity's name and the Entra token is the password (no Password
// here). VerifyFull: the server certificate must chain to a trusted root (the system store; Azure's roots are
// DigiCert Global Root G2 and Microsoft RSA Root CA 2017) and name this host, so the token is only ever sent to
// this server. Maximum Pool Size bounds this instance's share of the server's connections.
var postgresConnectionString = 'Host=${postgresFqdn};Port=5432;Database=${postgresDatabaseName};Username=${identityName};Ssl Mode=VerifyFull;Maximum Pool Size=${postgresMaxPoolSize}'

resource appInsights 'Microsoft.Insights/components@2020-02-02' existing = {
  name: applicationInsightsName
}

resource plan 'Microsoft.Web/serverfarms@2025-03-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    name: 'FC1'
    tier: 'FlexConsumption'
  }
  properties: {
    reserved: true
  }
}

resource app 'Microsoft.Web/sites@2025-03-01' = {
  name: appName
  location: location
  tags: appTags
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    // Flex Consumption VNet integration: outbound traffic to storage, Redis and PostgreSQL goes through the subnet
    // and their private endpoints. Inbound HTTP stays public (producers and runtimes call the API).
    virtualNetworkSubnetId: empty(virtualNetworkSubnetId) ? null : virtualNetworkSubnetId
    siteConfig: {
      minTlsVersion: '1.2'
      // On Flex Consumption the runtime comes from functionAppConfig.runtime: FUNCTIONS_WORKER_RUNTIME and
      // FUNCTIONS_EXTENSION_VERSION must not be set here.
      appSettings: [
        // Host storage, identity-based (user-assigned identity).
        { name: 'AzureWebJobsStorage__accountName', value: storageAccountName }
        { name: 'AzureWebJobsStorage__credential', value: 'managedidentity' }
        { name: 'AzureWebJobsStorage__clientId', value: identityClientId }
        // The wake queue's trigger and sender (StorageWakeSender) use the queue service with the same identity.
        { name: 'AzureWebJobsStorage__queueServiceUri', value: storageQueueEndpoint }
        { name: 'ConveyorWakeQueue', value: wakeQueueName }
        // Telemetry with Entra ingestion.
        { name: 'APPLICATIONINSIGHTS_CONNECTION_STRING', value: appInsights.properties.ConnectionString }
        { name: 'APPLICATIONINSIGHTS_AUTHENTICATION_STRING', value: 'Authorization=AAD;ClientId=${identityClientId}' }
        // Lets DefaultAzureCredential pick the user-assigned identity.
        { name: 'AZURE_CLIENT_ID', value: identityClientId }
        // .NET 10 on Flex: FunctionsNetHost can exit with SIGSEGV (139) when specialising a placeholder.
        { name: 'WEBSITE_USE_PLACEHOLDER_DOTNETISOLATED', value: dotnetIsolatedPlaceholder }
        // Overrides host.json; see the relation with the processor session below.
        { name: 'AzureFunctionsJobHost__functionTimeout', value: functionTimeout }
        // Conveyor: Redis with Entra (ACL user = the identity's object id).
        { name: 'Conveyor__Redis__HostName', value: '${redisHostName}:${redisPort}' }
        { name: 'Conveyor__Redis__UseEntraId', value: 'true' }
        { name: 'Conveyor__Redis__PrincipalId', value: identityPrincipalId }
        // Conveyor: PostgreSQL with Entra (role = the identity's name; the token is the password).
        { name: 'Conveyor__Postgres__ConnectionString', value: postgresConnectionString }
        { name: 'Conveyor__Postgres__UseEntraId', value: 'true' }
        // The hooks migrate as the Entra administrator; the app's role only gets rights on the tables.
        { name: 'Conveyor__Postgres__MigrateOnStart', value: 'false' }
        { name: 'Conveyor__Identity__ClientId', value: identityClientId }
        // Conveyor: processor sessions. Session + 30 s shutdown grace < functionTimeout.
        { name: 'Conveyor__Processor__SessionDuration', value: processorSessionDuration }
        { name: 'Conveyor__Processor__Concurrency', value: string(processorConcurrency) }
        { name: 'Conveyor__Processor__Prefetch', value: string(processorPrefetch) }
        // Timer schedules, read by the host as %ConveyorXxxSchedule%.
        { name: 'ConveyorSchedulerSchedule', value: schedules.scheduler }
        { name: 'ConveyorCustodianSchedule', value: schedules.custodian }
        { name: 'ConveyorHeartbeatFlushSchedule', value: schedules.heartbeatFlush }
        { name: 'ConveyorStaleSweeperSchedule', value: schedules.staleSweeper }
        { name: 'ConveyorProcessorSchedule', value: schedules.processor }
        // App Service authentication proves the app to Microsoft Entra with this identity (a federated credential on the
        // dashboard's app registration) instead of a client secret; unused while dashboardEntraClientId is empty.
        { name: 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID', value: identityClientId }
      ]
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storageBlobEndpoint}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        maximumInstanceCount: maximumInstanceCount
        instanceMemoryMB: instanceMemoryMB
      }
      runtime: {
        name: 'dotnet-isolated'
        version: '10.0'
      }
    }
  }
}

// The paths of the key-based API (producers, runtimes, health probes): App Service authentication lets them through
// untouched, so their callers keep using function keys and runtime tokens. Everything else, the dashboard
// (/api/dashboard/...) included, needs a Microsoft Entra sign-in.
var apiPaths = [
  '/api/health'
  '/api/openapi.json'
  '/api/queues'
  '/api/queues/*'
  '/api/runtimes'
  '/api/runtimes/*'
]

// The dashboard behind App Service authentication (Easy Auth) with Microsoft Entra. The app trusts the principal
// headers only while the platform reports authentication on (WEBSITE_AUTH_ENABLED), since only then are headers a
// client sends stripped.
resource auth 'Microsoft.Web/sites/config@2025-03-01' = if (!empty(dashboardEntraClientId)) {
  parent: app
  name: 'authsettingsV2'
  properties: {
    platform: {
      enabled: true
    }
    globalValidation: {
      requireAuthentication: true
      unauthenticatedClientAction: 'RedirectToLoginPage'
      redirectToProvider: 'azureactivedirectory'
      excludedPaths: apiPaths
    }
    httpSettings: {
      requireHttps: true
    }
    identityProviders: {
      azureActiveDirectory: {
        enabled: true
        registration: {
          clientId: dashboardEntraClientId
          openIdIssuer: '${environment().authentication.loginEndpoint}${tenant().tenantId}/v2.0'
          clientSecretSettingName: 'OVERRIDE_USE_MI_FIC_ASSERTION_CLIENTID'
        }
        validation: {
          allowedAudiences: [
            'api://${dashboardEntraClientId}'
          ]
        }
      }
    }
  }
}

output appName string = app.name
output planName string = plan.name
output defaultHostName string = app.properties.defaultHostName
@description('The app\'s PostgreSQL connection string (no password: Entra tokens authenticate).')
output postgresConnectionString string = postgresConnectionString
