"""{name}: an event step. The host hands it each message of the manifest's
`[events] topics` (as generated, `changes`: every CREATE, UPDATE and DELETE the host
announces, as a Gizmo-shaped JSON event); an error leaves the message to be retried
(then dead-lettered), so handling must be idempotent.
"""

import json

import synchro_guest as synchro


class EventStep(synchro.EventStep):
    def process(self, message):
        try:
            event = json.loads(message.payload)
        except ValueError as error:
            # Not retried forever: after `[events] retries` it goes to the dead letters.
            raise synchro.InvalidInput(f"{message.topic}: not JSON: {error}")
        # A change: {"operation": "CREATE", "vertex": {"key": ..., "type": ...}, ...}
        # (`edge` instead of `vertex` for an edge).
        element = event.get("vertex") or event.get("edge") or {}
        synchro.log.info(f"{message.topic}: {event.get('operation', '?')} "
                         f"{element.get('type', '?')}/{element.get('key', '?')}")
