"""The Python twin of plugins/http-inventory: polls a JSON inventory over HTTP and maps
it to `pserver` and `vserver` vertices and a `tosca.relationships.HostedOn` edge per VM,
every field of an item a property. tests/languages.rs checks that both announce the same
changes for the same inventory.
"""

import synchro_guest as synchro


def items(inventory, field):
    found = inventory.get(field, [])
    if not isinstance(found, list):
        raise synchro.InvalidInput(f"inventory field `{field}` is not an array")
    return found


def id_of(item, field, index):
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        raise synchro.InvalidInput(f"{field}[{index}] has no string `id`")
    return item["id"]


class Collector(synchro.Collector):
    def collect_into(self, snapshot):
        inventory = synchro.http.get_json(synchro.config.require("url"))
        for index, server in enumerate(items(inventory, "servers")):
            snapshot.add(synchro.vertex(id_of(server, "servers", index), "pserver", server))
        for index, vm in enumerate(items(inventory, "vms")):
            vm_id = id_of(vm, "vms", index)
            snapshot.add(synchro.vertex(vm_id, "vserver", vm))
            if isinstance(vm.get("server"), str):
                snapshot.add(synchro.edge(f"{vm_id}/hosted-on", "tosca.relationships.HostedOn",
                                          (vm_id, "vserver"), (vm["server"], "pserver")))
        return synchro.COMPLETE
