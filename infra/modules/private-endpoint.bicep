// One private endpoint (a private IP in the endpoints subnet for one sub-resource of a service) and the DNS zone
// group that publishes its address in the matching privatelink zone, so the service's usual host name resolves
// to it from inside the virtual network.

@description('Azure region.')
param location string

@description('Tags applied to the endpoint.')
param tags object

@description('Private endpoint name.')
param name string

@description('Resource id of the service (storage account, Redis cluster, PostgreSQL server).')
param serviceId string

@description('Private-link sub-resource: blob, queue, table, redisEnterprise or postgresqlServer.')
@allowed(['blob', 'queue', 'table', 'redisEnterprise', 'postgresqlServer'])
param groupId string

@description('Subnet that holds the endpoint.')
param subnetId string

@description('Private DNS zone for the sub-resource.')
param privateDnsZoneId string

resource endpoint 'Microsoft.Network/privateEndpoints@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    subnet: { id: subnetId }
    privateLinkServiceConnections: [
      {
        name: name
        properties: {
          privateLinkServiceId: serviceId
          groupIds: [groupId]
        }
      }
    ]
  }
}

resource dnsZoneGroup 'Microsoft.Network/privateEndpoints/privateDnsZoneGroups@2024-05-01' = {
  parent: endpoint
  name: 'default'
  properties: {
    privateDnsZoneConfigs: [
      {
        name: groupId
        properties: { privateDnsZoneId: privateDnsZoneId }
      }
    ]
  }
}
