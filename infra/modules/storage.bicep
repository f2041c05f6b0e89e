// Storage for the Functions host (AzureWebJobsStorage: timer singleton leases, schedule status, keys), for the
// Flex Consumption deployment package, and for the wake queue (issue 11: backlogs wake processor sessions). Shared-key access is disabled: everything authenticates with Entra.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Storage account name (3-24 lowercase letters and digits).')
@minLength(3)
@maxLength(24)
param storageAccountName string

@description('Blob container that receives the Flex Consumption deployment package.')
param deploymentContainerName string

@description('Storage queue that carries wake-ups (the app\'s queue-triggered Wake function listens on it).')
param wakeQueueName string

@description('Principal (object) id of the app\'s user-assigned managed identity.')
param principalId string

@description('False: reachable only through private endpoints (the privateNetworking option). True: public endpoint, still Entra-only.')
param publicNetworkAccess bool = true

// The host with identity-based AzureWebJobsStorage needs blob (leases, timer status, keys, deployment package)
// and table (diagnostic events); the wake queue's trigger reads, deletes and (after maxDequeueCount failures) moves
// messages to a poison queue it creates, and the app posts wake-ups: Queue Data Contributor.
var roles = {
  storageBlobDataOwner: 'b7e6dc6d-f1e8-4753-8033-0f276bb0955b'
  storageTableDataContributor: '0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3'
  storageQueueDataContributor: '974c5e8b-45b9-4653-ba55-5f855dd0fb88'
}

resource storage 'Microsoft.Storage/storageAccounts@2025-06-01' = {
  name: storageAccountName
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: { name: 'Standard_LRS' }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: publicNetworkAccess ? 'Enabled' : 'Disabled'
    networkAcls: {
      bypass: publicNetworkAccess ? 'AzureServices' : 'None'
      defaultAction: publicNetworkAccess ? 'Allow' : 'Deny'
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2025-06-01' = {
  parent: storage
  name: 'default'
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2025-06-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: { publicAccess: 'None' }
}

resource queueService 'Microsoft.Storage/storageAccounts/queueServices@2025-06-01' = {
  parent: storage
  name: 'default'
}

resource wakeQueue 'Microsoft.Storage/storageAccounts/queueServices/queues@2025-06-01' = {
  parent: queueService
  name: wakeQueueName
}

resource roleAssignments 'Microsoft.Authorization/roleAssignments@2022-04-01' = [
  for role in items(roles): {
    name: guid(storage.id, principalId, role.value)
    scope: storage
    properties: {
      roleDefinitionId: subscriptionResourceId('Microsoft.Authorization/roleDefinitions', role.value)
      principalId: principalId
      principalType: 'ServicePrincipal'
    }
  }
]

output storageAccountName string = storage.name
output storageAccountId string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
output deploymentContainerName string = deploymentContainer.name
output queueEndpoint string = storage.properties.primaryEndpoints.queue
output wakeQueueName string = wakeQueue.name
