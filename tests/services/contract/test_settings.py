"""Settings: one frozen object from PACESETTER_* variables; bad values fail at start, by name."""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr, ValidationError

from services.contract.settings import Settings, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PACESETTER_* variable of the machine running the tests leaks in."""
    for name in list(os.environ):
        if name.startswith("PACESETTER_"):
            monkeypatch.delenv(name)


def fails_naming(variable: str, *also: str) -> str:
    with pytest.raises(SettingsError) as info:
        load_settings()
    message = str(info.value)
    assert variable in message
    for text in also:
        assert text in message
    return message


def test_defaults_need_no_environment() -> None:
    settings = load_settings()
    assert settings.bootstrap_list == ["127.0.0.1:9092"]
    assert settings.topic_events == "pacesetter.events"
    assert settings.topic_deadletter == "pacesetter.deadletter"
    assert settings.partitions >= 1
    assert settings.max_future_seconds == 86400
    assert settings.max_queue_seconds == 3600
    assert settings.caller_key is None
    assert settings.tokens() == []


def test_variables_carry_the_pacesetter_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACESETTER_BOOTSTRAP_SERVERS", "kafka-1:9092, kafka-2:9093")
    monkeypatch.setenv("PACESETTER_PARTITIONS", "12")
    monkeypatch.setenv("PACESETTER_GRACE_SECONDS", "90.5")
    monkeypatch.setenv("PACESETTER_TOPIC_EVENTS", "t1.events")
    monkeypatch.setenv("PARTITIONS", "3")  # no prefix: not ours
    settings = load_settings()
    assert settings.bootstrap_servers == "kafka-1:9092, kafka-2:9093"
    assert settings.bootstrap_list == ["kafka-1:9092", "kafka-2:9093"]
    assert settings.partitions == 12
    assert settings.grace_seconds == 90.5
    assert settings.topic_events == "t1.events"


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("PACESETTER_PARTITIONS", "many"),
        ("PACESETTER_PARTITIONS", "0"),
        ("PACESETTER_PARTITIONS", "2.5"),
        ("PACESETTER_GRACE_SECONDS", "-1"),
        ("PACESETTER_GRACE_SECONDS", "two hours"),
        ("PACESETTER_MAX_FUTURE_SECONDS", "0"),
        ("PACESETTER_API_PORT", "70000"),
        ("PACESETTER_SHRINKAGE", "1"),
        ("PACESETTER_BOOTSTRAP_SERVERS", ""),
        ("PACESETTER_API_FETCH_MAX_WAIT_MS", "-1"),
        ("PACESETTER_API_FETCH_MAX_WAIT_MS", "soon"),
    ],
)
def test_an_invalid_variable_fails_at_start_naming_it(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    fails_naming(variable)


def test_every_invalid_variable_is_named_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACESETTER_PARTITIONS", "x")
    monkeypatch.setenv("PACESETTER_GRACE_SECONDS", "-5")
    fails_naming("PACESETTER_PARTITIONS", "PACESETTER_GRACE_SECONDS")


def test_settings_are_frozen() -> None:
    settings = Settings()
    with pytest.raises(ValidationError):
        settings.partitions = 2  # type: ignore[misc]
    assert settings.partitions == Settings().partitions


def test_tests_build_settings_directly() -> None:
    settings = Settings(partitions=3, bootstrap_servers="127.0.0.1:1234")
    assert (settings.partitions, settings.bootstrap_list) == (3, ["127.0.0.1:1234"])


# --- line profiles ---------------------------------------------------------------------------

def test_profile_defaults_follow_metrics_md() -> None:
    settings = Settings()
    emergency = settings.profile("999")
    assert emergency.threshold_seconds == 10
    assert emergency.service_level_target == 0.90
    assert emergency.short_abandon_seconds == 5
    assert emergency.abandonment_standard is None
    assert emergency.longest_wait_alert_seconds == 60
    for line in ("101", "online", "some-other-line"):
        profile = settings.profile(line)
        assert profile.threshold_seconds == 60
        assert profile.service_level_target == 0.80
        assert profile.short_abandon_seconds == 5
        assert profile.abandonment_standard == 0.05
        assert profile.longest_wait_alert_seconds == 600


def test_line_profiles_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "PACESETTER_LINE_PROFILES",
        '{"online": {"threshold_seconds": 300, "service_level_target": 0.7},'
        ' "101": {"abandonment_standard": null}}',
    )
    settings = load_settings()
    online = settings.profile("online")
    assert (online.threshold_seconds, online.service_level_target) == (300, 0.7)
    assert online.short_abandon_seconds == 5  # unspecified values keep their default
    assert settings.profile("101").abandonment_standard is None
    assert settings.profile("101").threshold_seconds == 60
    assert settings.profile("999").threshold_seconds == 10  # untouched lines keep theirs


def test_a_partial_999_profile_keeps_the_other_999_defaults(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PACESETTER_LINE_PROFILES", '{"999": {"threshold_seconds": 15}}')
    emergency = load_settings().profile("999")
    assert emergency.threshold_seconds == 15
    assert emergency.service_level_target == 0.90
    assert emergency.abandonment_standard is None
    assert emergency.longest_wait_alert_seconds == 60


@pytest.mark.parametrize(
    "value",
    [
        "not json",
        '{"999": {"threshold_seconds": 10}',
        "[1, 2]",
        '{"999": {"threshold_seconds": -1}}',
        '{"999": {"service_level_target": 1.5}}',
        '{"999": {"threshhold_seconds": 10}}',  # a typo is not silently ignored
        '{"Line 1": {}}',
    ],
)
def test_bad_line_profiles_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    monkeypatch.setenv("PACESETTER_LINE_PROFILES", value)
    fails_naming("PACESETTER_LINE_PROFILES")


# --- secrets ---------------------------------------------------------------------------------

def test_api_tokens_are_role_token_pairs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACESETTER_API_TOKENS", "viewer:v-secret-123, admin:a-secret-456")
    tokens = load_settings().tokens()
    assert [t.role for t in tokens] == ["viewer", "admin"]
    assert [t.token.get_secret_value() for t in tokens] == ["v-secret-123", "a-secret-456"]
    assert all(isinstance(t.token, SecretStr) for t in tokens)


@pytest.mark.parametrize(
    ("value", "hint"),
    [
        ("root:long-enough-secret", "role"),
        ("viewer:short", "8"),
        ("viewer", "role:token"),
        ("viewer:", "role:token"),
    ],
)
def test_bad_api_tokens_fail_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str, hint: str
) -> None:
    monkeypatch.setenv("PACESETTER_API_TOKENS", value)
    message = fails_naming("PACESETTER_API_TOKENS", hint)
    secret = value.partition(":")[2]
    if secret:
        assert secret not in message  # a rejected token is still not printed


def test_secrets_never_show_in_repr_or_str(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACESETTER_CALLER_KEY", "caller-key-do-not-print")
    monkeypatch.setenv("PACESETTER_API_TOKENS", "admin:token-do-not-print")
    settings = load_settings()
    assert isinstance(settings.caller_key, SecretStr)
    assert settings.caller_key.get_secret_value() == "caller-key-do-not-print"
    for text in (repr(settings), str(settings), repr(settings.caller_key),
                 str(settings.caller_key), repr(settings.tokens()), str(settings.model_dump())):
        assert "caller-key-do-not-print" not in text
        assert "token-do-not-print" not in text


def test_kafka_connections_are_plaintext_unless_asked() -> None:
    settings = load_settings()
    assert settings.kafka_security_protocol == "PLAINTEXT"
    assert settings.kafka_fetch_max_wait_ms < 500  # sub-second freshness


def test_sasl_without_a_username_fails_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACESETTER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PACESETTER_KAFKA_SASL_PASSWORD", "secret")
    fails_naming("PACESETTER_KAFKA_SASL_USERNAME")


def test_sasl_needs_exactly_one_password(monkeypatch: pytest.MonkeyPatch,
                                         tmp_path: os.PathLike[str]) -> None:
    monkeypatch.setenv("PACESETTER_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    monkeypatch.setenv("PACESETTER_KAFKA_SASL_USERNAME", "pacesetter")
    fails_naming("PACESETTER_KAFKA_SASL_PASSWORD", "PACESETTER_KAFKA_SASL_PASSWORD_FILE")
    secret = f"{tmp_path}/password"
    with open(secret, "w") as handle:
        handle.write("from-a-file\n")
    monkeypatch.setenv("PACESETTER_KAFKA_SASL_PASSWORD_FILE", secret)
    assert load_settings().kafka_sasl_secret() == "from-a-file"
    monkeypatch.setenv("PACESETTER_KAFKA_SASL_PASSWORD", "also-given")
    fails_naming("PACESETTER_KAFKA_SASL_PASSWORD_FILE")


def test_an_unknown_security_protocol_or_mechanism_fails_naming_it(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACESETTER_KAFKA_SECURITY_PROTOCOL", "TLS")
    fails_naming("PACESETTER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PACESETTER_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PACESETTER_KAFKA_SASL_MECHANISM", "GSSAPI")
    fails_naming("PACESETTER_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")


def test_a_missing_ca_file_fails_naming_it(monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: os.PathLike[str]) -> None:
    monkeypatch.setenv("PACESETTER_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("PACESETTER_KAFKA_SSL_CA_FILE", f"{tmp_path}/no-such-ca.pem")
    fails_naming("PACESETTER_KAFKA_SSL_CA_FILE", "no-such-ca.pem")


def test_tls_files_without_tls_fail_naming_the_protocol(monkeypatch: pytest.MonkeyPatch,
                                                        tmp_path: os.PathLike[str]) -> None:
    ca = f"{tmp_path}/ca.pem"
    open(ca, "w").close()
    monkeypatch.setenv("PACESETTER_KAFKA_SSL_CA_FILE", ca)
    fails_naming("PACESETTER_KAFKA_SECURITY_PROTOCOL", "PACESETTER_KAFKA_SSL_CA_FILE")


def test_a_client_certificate_needs_its_key(monkeypatch: pytest.MonkeyPatch,
                                            tmp_path: os.PathLike[str]) -> None:
    cert = f"{tmp_path}/client.pem"
    open(cert, "w").close()
    monkeypatch.setenv("PACESETTER_KAFKA_SECURITY_PROTOCOL", "SSL")
    monkeypatch.setenv("PACESETTER_KAFKA_SSL_CERT_FILE", cert)
    fails_naming("PACESETTER_KAFKA_SSL_KEY_FILE")


def test_fetch_wait_and_metrics_port_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACESETTER_KAFKA_FETCH_MAX_WAIT_MS", "-1")
    fails_naming("PACESETTER_KAFKA_FETCH_MAX_WAIT_MS")
    monkeypatch.setenv("PACESETTER_KAFKA_FETCH_MAX_WAIT_MS", "50")
    monkeypatch.setenv("PACESETTER_WORKER_METRICS_PORT", "70000")
    fails_naming("PACESETTER_WORKER_METRICS_PORT")


def test_checkpoint_seconds_is_never_negative(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACESETTER_CHECKPOINT_SECONDS", "-5")
    fails_naming("PACESETTER_CHECKPOINT_SECONDS")
    monkeypatch.setenv("PACESETTER_CHECKPOINT_SECONDS", "0")
    assert load_settings().checkpoint_seconds == 0


@pytest.mark.parametrize("value", ["0", "-0.1", "1.5", "half"])
def test_checkpoint_loop_share_is_a_share(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("PACESETTER_CHECKPOINT_LOOP_SHARE", value)
    fails_naming("PACESETTER_CHECKPOINT_LOOP_SHARE")


def test_checkpoint_loop_share_may_be_the_whole_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PACESETTER_CHECKPOINT_LOOP_SHARE", "1")
    assert load_settings().checkpoint_loop_share == 1
