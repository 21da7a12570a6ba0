"""An event step: each message on `servers` is a server (`{"id": ..., ...}`). It asks the
owner service over the bus who owns it (publish on `requests`, await the response with
the same transaction id on `responses`), stores the server as a `pserver` with its
`owner`, and announces the owner as an `owner` vertex (emit-change, not stored). A server
stored already with the same data and owner is left alone, so redelivery is harmless.
Twins: plugins/js-owner-lookup, plugins/c-owner-lookup (the same fixtures).
"""

import json

import synchro_guest as synchro


def owner_of(server_id):
    transaction = f"owner-{server_id}"
    request = json.dumps({"transaction-id": transaction, "server": server_id}, separators=(",", ":"))
    synchro.bus.publish(synchro.config.require("requests"), request, key=server_id)
    timeout = int(synchro.config.get("timeout-ms") or "2000")
    response = synchro.bus.await_response(synchro.config.require("responses"), transaction, timeout)
    try:
        answer = json.loads(response.payload)
    except ValueError as error:
        raise synchro.InvalidInput(f"the owner service answered no JSON: {error}")
    if answer.get("result") != "SUCCESS" or not isinstance(answer.get("owner"), str):
        raise synchro.Failed(f"no owner for {server_id}: {answer.get('error-message', 'no error-message')}")
    return answer["owner"]


class EventStep(synchro.EventStep):
    def process(self, message):
        try:
            server = json.loads(message.payload)
        except ValueError as error:
            raise synchro.InvalidInput(f"{message.topic}: not JSON: {error}")
        if not isinstance(server, dict) or not isinstance(server.get("id"), str):
            raise synchro.InvalidInput(f"{message.topic}: a server needs a string `id`")
        stored = synchro.store.get("pserver", server["id"])
        if stored is not None:
            known = synchro.properties(stored)
            if {k: v for k, v in known.items() if k != "owner"} == server:
                return
        owner = owner_of(server["id"])
        synchro.store.save(synchro.vertex(server["id"], "pserver", {**server, "owner": owner}))
        synchro.emit.change("create", synchro.vertex(owner, "owner", {"name": owner}))
        synchro.log.info(f"{server['id']} is owned by {owner}")
