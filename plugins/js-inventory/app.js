// The JavaScript twin of plugins/http-inventory: polls a JSON inventory over HTTP and
// maps it to `pserver` and `vserver` vertices and a `tosca.relationships.HostedOn` edge
// per VM, every field of an item a property. tests/languages.rs checks that both announce
// the same changes for the same inventory.

import * as synchro from './synchro-guest.js';

function items(inventory, field) {
  const found = inventory[field] ?? [];
  if (!Array.isArray(found)) {
    throw new synchro.InvalidInput(`inventory field \`${field}\` is not an array`);
  }
  return found;
}

function idOf(item, field, index) {
  if (item === null || typeof item !== 'object' || typeof item.id !== 'string') {
    throw new synchro.InvalidInput(`${field}[${index}] has no string \`id\``);
  }
  return item.id;
}

export const collector = synchro.collector((snapshot) => {
  const inventory = synchro.http.getJson(synchro.config.require('url'));
  items(inventory, 'servers').forEach((server, index) => {
    snapshot.add(synchro.vertex(idOf(server, 'servers', index), 'pserver', server));
  });
  items(inventory, 'vms').forEach((vm, index) => {
    const id = idOf(vm, 'vms', index);
    snapshot.add(synchro.vertex(id, 'vserver', vm));
    if (typeof vm.server === 'string') {
      snapshot.add(synchro.edge(`${id}/hosted-on`, 'tosca.relationships.HostedOn',
        [id, 'vserver'], [vm.server, 'pserver']));
    }
  });
  return synchro.COMPLETE;
});
