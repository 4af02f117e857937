"""JSON and YAML text a user writes, decoded with a key given twice refused.

``json.loads`` and ``yaml.safe_load`` keep a repeated key's *last* value without a
word, so a file with an edit appended below the old line (two ``coverage`` keys in an
experiment, two ``stages`` tables in a build config, two ``category`` entries in a
catalogue's column mapping) runs with a value a reader of its top does not see. TOML
refuses a repeat by its spec; :func:`load_json` and :func:`load_yaml` do the same for
the other two formats, raising :class:`~features.exceptions.DuplicateKeyError` with the
key and both lines, for each reader to word in its own error (naming its file). YAML's
numbers are read as YAML 1.2 (and JSON and TOML) read them: ``1e-3`` is a float, not the
string YAML 1.1 made of it (:func:`load_yaml`).

They live in ``features``, the bottom of the dependency chain, because both
``recommender`` (build configs, column mappings) and ``api`` (experiments and serve
configs) read such files. Files the project writes itself (manifests, model metadata,
lock files) are read with plain ``json.loads``: a dict cannot hold a key twice.

Examples
--------
>>> load_json('{"stages": {"graph": {"k": 3}}}')
{'stages': {'graph': {'k': 3}}}
>>> load_json('{"stages": {},\\n "stages": {"split": {}}}')
Traceback (most recent call last):
...
features.exceptions.DuplicateKeyError: line 2: duplicate key 'stages' (first at line 1): JSON keeps only the last value; give each key once
>>> load_yaml("columns:\\n  category: type\\n  category: kind\\n")
Traceback (most recent call last):
...
features.exceptions.DuplicateKeyError: line 3: duplicate key 'category' (first at line 2): YAML keeps only the last value; give each key once
"""
from __future__ import annotations

import json
from typing import Any

from features.exceptions import DuplicateKeyError


class _Object(dict):
    """A decoded JSON object; ``repeat``: the pair indexes (first, repeat) of the first
    key it gives twice, and ``lines`` their lines once known."""

    repeat: tuple[int, int] | None = None
    lines: tuple[int, int] = (0, 0)


def _object_pairs(pairs: list) -> _Object:
    obj, index = _Object(), {}
    for i, (k, v) in enumerate(pairs):
        if k in index and obj.repeat is None:
            obj.repeat = (index[k], i)
        index.setdefault(k, i)
        obj[k] = v
    return obj


