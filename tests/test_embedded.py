"""The test Redis is the suite's own: a port another process took between picking and binding is traded."""

from __future__ import annotations

import redis

from relay.store.embedded import EmbeddedRedis


def test_a_port_another_server_took_is_traded_for_a_free_one() -> None:
    with EmbeddedRedis() as theirs:
        ours = EmbeddedRedis()
        ours.port = theirs.port  # as if another suite bound the free port first
        try:
            ours.start()
            assert ours.port != theirs.port
            assert ours.process is not None
            client = redis.Redis(port=ours.port)
            try:
                assert int(client.info("server")["process_id"]) == ours.process.pid
            finally:
                client.close()
        finally:
            ours.cleanup()
