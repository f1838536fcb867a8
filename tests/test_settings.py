from __future__ import annotations

import re
from pathlib import Path

import pytest

from relay.config.settings import DEFAULT_MONITOR_HOSTS, ConfigError, Settings

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
            "RELAY_API_TOKENS": "x:a, y:b,",
            "RELAY_TENANT_SIGNING_SECRETS": f"x:{SECRET}, y:{SECRET},",
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
    key = {"RELAY_ENCRYPTION_KEY": "k3y"}
    Settings.from_env({**key, "RELAY_HOST": "127.0.0.1"}).check_serving()
    Settings.from_env({**key, "RELAY_HOST": "::1"}).check_serving()
    Settings.from_env({**key, "RELAY_HOST": "0.0.0.0", "RELAY_API_TOKENS": "t"}).check_serving()
    with pytest.raises(ConfigError, match="RELAY_API_TOKENS"):
        Settings.from_env({**key, "RELAY_HOST": "0.0.0.0"}).check_serving()


def test_internal_hosts_old_name_is_still_read_with_a_deprecation_line() -> None:
    old = Settings.from_env({"RELAY_CALLBACK_ALLOWED_HOSTS": "localhost"})
    assert old.internal_hosts == ("localhost",)
    assert len(old.deprecations) == 1 and "RELAY_INTERNAL_HOSTS" in old.deprecations[0]
    both = Settings.from_env({"RELAY_CALLBACK_ALLOWED_HOSTS": "a", "RELAY_INTERNAL_HOSTS": "b"})
    assert both.internal_hosts == ("b",) and "ignored" in both.deprecations[0]
    assert Settings.from_env({"RELAY_INTERNAL_HOSTS": "b"}).deprecations == ()


def test_api_tokens_may_carry_a_tenant_name() -> None:
    s = Settings.from_env({"RELAY_API_TOKENS": "backup:t0k3n,backup:0th3r"})
    assert s.api_tokens == ("t0k3n", "0th3r") and s.token_names == (("t0k3n", "backup"), ("0th3r", "backup"))
    assert Settings.from_env({"RELAY_API_TOKENS": "plain"}).token_names == ()
    with pytest.raises(ConfigError, match="RELAY_API_TOKENS"):
        Settings.from_env({"RELAY_API_TOKENS": "bad name:t0k3n"})


def test_settings_made_directly_ignore_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RELAY_PORT", "9999")
    monkeypatch.setenv("REDIS_URL", "redis://elsewhere:6379/0")
    monkeypatch.setenv("RELAY_ACCESS_LOG", "off")
    made = Settings(host="::1")
    assert (made.host, made.port, made.redis_url, made.access_log) == ("::1", 8080, None, True)
    assert Settings.from_env({}).port == 8080
    assert Settings.from_env().port == 9999  # None: the process environment, for the entry point


def test_a_blank_variable_counts_as_unset() -> None:
    s = Settings.from_env({"RELAY_PORT": " ", "RELAY_HOST": "", "REDIS_URL": "", "RELAY_ACCESS_LOG": ""})
    assert (s.port, s.host, s.redis_url, s.access_log) == (8080, "127.0.0.1", None, True)


def test_errors_show_plain_values_but_never_a_secret() -> None:
    with pytest.raises(ConfigError, match=r"^RELAY_PORT='eighty': "):
        Settings.from_env({"RELAY_PORT": "eighty"})
    with pytest.raises(ConfigError, match=r"^RELAY_DELIVERY_SCHEDULE='0,soon' \(item 2\): "):
        Settings.from_env({"RELAY_DELIVERY_SCHEDULE": "0,soon"})
    for env in ({"RELAY_SIGNING_SECRETS": "whsec_!!!"}, {"REDIS_URL": "redis+sentinel://:hunter2@s1"}):
        with pytest.raises(ConfigError) as info:
            Settings.from_env(env)
        assert "!!!" not in str(info.value) and "hunter2" not in str(info.value)


def test_secrets_stay_out_of_the_repr() -> None:
    s = Settings.from_env(
        {
            "REDIS_URL": "redis://:hunter2@redis:6379/0",
            "RELAY_API_TOKENS": "tenant:t0k3n",
            "RELAY_SIGNING_SECRETS": SECRET,
            "RELAY_ENCRYPTION_KEY": "k3y",
            "RELAY_METRICS_TOKEN": "scr4pe",
        }
    )
    text = repr(s)
    assert "port=8080" in text
    assert not any(secret in text for secret in ("hunter2", "t0k3n", SECRET, "k3y", "scr4pe"))


