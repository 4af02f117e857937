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


@pytest.mark.parametrize("text, value", [
    # YAML 1.1 (PyYAML) read these as strings; JSON, TOML and YAML 1.2 as numbers
    ("1e-3", 0.001), ("1E3", 1000.0), ("1e+3", 1000.0), ("-1e-3", -0.001),
    ("1.0e3", 1000.0), ("-.5", -0.5), ("+.5", 0.5), (".5e3", 500.0),
    # floats YAML 1.1 reads already, as before
    ("-2.5e+4", -25000.0), (".5", 0.5), ("1.0e-3", 0.001), ("2.0", 2.0), ("1.", 1.0),
])
def test_yaml_reads_the_floats_of_yaml_1_2_as_floats(text, value):
    v = load_yaml(f"lr: {text}\n")["lr"]
    assert type(v) is float and v == value, v
    assert load_yaml(f"- {text}\n- {{a: {text}}}\n") == [value, {"a": value}]


@pytest.mark.parametrize("text, value", [
    ("3", 3), ("-7", -7), ("0", 0), ("+12", 12), ("1_000", 1000), ("0x1f", 31),
])
def test_yaml_whole_numbers_stay_ints(text, value):
    v = load_yaml(f"n: {text}\n")["n"]
    assert type(v) is int and v == value, v


def test_yaml_infinities_and_nan_are_read_as_yaml_defines_them():
    import math

    got = load_yaml("a: .inf\nb: -.inf\nc: +.INF\nd: .nan\ne: .NaN\n")
    assert (got["a"], got["b"], got["c"]) == (math.inf, -math.inf, math.inf)
    assert math.isnan(got["d"]) and math.isnan(got["e"])
    assert load_yaml("a: inf\nb: nan\n") == {"a": "inf", "b": "nan"}   # no dot: words


@pytest.mark.parametrize("text", ['"1e-3"', "'1e-3'", "!!str 1e3", "1e", "e3", "1e3x",
                                  "1.2.3", ".e3", "1e-3.5", "1 e3", "0o17x"])
def test_yaml_quoted_and_other_non_numbers_stay_strings(text):
    v = load_yaml(f"s: {text}\n")["s"]
    assert type(v) is str, v


def test_yaml_floats_leave_pyyaml_itself_alone():
    """The YAML 1.2 floats are the reader's own loader's: ``yaml.safe_load`` elsewhere
    (a library reading its own files) still reads YAML 1.1."""
    load_yaml("lr: 1e-3\n")
    assert yaml.safe_load("lr: 1e-3\n") == {"lr": "1e-3"}


@pytest.mark.parametrize("key, read", [("1E3", "1E3"), ("1e-3", "1e-3"), ("-.5", "-.5"),
                                       ("1.0e-3", 0.001), ("2.5", 2.5), ("10", 10)])
def test_yaml_mapping_keys_are_read_as_yaml_1_1_reads_them(key, read):
    # a key is a name (a category code, a variant): 1E3 must not become 1000.0, while
    # what YAML 1.1 already read as a number stays one
    assert load_yaml(f"category_map:\n  {key}: top\n") == {"category_map": {read: "top"}}
    assert load_yaml(f"{{{key}: top}}") == {read: "top"}
    assert load_yaml(f"x: {key}\n")["x"] == (float(key) if key != "10" else 10)