def load_json(text: str) -> Any:
    """``json.loads`` refusing a key repeated in one object (:class:`DuplicateKeyError`
    naming both lines and the object's key path, e.g. ``layers[0].experiments[1]``).

    The pure-Python scanner is the one whose object parser can be wrapped to learn
    where each value starts: a config file is small. Syntax errors are
    ``json.JSONDecodeError`` as from ``json.loads``.
    """
    from json.decoder import JSONObject
    from json.scanner import py_make_scanner

    def parse_object(s_and_end, strict, scan_once, *args):
        starts: list[int] = []   # where each of this object's values starts, in order

        def scan_value(s, idx):
            starts.append(idx)
            return scan_once(s, idx)   # nested objects call the scanner's own

        obj, end = JSONObject(s_and_end, strict, scan_value, *args)
        if isinstance(obj, _Object) and obj.repeat is not None:
            s = s_and_end[0]
            obj.lines = tuple(s.count("\n", 0, starts[i]) + 1 for i in obj.repeat)
        return obj, end

    decoder = json.JSONDecoder(object_pairs_hook=_object_pairs)
    decoder.parse_object = parse_object
    decoder.scan_once = py_make_scanner(decoder)
    data = decoder.decode(text)
    found = []   # (lines, path, key) of every object that repeats a key
    stack = [("", data)]
    while stack:
        path, v = stack.pop()
        if isinstance(v, _Object) and v.repeat is not None:
            found.append((v.lines, path, list(v)[v.repeat[0]]))
        if isinstance(v, dict):
            stack.extend((f"{path}.{k}" if path else str(k), x) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((f"{path}[{i}]", x) for i, x in enumerate(v))
    if found:
        (first, line), path, key = min(found, key=lambda f: f[0][1])
        at = f" of {path}" if path else ""
        raise DuplicateKeyError(f"line {line}: duplicate key {key!r}{at} (first at line "
                                f"{first}): JSON keeps only the last value; give each key "
                                f"once", key=key, path=path or None, lines=(first, line))
    return _plain(data)


def _plain(v: Any) -> Any:
    """``v`` with every ``_Object`` made a plain ``dict``, as ``json.loads`` gives
    (``yaml.safe_dump`` of a loaded config refused the subclass)."""
    if isinstance(v, dict):
        return {k: _plain(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


#: A YAML 1.2 float (its core schema) that YAML 1.1, which PyYAML follows, reads as a
#: string: an exponent without a dot (``1e-3``, ``1E3``), an exponent without a sign
#: (``1.0e3``), a signed leading dot (``-.5``). Plain whole numbers match too but are
#: ints: the int resolver is asked first.
YAML12_FLOAT = r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$"


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` refusing a key repeated in one mapping (both lines named),
    with YAML 1.2's floats.

    A ``<<`` merge is not a repeat: YAML's merge lets the mapping's own keys override
    the merged ones, and the check reads the mapping's own keys only. Syntax errors are
    ``yaml.YAMLError`` as from ``yaml.safe_load``.

    PyYAML follows YAML 1.1, where a float needs a dot and a signed exponent: ``lr:
    1e-3`` was the string "1e-3", which a setting's check then refused as "must be a
    number" although JSON, TOML and YAML 1.2 read a number (:data:`YAML12_FLOAT`).
    Whatever YAML 1.1 reads already is read as before (``1.0e-3``, ints, ``.inf``,
    ``.nan``), and a quoted ``"1e-3"`` stays a string.

    Mapping keys are read as YAML 1.1 reads them: a key is a name (a category code
    ``1E3`` of a column mapping's ``category_map``, an experiment's variant), and the
    float 1000.0 would match nothing the file means.

    >>> load_yaml("lr: 1e-3\\nsteps: 1E3\\nquoted: '1e-3'\\nn: 10")
    {'lr': 0.001, 'steps': 1000.0, 'quoted': '1e-3', 'n': 10}
    >>> load_yaml("category_map: {1E3: top, 2.5: bottom}")
    {'category_map': {'1E3': 'top', 2.5: 'bottom'}}
    """
    import re

    import yaml   # lazily: only YAML files need it

    class UniqueKeyLoader(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            if isinstance(node, yaml.MappingNode):
                seen: dict = {}
                for key_node, _ in node.value:
                    if _yaml12_only_float(key_node):
                        key_node.tag = "tag:yaml.org,2002:str"   # a key as YAML 1.1 reads it
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=deep)
                    try:
                        first = seen.setdefault(key, key_node)
                    except TypeError:
                        continue   # an unhashable key: the constructor says so
                    if first is not key_node:
                        lines = (first.start_mark.line + 1, key_node.start_mark.line + 1)
                        raise DuplicateKeyError(
                            f"line {lines[1]}: duplicate key {key!r} (first at line "
                            f"{lines[0]}): YAML keeps only the last value; give each key "
                            f"once", key=key, lines=lines)
            return super().construct_mapping(node, deep=deep)

    float_tag = "tag:yaml.org,2002:float"

    def _yaml12_only_float(key_node) -> bool:
        # a plain scalar our resolver made a float that YAML 1.1's own would not have
        if not (isinstance(key_node, yaml.ScalarNode) and key_node.tag == float_tag
                and key_node.style is None and key_node.value):
            return False
        own = yaml.SafeLoader.yaml_implicit_resolvers.get(key_node.value[0], [])
        return not any(tag == float_tag and rx.match(key_node.value) for tag, rx in own)

    # on the subclass only (PyYAML copies the resolvers for it), after YAML 1.1's own
    UniqueKeyLoader.add_implicit_resolver(float_tag, re.compile(YAML12_FLOAT),
                                          list("-+0123456789."))
    return yaml.load(text, Loader=UniqueKeyLoader)   # a SafeLoader: no arbitrary tags