def test_a_changed_copy_is_validated_and_keeps_the_rest() -> None:
    s = Settings.from_env({"RELAY_API_TOKENS": "backup:t0k3n", "RELAY_POLL_MAX_INTERVAL": "30"})
    copy = s.replace(port=9000)
    assert (copy.port, copy.token_names, copy.poll_max_interval, s.port) == (9000, (("t0k3n", "backup"),), 30.0, 8080)
    with pytest.raises(ValueError, match="port"):
        s.replace(port=70000)
    with pytest.raises(ValueError, match="prot"):
        s.replace(prot=9000)


def _documented_rows() -> list[tuple[list[str], str]]:
    """The rows of the settings table in docs/configuration.md: the variables each names, and its default."""
    page = (Path(__file__).parent.parent / "docs" / "configuration.md").read_text()
    table = page.split("| variable | default | meaning |\n", 1)[1].split("\n\n", 1)[0]
    rows = [line.split(" | ") for line in table.splitlines()[1:]]
    return [(re.findall(r"`([A-Z_]+)`", row[0]), row[1]) for row in rows]


def test_every_documented_variable_is_read_and_every_read_variable_documented() -> None:
    documented = {name for names, _ in _documented_rows() for name in names}
    read = {name for setting in Settings.settings().values() for name in setting.variables}
    assert read == documented | {"RELAY_CALLBACK_ALLOWED_HOSTS"}  # the old name RELAY_INTERNAL_HOSTS' row mentions


def test_the_documented_defaults_are_the_defaults() -> None:
    """Setting a variable to the default the docs give changes nothing (rows whose default is plain values)."""
    unset = Settings.from_env({})
    checked = 0
    for names, default in _documented_rows():
        values = re.fullmatch(r"((?:`[^`]*`(?:, )?)+)(?: \([^)]*\))?", default)
        if values is None:
            continue
        for name, value in zip(names, re.findall(r"`([^`]*)`", values.group(1)), strict=True):
            assert Settings.from_env({name: value}) == unset, name
            checked += 1
    assert checked >= 18


