"""Write synchro plugins in Python, built with componentize-py.

The same shape as the Rust SDK: a base class per role, entity helpers, typed errors, and
one module per host function (`config`, `http`, `bus`, `emit`, `store`, `log`), each
denied unless the plugin's manifest grants it.

    import synchro_guest as synchro

    class Collector(synchro.Collector):
        def collect_into(self, snapshot):
            for server in synchro.http.get_json(synchro.config.require("url"))["servers"]:
                snapshot.add(synchro.vertex(server["id"], "pserver", server))
            return synchro.COMPLETE

`synchro plugin build DIR` builds `DIR/app.py` against the host's WIT (`wit_world` is
generated from it at build time) with this module beside it.
"""

import json
import sys
import traceback

from componentize_py_types import Err
from wit_world.imports import bus as _bus
from wit_world.imports import config as _config
from wit_world.imports import emit as _emit
from wit_world.imports import log as _log
from wit_world.imports import poll as _poll
from wit_world.imports import store as _store
from wit_world.imports import types

# What only some roles' worlds have: imported at build time (componentize-py keeps the
# modules imported then), absent from the other worlds.
try:
    from wit_world.imports import snapshot as _snapshot
    from wit_world.exports import collector as _collector
except ImportError:
    _snapshot = _collector = None

COMPLETE = True
PARTIAL = False

__all__ = [
    "COMPLETE", "PARTIAL", "Collector", "EventStep", "ModelPolicy", "SyncStep",
    "Error", "InvalidInput", "NotFound", "Unavailable", "Failed", "Denied", "TimedOut",
    "vertex", "edge", "properties", "config", "http", "bus", "emit", "store", "log",
]


# Errors ---------------------------------------------------------------------------

class Error(Exception):
    """An error a plugin returns to the host: its kind (`code`) and a message."""

    code = types.ErrorCode.FAILED

    def __init__(self, message):
        super().__init__(message)
        self.message = str(message)


class InvalidInput(Error):
    """The input is wrong: trying again with it fails again (an event goes to the dead letters)."""
    code = types.ErrorCode.INVALID_INPUT


class NotFound(Error):
    code = types.ErrorCode.NOT_FOUND


class Unavailable(Error):
    """Not now: an outside system cannot be reached; the host tries again later."""
    code = types.ErrorCode.UNAVAILABLE


class Failed(Error):
    code = types.ErrorCode.FAILED


class Denied(Error):
    code = types.ErrorCode.DENIED


class TimedOut(Error):
    code = types.ErrorCode.TIMED_OUT


def _returning_errors(call):
    """Runs `call`, turning what it raises into the error the host expects: an `Error`
    as itself, a host function's error as it came, anything else as `failed` with the
    exception named (its traceback goes to stderr, which the host logs)."""
    try:
        return call()
    except Err:
        raise
    except Error as error:
        raise Err(types.Error(code=error.code, message=error.message))
    except Exception as error:  # a bug: fail the call with its name, not a trap
        traceback.print_exc(file=sys.stderr)
        raise Err(types.Error(code=types.ErrorCode.FAILED, message=f"{type(error).__name__}: {error}"))


# Entities -------------------------------------------------------------------------

def vertex(key, kind, properties, schema_version=None):
    """A vertex of `kind` identified by `key`; `properties` a dict (sent as JSON)."""
    return types.Entity(key=str(key), kind=str(kind), properties=json.dumps(properties),
                        schema_version=schema_version, edge=None)


def edge(key, kind, source, target, properties=None, schema_version=None):
    """An edge of `kind` from `source` to `target`, each a `(key, kind)` pair."""
    ends = types.EdgeEnds(source=types.EntityRef(key=source[0], kind=source[1]),
                          target=types.EntityRef(key=target[0], kind=target[1]))
    return types.Entity(key=str(key), kind=str(kind), properties=json.dumps(properties or {}),
                        schema_version=schema_version, edge=ends)


def properties(entity):
    """An entity's properties, as a dict."""
    return json.loads(entity.properties)


# Roles ----------------------------------------------------------------------------

class Snapshot:
    """The snapshot being collected; entities go to the host in batches as they are added."""

    BATCH = 1024

    def __init__(self):
        self._batch = []

    def add(self, entity):
        self._batch.append(entity)
        if len(self._batch) >= self.BATCH:
            self.flush()

    def extend(self, entities):
        for entity in entities:
            self.add(entity)

    def flush(self):
        if self._batch:
            batch, self._batch = self._batch, []
            _snapshot.add(batch)


