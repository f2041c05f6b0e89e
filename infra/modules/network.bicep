// The private network of the `privateNetworking` option: one virtual network with
// - subnet `app`, delegated to Microsoft.App/environments (Flex Consumption VNet integration: the app's outbound
//   traffic leaves through it);
// - subnet `private-endpoints`, holding the private endpoints of storage, Redis and PostgreSQL;
// and the private DNS zones that make the services' usual host names resolve to those endpoints inside the network.

@description('Azure region.')
param location string

@description('Tags applied to every resource.')
param tags object

@description('Virtual network name.')
param vnetName string

@description('Address space of the virtual network.')
param addressPrefix string = '10.60.0.0/16'

@description('Subnet for Flex Consumption VNet integration (delegated to Microsoft.App/environments). /24 leaves room for the instances of a large scale-out.')
param appSubnetPrefix string = '10.60.0.0/24'

@description('Subnet for the private endpoints.')
param privateEndpointSubnetPrefix string = '10.60.1.0/24'

// privatelink zones, one per service endpoint kind (Azure private endpoint DNS zone names).
var zoneNames = {
  blob: 'privatelink.blob.${environment().suffixes.storage}'
  queue: 'privatelink.queue.${environment().suffixes.storage}'
  table: 'privatelink.table.${environment().suffixes.storage}'
  postgres: 'privatelink.postgres.database.azure.com'
  redis: 'privatelink.redis.azure.net'
}

resource vnet 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: vnetName
  location: location
  tags: tags
  properties: {
    addressSpace: { addressPrefixes: [addressPrefix] }
    subnets: [
      {
        name: 'app'
        properties: {
          addressPrefix: appSubnetPrefix
          delegations: [
            {
              name: 'flex-consumption'
              properties: { serviceName: 'Microsoft.App/environments' }
            }
          ]
        }
      }
      {
        name: 'private-endpoints'
        properties: {
          addressPrefix: privateEndpointSubnetPrefix
          privateEndpointNetworkPolicies: 'Disabled'
        }
      }
    ]
  }
}

resource zones 'Microsoft.Network/privateDnsZones@2024-06-01' = [
  for zone in items(zoneNames): {
    name: zone.value
    location: 'global'
    tags: tags
  }
]

resource links 'Microsoft.Network/privateDnsZones/virtualNetworkLinks@2024-06-01' = [
  for (zone, i) in items(zoneNames): {
    parent: zones[i]
    name: '${vnetName}-link'
    location: 'global'
    tags: tags
    properties: {
      registrationEnabled: false
      virtualNetwork: { id: vnet.id }
    }
  }
]

output vnetName string = vnet.name
output appSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'app')
output privateEndpointSubnetId string = resourceId('Microsoft.Network/virtualNetworks/subnets', vnet.name, 'private-endpoints')
@description('Private DNS zone resource id per endpoint kind: blob, queue, table, postgres, redis.')
output zoneIds object = {
  blob: resourceId('Microsoft.Network/privateDnsZones', zoneNames.blob)
  queue: resourceId('Microsoft.Network/privateDnsZones', zoneNames.queue)
  table: resourceId('Microsoft.Network/privateDnsZones', zoneNames.table)
  postgres: resourceId('Microsoft.Network/privateDnsZones', zoneNames.postgres)
  redis: resourceId('Microsoft.Network/privateDnsZones', zoneNames.redis)
}
