"""kombu's Redis transport, with one fault turned from fatal into recoverable.

When the connection to Redis breaks while a task is running (acks_late: its message is still unacknowledged),
Celery closes the connection, and kombu's channel close tries to put the unacknowledged message back. By then it
has dropped its connection pool and the transport has let go of its client, so rebuilding the pool fails with
AttributeError("'NoneType' object has no attribute 'hostname'"). Celery takes that for an unrecoverable error and
the worker exits (with status 0): every file landing afterwards waited for a human. The same happens when such a
task finishes after the consumer reconnected and acks on the old channel.

Here the missing client is reported as what it is, a lost connection, which kombu and Celery already handle: the
close goes on, the worker reconnects, the message stays in Redis's unacked set and comes back after the
visibility timeout (or sooner through the inbox scan, the owed evaluations and the outbox safety net, which read
the database, not the broker).
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> Any:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection is closed")
        return super()._connparams(asynchronous)


class Transport(kombu_redis.Transport):
    Channel = Channel


TRANSPORT = "worker.broker:Transport"
