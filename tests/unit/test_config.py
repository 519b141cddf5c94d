from pathlib import Path

import pytest

from chute.config import Config, ConfigError


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