class Collector:
    """Samples an outside system. Define `collect_into(self, snapshot)`: add every entity
    and return `COMPLETE` (absent entities are deleted) or `PARTIAL`."""

    def collect(self):
        def run():
            snapshot = Snapshot()
            complete = self.collect_into(snapshot)
            if not isinstance(complete, bool):
                # A forgotten `return` would make every snapshot partial: nothing deleted.
                raise TypeError(f"collect_into returned {complete!r}; return synchro.COMPLETE or synchro.PARTIAL")
            snapshot.flush()
            completeness = _collector.Completeness
            return completeness.COMPLETE if complete else completeness.PARTIAL
        return _returning_errors(run)


class EventStep:
    """Consumes bus messages. Define `process(self, message)`; raise an `Error` to have it
    retried (`InvalidInput`: dead-lettered at once). Must be idempotent."""

    def process_event(self, msg):
        return _returning_errors(lambda: self.process(msg))


class ModelPolicy:
    """Runs after model writes to its kinds. Define `on_create(self, entity)`,
    `on_update(self, entity, previous)` and `on_delete(self, entity)`."""

    def handle_create(self, e):
        return _returning_errors(lambda: self.on_create(e))

    def handle_update(self, e, previous):
        return _returning_errors(lambda: self.on_update(e, previous))

    def handle_delete(self, e):
        return _returning_errors(lambda: self.on_delete(e))


class SyncStep:
    """Pushes the model outward. Define `sync(self, entity)` and `delete(self, entity)`;
    raise `Unavailable` for "not now"."""

    def sync_record(self, e):
        return _returning_errors(lambda: self.sync(e))

    def delete_record(self, e):
        return _returning_errors(lambda: self.delete(e))


# Host functions -------------------------------------------------------------------

class config:
    """The plugin's `[settings]`."""

    @staticmethod
    def get(name):
        """The setting `name`: a string as it is, other values as JSON text; None if unset."""
        return _config.get(name)

    @staticmethod
    def require(name):
        value = config.get(name)
        if value is None:
            raise InvalidInput(f"setting `{name}` is missing from the manifest")
        return value

    @staticmethod
    def all():
        return json.loads(_config.all())


class http:
    """HTTP through the host (`poll`), only to the hosts the manifest allows."""

    @staticmethod
    def send(method, url, headers=(), body=None, timeout_ms=None):
        if isinstance(body, str):
            body = body.encode()
        return _poll.poll(_poll.Request(method=method, url=url, headers=list(headers),
                                        body=body, timeout_ms=timeout_ms))

    @staticmethod
    def get(url):
        """The body of GET `url`; a non-2xx status is a `Failed` error."""
        response = http.send("GET", url)
        if not 200 <= response.status < 300:
            raise Failed(f"GET {url}: HTTP status {response.status}")
        return response.body

    @staticmethod
    def get_json(url):
        body = http.get(url)
        try:
            return json.loads(body)
        except ValueError as error:
            raise InvalidInput(f"GET {url}: body is not JSON: {error}")


class bus:
    @staticmethod
    def publish(topic, payload, key=None, headers=()):
        """Puts `payload` (bytes or str) on `topic`."""
        if isinstance(payload, str):
            payload = payload.encode()
        if isinstance(key, str):
            key = key.encode()
        _bus.publish(topic, key, payload, [(n, v.encode() if isinstance(v, str) else v) for n, v in headers])

    @staticmethod
    def await_response(topic, correlation_id, timeout_ms):
        return _bus.await_response(topic, correlation_id, timeout_ms)


class emit:
    @staticmethod
    def change(operation, entity):
        """Announces a change (`"create"`, `"update"` or `"delete"`) the plugin learned of itself."""
        op = {"create": types.Operation.CREATE, "update": types.Operation.UPDATE,
              "delete": types.Operation.DELETE}[operation]
        _emit.emit_change(types.Change(operation=op, entity=entity, timestamp=0, transaction_id=""))


class store:
    @staticmethod
    def get(kind, key):
        return _store.get(kind, key)

    @staticmethod
    def save(entity):
        _store.save(entity)

    @staticmethod
    def delete(kind, key):
        _store.delete(kind, key)


class log:
    @staticmethod
    def _log(level, message, fields):
        _log.log(getattr(_log.Level, level), str(message), [(str(k), str(v)) for k, v in fields.items()])

    @staticmethod
    def trace(message, **fields):
        log._log("TRACE", message, fields)

    @staticmethod
    def debug(message, **fields):
        log._log("DEBUG", message, fields)

    @staticmethod
    def info(message, **fields):
        log._log("INFO", message, fields)

    @staticmethod
    def warn(message, **fields):
        log._log("WARN", message, fields)

    @staticmethod
    def error(message, **fields):
        log._log("ERROR", message, fields)
