from __future__ import annotations

import pytest

from relay.settings import DEFAULT_MONITOR_HOSTS, ConfigError, Settings

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_defaults() -> None:
    s = Settings.from_env({})
    assert (s.host, s.port, s.redis_url) == ("127.0.0.1", 8080, None)
    assert s.effective_redis_url == "redis://localhost:6379/0"
    assert s.delivery_schedule == (0, 5, 300, 1800, 7200, 18000, 36000, 36000)
    assert s.monitor_allowed_hosts == DEFAULT_MONITOR_HOSTS
    assert (s.poll_initial_interval, s.poll_max_interval, s.job_timeout) == (1.0, 60.0, 259200.0)
    assert s.poll_max_error_time == 3600.0


def test_lists_and_numbers_parse() -> None:
    s = Settings.from_env(
        {
            "RELAY_API_TOKENS": "a, b,",
            "RELAY_SIGNING_SECRETS": f"{SECRET},{SECRET}",
            "RELAY_INTERNAL_HOSTS": "LocalHost",
            "RELAY_POLL_INITIAL_INTERVAL": "0.5",
            "RELAY_DELIVERY_SCHEDULE": "0,1.5,10",
            "RELAY_LOG_FORMAT": "console",
            "RELAY_POLL_MAX_ERROR_TIME": "600",
        }
    )
    assert s.api_tokens == ("a", "b")
    assert s.internal_hosts == ("localhost",)
    assert s.delivery_schedule == (0.0, 1.5, 10.0)
    assert s.poll_initial_interval == 0.5 and s.log_format == "console"
    assert s.poll_max_error_time == 600.0


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"RELAY_PORT": "eighty"}, "RELAY_PORT"),
        ({"RELAY_PORT": "70000"}, "RELAY_PORT"),
        ({"RELAY_SIGNING_SECRETS": "plain"}, "RELAY_SIGNING_SECRETS"),
        ({"RELAY_SIGNING_SECRETS": "whsec_!!!"}, "RELAY_SIGNING_SECRETS"),
        ({"RELAY_POLL_MAX_INTERVAL": "-1"}, "RELAY_POLL_MAX_INTERVAL"),
        ({"RELAY_POLL_INITIAL_INTERVAL": "10", "RELAY_POLL_MAX_INTERVAL": "5"}, "RELAY_POLL_MAX_INTERVAL"),
        ({"RELAY_DELIVERY_SCHEDULE": "0,soon"}, "RELAY_DELIVERY_SCHEDULE"),
        ({"RELAY_JOB_TIMEOUT": "nan"}, "RELAY_JOB_TIMEOUT"),
        ({"RELAY_POLL_MAX_ERROR_TIME": "0"}, "RELAY_POLL_MAX_ERROR_TIME"),
        ({"RELAY_LOG_FORMAT": "xml"}, "RELAY_LOG_FORMAT"),
        ({"REDIS_URL": "localhost:6379"}, "REDIS_URL"),
    ],
)
def test_bad_values_give_one_clear_line(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    message = str(info.value)
    assert names in message and "\n" not in message


def test_open_bind_without_tokens_is_refused() -> None:
    Settings.from_env({"RELAY_HOST": "127.0.0.1"}).check_serving()
    Settings.from_env({"RELAY_HOST": "::1"}).check_serving()
    Settings.from_env({"RELAY_HOST": "0.0.0.0", "RELAY_API_TOKENS": "t"}).check_serving()
    with pytest.raises(ConfigError, match="RELAY_API_TOKENS"):
        Settings.from_env({"RELAY_HOST": "0.0.0.0"}).check_serving()


def test_internal_hosts_old_name_is_still_read_with_a_deprecation_line() -> None:
    old = Settings.from_env({"RELAY_CALLBACK_ALLOWED_HOSTS": "localhost"})
    assert old.internal_hosts == ("localhost",)
    assert len(old.deprecations) == 1 and "RELAY_INTERNAL_HOSTS" in old.deprecations[0]
    both = Settings.from_env({"RELAY_CALLBACK_ALLOWED_HOSTS": "a", "RELAY_INTERNAL_HOSTS": "b"})
    assert both.internal_hosts == ("b",) and "ignored" in both.deprecations[0]
    assert Settings.from_env({"RELAY_INTERNAL_HOSTS": "b"}).deprecations == ()


def test_api_tokens_may_carry_a_tenant_name() -> None:
    s = Settings.from_env({"RELAY_API_TOKENS": "backup:t0k3n,plain"})
    assert s.api_tokens == ("t0k3n", "plain") and s.token_names == (("t0k3n", "backup"),)
    with pytest.raises(ConfigError, match="RELAY_API_TOKENS"):
        Settings.from_env({"RELAY_API_TOKENS": "bad name:t0k3n"})
