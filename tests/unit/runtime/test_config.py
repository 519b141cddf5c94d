from pathlib import Path

import pytest

from chute.errors import ConfigError
from chute.runtime.config import Config


def test_defaults_match_the_interface() -> None:
    config = Config.from_env({})

    assert config.amqp_url == "amqp://guest:guest@127.0.0.1:5672/%2F"
    assert config.database_url == "postgresql://postgres@127.0.0.1:5432/chute"
    assert config.data_dir == Path("./data").resolve()
    assert (config.namespace, config.table) == ("chute", "people")
    assert (config.api_host, config.api_port, config.api_token) == ("127.0.0.1", 8080, None)
    assert config.log_level == "INFO"
    assert config.reader_role == "chute_reader"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("CHUTE_BATCH_SIZE", "-5", "CHUTE_BATCH_SIZE must be between 1 and 1000000, got -5"),
        ("CHUTE_BATCH_SIZE", "many", "CHUTE_BATCH_SIZE must be a whole number, got 'many'"),
        ("CHUTE_API_PORT", "70000", "CHUTE_API_PORT must be between 1 and 65535, got 70000"),
        ("CHUTE_AMQP_URL", "http://x", "CHUTE_AMQP_URL must be a amqp or amqps:// URL"),
        ("CHUTE_AMQP_URL", "amqp://h:notaport/", "CHUTE_AMQP_URL is not a valid URL"),
        ("CHUTE_DATABASE_URL", "postgresql://h/", "CHUTE_DATABASE_URL must name a database"),
        ("CHUTE_TABLE", "people; drop", "CHUTE_TABLE must be a lower-case SQL identifier"),
        ("CHUTE_NAMESPACE", "a b", "CHUTE_NAMESPACE must be letters, digits"),
        ("CHUTE_LOG_LEVEL", "loud", "CHUTE_LOG_LEVEL must be one of DEBUG, INFO"),
    ],
)
def test_a_bad_value_names_its_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        Config.from_env({name: value})

    assert str(error.value).startswith(message)


def test_empty_values_fall_back_to_defaults() -> None:
    assert Config.from_env({"CHUTE_BATCH_SIZE": " ", "CHUTE_API_TOKEN": ""}).api_token is None


def test_one_broker_url_is_one_node() -> None:
    config = Config.from_env({"CHUTE_AMQP_URL": "amqp://u:p@rabbit:5672/%2F"})

    assert config.amqp_nodes == ("amqp://u:p@rabbit:5672/%2F",)


def test_a_comma_separated_list_is_the_cluster_nodes_in_order() -> None:
    value = " amqp://u:p@r1:5672/%2F , amqps://u:p@r2:5671/%2F?heartbeat=10,amqp://r3/vh "
    config = Config.from_env({"CHUTE_AMQP_URL": value})

    assert config.amqp_nodes == (
        "amqp://u:p@r1:5672/%2F", "amqps://u:p@r2:5671/%2F?heartbeat=10", "amqp://r3/vh")


def test_a_comma_in_a_password_is_percent_encoded_and_stays_in_its_node() -> None:
    config = Config.from_env({"CHUTE_AMQP_URL": "amqp://u:a%2Cb@r1/%2F,amqp://u:a%2Cb@r2/%2F"})

    assert config.amqp_nodes == ("amqp://u:a%2Cb@r1/%2F", "amqp://u:a%2Cb@r2/%2F")


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("amqp://r1/,", "CHUTE_AMQP_URL: node 2 of 2 is empty (a stray comma?)"),
        ("amqp://r1/,,amqp://r2/", "CHUTE_AMQP_URL: node 2 of 3 is empty (a stray comma?)"),
        (",", "CHUTE_AMQP_URL: node 1 of 2 is empty (a stray comma?)"),
        ("amqp://r1/,http://r2/",
         "CHUTE_AMQP_URL (node 2) must be a amqp or amqps:// URL with a host"),
        ("amqp://r1:99999/,amqp://r2/", "CHUTE_AMQP_URL (node 1) is not a valid URL"),
        ("amqp://r1/,amqp:///vhost", "CHUTE_AMQP_URL (node 2) must be a amqp or amqps://"),
    ],
)
def test_a_bad_node_in_the_list_is_named_by_its_position(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        Config.from_env({"CHUTE_AMQP_URL": value})

    assert str(error.value).startswith(message)


def test_the_api_reads_the_database_unless_a_standby_is_given() -> None:
    assert Config.from_env({}).read_url == "postgresql://postgres@127.0.0.1:5432/chute"

    config = Config.from_env({"CHUTE_API_DATABASE_URL": "postgresql://reader@standby:5433/chute"})

    assert config.read_url == "postgresql://reader@standby:5433/chute"
    assert config.database_url == "postgresql://postgres@127.0.0.1:5432/chute"
    assert config.reader_role == "chute_reader"  # the primary's role, replicated


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("mysql://standby/chute", "CHUTE_API_DATABASE_URL must be a postgresql or postgres://"),
        ("postgresql://standby/", "CHUTE_API_DATABASE_URL must name a database"),
        ("postgresql://standby/other",
         "CHUTE_API_DATABASE_URL must name the same database as CHUTE_DATABASE_URL ('chute'), "
         "got 'other'"),
    ],
)
def test_a_bad_standby_url_is_named(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as error:
        Config.from_env({"CHUTE_API_DATABASE_URL": value})

    assert str(error.value).startswith(message)
