import pytest

from fdrl_train.config import (
    CONFIG_DIR,
    DATASETS,
    ConfigError,
    load_config,
    parse_override,
    validate,
)


def test_every_bundled_config_validates():
    names = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
    assert names == sorted(DATASETS)
    for n in names:
        cfg = load_config(n)
        assert cfg["dataset"] == n


def test_overrides_are_read_as_yaml():
    cfg = load_config("swissroll", ["steps=7", "lr=1e-4", "compile_flow=false", "lr_milestones=[3, 5]"])
    assert cfg["steps"] == 7 and cfg["lr"] == 1e-4 and cfg["compile_flow"] is False
    assert cfg["lr_milestones"] == [3, 5]
    assert parse_override("eta=3") == ("eta", 3)


@pytest.mark.parametrize("raw, fragment", [
    ({"steps": "many"}, "'steps': expected int"),
    ({"steps": 0}, "'steps'"),
    ({"steps": True}, "'steps': expected int"),
    ({"eta": -1.0}, "'eta'"),
    ({"dataset": "imagenet"}, "'dataset'"),
    ({"stepz": 3}, "unknown config key 'stepz'"),
    ({"loss": "LSIF", "divergence": "KL"}, "not a valid pairing"),
    ({"loss": "LR", "divergence": "Pearson"}, "LSIF with Pearson"),
])
def test_bad_values_name_the_key(raw, fragment):
    with pytest.raises(ConfigError, match=None) as e:
        validate(raw)
    assert fragment in str(e.value)


def test_all_paper_pairings_are_accepted():
    for loss, div in [("LSIF", "Pearson"), ("LR", "KL"), ("LR", "JS"), ("LR", "logD"),
                      ("KL", "KL"), ("KL", "JS"), ("KL", "logD")]:
        assert validate({"loss": loss, "divergence": div})["divergence"] == div


def test_missing_config_file_lists_bundled_names():
    with pytest.raises(ConfigError, match="swissroll"):
        load_config("no_such_config")
