"""REDIS_URL=redis+cluster://...: the URL form (the client on a real cluster: test_cluster_client.py)."""

from __future__ import annotations

import pytest

from relay.config.redis_url import is_cluster_url, parse_cluster_url, redis_where
from relay.config.settings import ConfigError, Settings


def test_a_cluster_url_names_the_startup_nodes_with_the_default_port() -> None:
    target = parse_cluster_url("redis+cluster://:s%40cret@10.0.0.1:7000,node-b,[::1]:7002")
    assert target.nodes == (("10.0.0.1", 7000), ("node-b", 6379), ("::1", 7002))
    assert (target.tls, target.username, target.password) == (False, None, "s@cret")
    assert target.node_kwargs() == {"password": "s@cret"}
    assert "s@cret" not in repr(target)
    assert is_cluster_url("REDIS+CLUSTER://a") and not is_cluster_url("redis://a") and not is_cluster_url("x")


@pytest.mark.parametrize("tail", ["", "/", "/0", "/?socket_timeout=2", "?socket_timeout=2"])
def test_the_path_may_be_empty_slash_or_database_zero(tail: str) -> None:
    assert parse_cluster_url(f"redis+cluster://a:7000,b:7001{tail}").nodes == (("a", 7000), ("b", 7001))


def test_tls_a_user_and_redis_py_options_reach_every_node() -> None:
    target = parse_cluster_url(
        "rediss+cluster://relay:pw@n1:6380,n2:6380/?ssl_ca_certs=/etc/ca.pem&ssl_cert_reqs=required"
        "&ssl_check_hostname=true&socket_timeout=3&socket_connect_timeout=2&max_connections=50"
    )
    assert target.tls and target.nodes == (("n1", 6380), ("n2", 6380))
    assert target.node_kwargs() == {
        "ssl": True,
        "username": "relay",
        "password": "pw",
        "ssl_ca_certs": "/etc/ca.pem",
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "socket_timeout": 3.0,
        "socket_connect_timeout": 2.0,
        "max_connections": 50,
    }


def test_where_a_cluster_url_points_keeps_out_the_password_and_the_query() -> None:
    where = redis_where("rediss+cluster://u:hunter2@n1:7000,[::1],n3?ssl_ca_certs=/etc/ca.pem")
    assert where == "rediss+cluster://n1:7000,[::1]:6379,n3:6379/0"


def test_relay_takes_a_cluster_url_as_redis_url() -> None:
    url = "redis+cluster://:pw@127.0.0.1:7000,127.0.0.1:7001/0"
    settings = Settings.from_env({"REDIS_URL": url})
    assert settings.effective_redis_url == url
    assert "pw" in settings.secret_values(), "the nodes' password is kept out of the logs"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("redis+cluster://:hunter2@n1:7000/1", "only database 0"),
        ("redis+cluster://:hunter2@n1:7000/relay", "only database 0"),
        ("redis+cluster://:hunter2@n1:7000?db=2", "takes no ?db="),
        ("redis+cluster://:hunter2@n1:7000?retry_on_timeout=true", "does not take the option 'retry_on_timeout'"),
        ("redis+cluster://:hunter2@n1:7000?read_from_replicas=yes", "does not take the option 'read_from_replicas'"),
        ("redis+cluster://:hunter2@n1:7000?socket_timeout=soon", "socket_timeout"),
        ("redis+cluster://:hunter2@n1:70000", "node's port must be 1-65535"),
        ("redis+cluster://:hunter2@n1:hunter3", "node's port must be 1-65535"),
        ("redis+cluster://:hunter2@n1,,n2", "lists its nodes as host[:port]"),
        ("redis+cluster://:hunter2/x@n1,n2", "unescaped '/': percent-encode it as %2F"),
        ("rediss+cluster://:hunter2?x@n1:7000", "unescaped '?': percent-encode it as %3F"),
        ("cluster://:hunter2@n1:7000", "redis+cluster://, rediss+cluster://"),
    ],
)
def test_a_bad_cluster_url_stops_the_process_with_one_line_that_keeps_the_password(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"REDIS_URL": url})
    text = str(caught.value)
    assert message in text and "\n" not in text
    assert "hunter" not in text and url not in text
