"""The duplicate-refusing JSON and YAML readers of user-written config files."""
import json

import pytest
import yaml

from features.configfiles import load_json, load_yaml
from features.exceptions import DuplicateKeyError

TEXT = '{"layers": [{"name": "l", "variants": [{"weight": 1, "params": {"d": 0.5}}]}]}'


def test_a_json_config_reads_as_plain_dicts_like_json_loads():
    """The reader's own dict subclass (which notes a repeated key while parsing) was
    returned, and ``yaml.safe_dump`` of a loaded config refused it."""
    data = load_json(TEXT)
    assert data == json.loads(TEXT)
    objs = [data, data["layers"][0], data["layers"][0]["variants"][0],
            data["layers"][0]["variants"][0]["params"]]
    assert all(type(o) is dict for o in objs)
    assert yaml.safe_load(yaml.safe_dump(data)) == data


@pytest.mark.parametrize("load, text, lines", [
    (load_json, '{\n "a": 1,\n "b": {"c": 1,\n  "c": 2}\n}', (3, 4)),
    (load_yaml, "a: 1\nb:\n  c: 1\n  c: 2\n", (3, 4)),
])
def test_a_nested_repeat_names_its_key_and_both_lines(load, text, lines):
    with pytest.raises(DuplicateKeyError) as e:
        load(text)
    assert e.value.key == "c"
    assert f"line {lines[1]}" in str(e.value) and f"first at line {lines[0]}" in str(e.value)