@pytest.mark.parametrize(
    ("env", "line"),
    [
        (
            {"RELAY_PORT": "eighty"},
            "RELAY_PORT='eighty': Input should be a valid integer, unable to parse string as an integer",
        ),
        ({"RELAY_PORT": "70000"}, "RELAY_PORT='70000': Input should be less than or equal to 65535"),
        (
            {"RELAY_PORT": "\uff11\uff12"},  # fullwidth digits: Python's int() reads them, pydantic did not
            "RELAY_PORT='\uff11\uff12': Input should be a valid integer, unable to parse string as an integer",
        ),
        ({"RELAY_JOB_TIMEOUT": "nan"}, "RELAY_JOB_TIMEOUT='nan': Input should be a finite number"),
        (
            {"RELAY_JOB_TIMEOUT": "0x1"},
            "RELAY_JOB_TIMEOUT='0x1': Input should be a valid number, unable to parse string as a number",
        ),
        (
            {"RELAY_REDIS_WAIT_TIMEOUT": "0"},
            "RELAY_REDIS_WAIT_TIMEOUT='0': Input should be greater than or equal to 0.001",
        ),
        ({"RELAY_API_READ_TIMEOUT": "301"}, "RELAY_API_READ_TIMEOUT='301': Input should be less than or equal to 300"),
        (
            {"RELAY_ACCESS_LOG": "true "},
            "RELAY_ACCESS_LOG='true ': Input should be a valid boolean, unable to interpret input",
        ),
        ({"RELAY_EVENT_LOOP": "x"}, "RELAY_EVENT_LOOP='x': Input should be 'auto', 'uvloop' or 'asyncio'"),
        (
            {"RELAY_DELIVERY_SCHEDULE": "0,-1,nan"},
            "RELAY_DELIVERY_SCHEDULE='0,-1,nan' (item 2): Input should be greater than or equal to 0 (and 1 more)",
        ),
        (
            {"RELAY_DELIVERY_SCHEDULE": ", ,"},
            "RELAY_DELIVERY_SCHEDULE=', ,': Value should have at least 1 item after validation, not 0",
        ),
        (
            {"RELAY_MONITOR_ALLOWED_HOSTS": ","},
            "RELAY_MONITOR_ALLOWED_HOSTS=',': Tuple should have at least 1 item after validation, not 0",
        ),
        ({"RELAY_PROGRESS_INTERVAL": "0.5"}, "RELAY_PROGRESS_INTERVAL='0.5': must be 0 (off) or 1 to 3600 seconds"),
        ({"RELAY_POLL_INITIAL_INTERVAL": "1e3"}, "RELAY_POLL_MAX_INTERVAL: must be >= RELAY_POLL_INITIAL_INTERVAL"),
        (
            {"RELAY_POLL_INITIAL_INTERVAL": "10", "RELAY_POLL_MAX_INTERVAL": "5", "RELAY_PORT": "x"},
            "RELAY_PORT='x': Input should be a valid integer, unable to parse string as an integer (and 1 more)",
        ),
        (
            {"RELAY_SIGNING_SECRETS": "whsec_!!!,plain"},
            "RELAY_SIGNING_SECRETS: a secret is not valid base64 after 'whsec_'",
        ),
        ({"REDIS_URL": "redis://h:99999"}, "REDIS_URL: the port is not a number from 1 to 65535"),
        (
            {"RELAY_TENANT_SIGNING_SECRETS": "x"},
            "RELAY_TENANT_SIGNING_SECRETS: each entry is name:whsec_..., the name a tenant's in RELAY_API_TOKENS",
        ),
        (
            {"RELAY_API_TOKENS": "bad name:x", "RELAY_PORT": "x"},
            "RELAY_API_TOKENS: a named token is name:token, the name 1-64 letters, digits, . _ -",
        ),
        (
            {"RELAY_CREDENTIALS": "{", "RELAY_PORT": "x"},
            "RELAY_PORT='x': Input should be a valid integer, unable to parse string as an integer (and 1 more)",
        ),
        (
            {"RELAY_CREDENTIALS": "{"},
            "RELAY_CREDENTIALS is not valid JSON: Expecting property name enclosed in double quotes at line 1 column 2",
        ),
        (
            {"RELAY_CREDENTIALS": '{"a": {"type": "nope"}}'},
            "RELAY_CREDENTIALS: a: type must be one of clientCertificate, clientSecret, managedIdentity, "
            "workloadIdentity",
        ),
    ],
)
def test_each_error_is_the_line_it_always_was(env: dict[str, str], line: str) -> None:
    """The lines pydantic's validation gave, kept when the settings became a plain dataclass (and the default
    RELAY_POLL_MAX_INTERVAL's, which named the field, now names its variable)."""
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env)
    assert str(info.value) == line


def test_the_environment_and_the_arguments_read_a_value_alike() -> None:
    """The forms pydantic accepted: whole numbers with a sign, underscores or a zero fraction, any-case words."""
    s = Settings.from_env({"RELAY_PORT": " +8_0.0 ", "RELAY_ACCESS_LOG": "OfF", "RELAY_JOB_TIMEOUT": "1e3"})
    assert (s.port, s.access_log, s.job_timeout) == (80, False, 1000.0)
    assert Settings(port=80, access_log=False, job_timeout=1000) == s
    assert isinstance(Settings(job_timeout=1000).job_timeout, float)
    with pytest.raises(ConfigError, match=r"^port: Input should be less than or equal to 65535$"):
        Settings(port=70000)
    with pytest.raises(ConfigError, match=r"^poll_max_interval: must be >= RELAY_POLL_INITIAL_INTERVAL$"):
        Settings(poll_initial_interval=2.0, poll_max_interval=1.0)


def test_the_legacy_format_is_written_only_when_asked() -> None:
    """RELAY_STORE_LEGACY_FORMAT (earlier field names, padded sealed values): off unless set (new installs never
    need it), a boolean like the others."""
    assert Settings.from_env({}).store_legacy_format is False
    assert Settings.from_env({"RELAY_STORE_LEGACY_FORMAT": "on"}).store_legacy_format is True
    with pytest.raises(ConfigError, match=r"^RELAY_STORE_LEGACY_FORMAT="):
        Settings.from_env({"RELAY_STORE_LEGACY_FORMAT": "maybe"})
