from pathlib import Path

import pytest

from linkage.errors import ConfigError
from linkage.jobs._config import load_coordinator_config, load_node_config

EXAMPLES = Path(__file__).resolve().parents[1] / "services" / "examples"


def test_example_configs_parse():
    node = load_node_config(EXAMPLES / "node.toml")
    assert node.agency == "police" and node.exclude_column == "no_consent" and node.input == EXAMPLES / "records.csv"
    coordinator = load_coordinator_config(EXAMPLES / "coordinator.toml")
    assert coordinator.agencies["victim_services"].disclosure == "receive-only" and not coordinator.retain_encodings
    assert load_node_config(EXAMPLES / "node.toml", listen="127.0.0.1:9").listen == "127.0.0.1:9"


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('agency = "police"', 'agency = "Police Dept"', "node.agency"),
        ('listen = "0.0.0.0:50051"', 'listen = "nowhere"', "node.listen"),
        ('coordinators = ["coordinator"]', "coordinators = []", "node.coordinators"),
        ('id_column = "rec_id"', "# no id column", "data.id_column"),
        ("[tls]", "[tlz]", "[tls]"),
        ('encoding = "utf-8"', 'encoding = "utf-8"\ncolour = 1', "data.colour"),
    ],
)
def test_bad_node_config_names_the_key(tmp_path, old, new, key):
    path = tmp_path / "node.toml"
    path.write_text((EXAMPLES / "node.toml").read_text().replace(old, new, 1))
    with pytest.raises(ConfigError, match=f"node.toml: .*{__import__('re').escape(key)}"):
        load_node_config(path)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('disclosure = "receive-only"', 'disclosure = "secret"', "agencies.victim_services.disclosure"),
        ('scoring = "auto"', 'scoring = "magic"', "job.scoring"),
        ("fetch_attempts = 3", "fetch_attempts = 0", "coordinator.fetch_attempts"),
        ("retain_encodings = false", 'retain_encodings = "no"', "coordinator.retain_encodings"),
    ],
)
def test_bad_coordinator_config_names_the_key(tmp_path, old, new, key):
    path = tmp_path / "coordinator.toml"
    path.write_text((EXAMPLES / "coordinator.toml").read_text().replace(old, new, 1))
    with pytest.raises(ConfigError, match=f"coordinator.toml: {__import__('re').escape(key)}"):
        load_coordinator_config(path)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_node_config(tmp_path / "absent.toml")
