"""{name}: a collector. The host calls `collect_into` on the manifest's `[schedule]`,
diffs the snapshot against the previous one and announces only what changed (CREATE,
UPDATE, DELETE).

Replace the generated items with what your outside system has: fetch it with
`synchro.http.get_json(synchro.config.require("url"))` once the manifest grants
`poll = { hosts = ["https://..."] }`.
"""

import synchro_guest as synchro


class Collector(synchro.Collector):
    def collect_into(self, snapshot):
        try:
            items = int(synchro.config.require("items"))
        except ValueError as error:
            raise synchro.InvalidInput(f"setting `items`: {error}")
        for i in range(1, items + 1):
            snapshot.add(synchro.vertex(f"item-{i}", "example", {"name": f"item {i}", "source": "{name}"}))
        synchro.log.debug(f"collected {items} items")
        # Complete: an item missing from the next snapshot is deleted. Say PARTIAL for a
        # sample that does not cover everything.
        return synchro.COMPLETE
