"""A/B assignment: frozen vectors, determinism across processes, proportions, layers,
holdout, forcing, and config validation errors that name the key."""
from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from features.exceptions import InputError, SchemaError
from api.experiments import ENDPOINTS, Experiments, parse_config_text, unit_hash

VECTORS = json.loads((Path(__file__).parent / "assignment_vectors.json").read_text())


def vector_experiments() -> Experiments:
    return Experiments.from_dict(VECTORS["config"], rules=VECTORS["rules_names"])


def test_unit_hash_matches_frozen_values_and_the_documented_formula():
    for h in VECTORS["hashes"]:
        assert unit_hash(h["salt"], h["unit"]) == h["u"]
        digest = hashlib.sha256(f"{h['salt']}:{h['unit']}".encode()).digest()
        assert h["u"] == int.from_bytes(digest[:8], "big") / 2 ** 64


def test_assignment_matches_frozen_vectors():
    exp = vector_experiments()
    for v in VECTORS["vectors"]:
        a = exp.assign(v["unit"])
        assert (a.experiment, a.variant, a.settings) == (v["experiment"], v["variant"],
                                                          v["settings"]), v["unit"]


def test_assignment_is_the_same_in_a_fresh_process():
    # a fresh interpreter has a different hash() seed: assignment must not depend on it
    code = ("import json,sys; from tests.api.test_experiments import vector_experiments;"
            "e=vector_experiments(); print(json.dumps([e.assign(f'u{i}').variant "
            "for i in range(200)]))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True,
                         text=True, check=True, env={"PYTHONPATH": str(root),
                                                     "PYTHONHASHSEED": "123"})
    exp = vector_experiments()
    assert json.loads(out.stdout) == [exp.assign(f"u{i}").variant for i in range(200)]


def test_weights_coverage_and_holdout_proportions():
    exp = vector_experiments()
    n = 20_000
    by_exp, by_var = Counter(), Counter()
    for i in range(n):
        a = exp.assign(f"p{i}")
        entries = {e[1]: e[2] for e in a.entries}
        if "holdout" in entries:
            by_exp["holdout"] += 1
            continue
        by_exp[next((e for e in entries if e != "rules-v2"), "none")] += 1
        by_var[entries.get("strategy-ab")] += 1
        by_var["rules:" + entries["rules-v2"]] += 1
    # holdout 10%; the ranking layer: 60% strategy-ab, 30% diversity, 10% none (of 90%)
    assert abs(by_exp["holdout"] / n - 0.10) < 0.01
    kept = n - by_exp["holdout"]
    assert abs(by_exp["strategy-ab"] / kept - 0.6) < 0.015
    assert abs(by_exp["diversity"] / kept - 0.3) < 0.015
    assert abs(by_exp["none"] / kept - 0.1) < 0.01
    # variants weighted 1:1:2 inside strategy-ab; rules v1:v2 = 3:1 over everyone kept
    sab = by_exp["strategy-ab"]
    assert abs(by_var["cooc"] / sab - 0.5) < 0.02
    assert abs(by_var["visual"] / sab - 0.25) < 0.02
    assert abs(by_var["rules:v2"] / kept - 0.25) < 0.015


def test_layers_are_independent():
    exp = vector_experiments()
    joint = Counter()
    for i in range(20_000):
        a = exp.assign(f"j{i}")
        e = {x[1]: x[2] for x in a.entries}
        if "strategy-ab" in e:
            joint[(e["strategy-ab"], e["rules-v2"])] += 1
    total = sum(joint.values())
    p_v2 = sum(n for (s, r), n in joint.items() if r == "v2") / total
    for strat in ("control", "visual", "cooc"):
        row = sum(n for (s, r), n in joint.items() if s == strat)
        # P(rules v2 | strategy) == P(rules v2): knowing one layer says nothing of the other
        assert abs(joint[(strat, "v2")] / row - p_v2) < 0.03


def test_settings_merge_across_layers():
    exp = vector_experiments()
    a = next(exp.assign(f"m{i}") for i in range(1000)
             if exp.assign(f"m{i}").variant == "visual,v2")
    assert a.settings == {"strategy": "visual", "rules": "v2"}
    assert a.experiment == "strategy-ab,rules-v2"


def test_forced_variant_only_where_allowed():
    exp = vector_experiments()
    a = exp.assign("anyone", forced="strategy-ab:visual")
    assert ("ranking", "strategy-ab", "visual", True) in a.entries
    assert exp.assign(None, forced="visual").settings["strategy"] == "visual"
    with pytest.raises(InputError) as err:
        exp.assign("anyone", forced="diversity:high")   # qa_override is false there
    assert err.value.field == "variant" and "qa_override" in str(err.value)
    with pytest.raises(InputError) as err:
        exp.assign("anyone", forced="nope")
    assert err.value.field == "variant" and "strategy-ab:visual" in err.value.allowed
    with pytest.raises(InputError) as err:          # no experiment at all: says so
        Experiments.from_dict({}).assign("anyone", forced="nope")
    assert "no experiment is running" in str(err.value) and "allowed" not in str(err.value)


def test_no_unit_means_no_assignment():
    a = vector_experiments().assign(None)
    assert a.entries == () and a.experiment is None and a.variant is None


def test_endpoint_limited_experiment():
    exp = Experiments.from_dict({"layers": [{"name": "l", "experiments": [
        {"name": "e", "coverage": 1.0, "endpoints": ["upsell"],
         "variants": [{"name": "only", "weight": 1}]}]}]})
    assert exp.assign("u", endpoint="upsell").variant == "only"
    assert exp.assign("u", endpoint="complements").variant is None


@pytest.mark.parametrize("mutate, key", [
    (lambda c: c["layers"][0]["experiments"][0].update(coverage=0.8),
     "layers[0].experiments[1].coverage"),
    (lambda c: c["layers"][0]["experiments"][0]["variants"][1].update(strategy="magic"),
     "layers[0].experiments[0].variants[1].strategy"),
    (lambda c: c["layers"][0]["experiments"][0]["variants"][0].update(weight=-1),
     "layers[0].experiments[0].variants[0].weight"),
    (lambda c: c["layers"][1]["experiments"][0]["variants"][0].update(strategy="visual"),
     "layers[1].experiments[0].variants[0].strategy"),
    (lambda c: c["layers"][1]["experiments"][0].update(name="diversity"),
     "layers[1].experiments[0].name"),
    (lambda c: c["layers"][1]["experiments"][0]["variants"][1].update(rules="v9"),
     "layers[1].experiments[0].variants[1].rules"),
    (lambda c: c["layers"][0].update(colour="red"), "layers[0].colour"),
    # a list or table where a name belongs was a TypeError (unhashable), not a key error
    (lambda c: c["layers"][1]["experiments"][0]["variants"][1].update(rules=["v2"]),
     "layers[1].experiments[0].variants[1].rules"),
    (lambda c: c["layers"][0]["experiments"][0]["variants"][0].update(model={"a": 1}),
     "layers[0].experiments[0].variants[0].model"),
    (lambda c: c["holdout"].update(fraction=0.9), "holdout.fraction"),
])
def test_invalid_config_names_the_key(mutate, key):
    cfg = json.loads(json.dumps(VECTORS["config"]))
    mutate(cfg)
    with pytest.raises(SchemaError) as err:
        Experiments.from_dict(cfg, rules=["v2"])
    assert err.value.field == key, str(err.value)
    assert key in str(err.value)


def test_load_toml_yaml_json_and_syntax_error_line(tmp_path):
    toml = tmp_path / "exp.toml"
    toml.write_text('salt = "s"\n[[layers]]\nname = "l"\n[[layers.experiments]]\n'
                    'name = "e"\n[[layers.experiments.variants]]\nname = "a"\n')
    yaml_ = tmp_path / "exp.yaml"
    yaml_.write_text("salt: s\nlayers:\n- name: l\n  experiments:\n  - name: e\n"
                     "    variants:\n    - name: a\n")
    jsn = tmp_path / "exp.json"
    jsn.write_text(json.dumps({"salt": "s", "layers": [{"name": "l", "experiments": [
        {"name": "e", "variants": [{"name": "a"}]}]}]}))
    got = {p.suffix: Experiments.load(p).assign("u").variant for p in (toml, yaml_, jsn)}
    assert got == {".toml": "a", ".yaml": "a", ".json": "a"}
    bad = tmp_path / "bad.toml"
    bad.write_text('salt = "s"\n[[layers]\nname = "l"\n')
    with pytest.raises(SchemaError, match="line 2"):
        Experiments.load(bad)


def _named_like_its_layer(**exp_extra) -> dict:
    return {"layers": [{"name": "ranking", "experiments": [
        {"name": "other", "coverage": 0.5, "variants": [{"name": "a"}, {"name": "b"}]},
        {"name": "ranking", "coverage": 0.5, **exp_extra,
         "variants": [{"name": "control"}, {"name": "visual"}]}]}]}


def test_a_salt_drawn_twice_is_refused():
    # an experiment named like its layer got the layer's default salt: its units are
    # those with u in [0.5, 1), and the variant pick u * 2 >= 1 gave every one of them
    # 'visual' -- control had no units at all
    with pytest.raises(SchemaError) as err:
        Experiments.from_dict(_named_like_its_layer())
    assert err.value.field == "layers[0].experiments[1].salt"
    assert "mixmatch:ranking" in str(err.value) and "layers[0].salt" in str(err.value)
    # with its own salt the split is 1:1 again
    exp = Experiments.from_dict(_named_like_its_layer(salt="ranking-exp"))
    got = Counter(exp.assign(f"u{i}").variant for i in range(4000))
    assert abs(got["control"] / (got["control"] + got["visual"]) - 0.5) < 0.04
    # the holdout's salt, and an experiment of another layer's, are taken too
    cfg = json.loads(json.dumps(VECTORS["config"]))
    cfg["layers"][0]["experiments"][0]["salt"] = "holdout-v1"
    with pytest.raises(SchemaError) as err:
        Experiments.from_dict(cfg, rules=["v2"])
    assert err.value.field == "layers[0].experiments[0].salt"
    cfg = json.loads(json.dumps(VECTORS["config"]))
    cfg["layers"][0]["experiments"][0]["salt"] = "shared"
    cfg["layers"][1]["experiments"][0]["salt"] = "shared"
    with pytest.raises(SchemaError) as err:
        Experiments.from_dict(cfg, rules=["v2"])
    assert err.value.field == "layers[1].experiments[0].salt"
    # experiments of one layer may share one: no unit is in both
    cfg["layers"][1]["experiments"][0].pop("salt")
    cfg["layers"][0]["experiments"][1]["salt"] = "shared"
    Experiments.from_dict(cfg, rules=["v2"])


def test_an_experiments_file_that_is_not_text_or_not_a_file_is_named(tmp_path):
    """Before: UnicodeDecodeError / IsADirectoryError tracebacks from create_app (so
    `mixmatch serve` did not exit 2 naming the file), and from the A/B notebook's
    loader for a file in another encoding."""
    from api import create_app
    from api.ab_report import load_experiments_for_analysis
    latin = tmp_path / "exp.toml"
    latin.write_bytes('salt = "caf\xe9"\n'.encode("latin-1"))
    for load in (Experiments.load, load_experiments_for_analysis):
        with pytest.raises(InputError, match=r"exp\.toml: not UTF-8 text \(byte 11\)"):
            load(latin)
    with pytest.raises(InputError, match="is not a file"):
        Experiments.load(tmp_path)
    with pytest.raises(InputError, match="not UTF-8"):
        create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"),
                    "EXPERIMENTS": str(latin)})


def test_the_config_version_is_its_version_key_else_a_hash_of_its_contents():
    """Exposures record the version of the config that assigned them (the file is
    reloadable): a ``version`` key is taken as given, else a hash of the contents that
    is the same for the same config and new with an edit."""
    cfg = json.loads(json.dumps(VECTORS["config"]))
    cfg.pop("version", None)
    hashed = Experiments.from_dict(cfg, rules=["v2"]).version
    assert len(hashed) == 12 and int(hashed, 16) >= 0
    assert Experiments.from_dict(json.loads(json.dumps(cfg)), rules=["v2"]).version == hashed
    cfg["layers"][0]["experiments"][0]["variants"][0]["weight"] = 7
    assert Experiments.from_dict(cfg, rules=["v2"]).version != hashed
    assert Experiments.from_dict({**cfg, "version": "2024-06-01.1"},
                                 rules=["v2"]).version == "2024-06-01.1"
    assert Experiments.from_dict({**cfg, "version": 3}, rules=["v2"]).version == "3"
    assert Experiments().version is None
    for bad in ("", True, 1.5, ["v"]):
        with pytest.raises(SchemaError) as err:
            Experiments.from_dict({**cfg, "version": bad}, rules=["v2"])
        assert err.value.field == "version" and repr(bad) in str(err.value)


def test_a_recorded_version_refuses_other_weights_and_an_added_experiment():
    """The events database's record of a version's weights stands; a config under that
    version passes only with the same shares, and is refused by name otherwise. An
    experiment the record lacks was reported as "recorded with other weights ... (not
    in it", as if the record were wrong: it says the version was recorded without it."""
    cfg = json.loads(json.dumps(VECTORS["config"]))
    exp = Experiments.from_dict({**cfg, "version": "v1"}, rules=VECTORS["rules_names"])
    recorded = json.loads(json.dumps(exp.allocation()))
    exp.check_recorded(recorded)
    exp.check_recorded({k: {v: 2 * w for v, w in ws.items()}       # 1:1 as 2:2
                        for k, ws in recorded.items()})
    exp.check_recorded({**recorded, "stopped": {"a": 1.0}})         # removed since
    exp.check_recorded(None)
    with pytest.raises(InputError) as err:
        exp.check_recorded({**recorded, "diversity": {"low": 1.0, "high": 3.0}})
    assert err.value.field == "experiments" and (
        "version 'v1' was recorded with other weights for experiment 'diversity' "
        "(low 1, high 3; now low 1, high 1)") in str(err.value)
    without = {k: v for k, v in recorded.items() if k != "diversity"}
    with pytest.raises(InputError) as err:
        exp.check_recorded(without)
    msg = str(err.value)
    assert ("version 'v1' was recorded without experiment 'diversity' (now low 1, "
            "high 1): ") in msg and "not in it" not in msg and "bump" in msg, msg


@pytest.mark.parametrize("holdout", [0, "", [], False])
def test_a_holdout_that_is_not_a_table_is_refused_even_when_empty(holdout):
    """``holdout = 0.05`` (the fraction written without its table) was refused, but
    ``holdout = 0``, ``""``, ``[]`` or ``false`` passed as "no holdout": a falsy value
    was taken for a missing one. A holdout is a table; an absent one (or YAML's empty
    ``holdout:``) still means none."""
    cfg = json.loads(json.dumps(VECTORS["config"]))
    cfg["holdout"] = holdout
    with pytest.raises(SchemaError) as err:
        Experiments.from_dict(cfg, rules=["v2"])
    assert err.value.field == "holdout" and "must be a table" in str(err.value)
    cfg["holdout"] = None
    assert Experiments.from_dict(cfg, rules=["v2"]).holdout_fraction == 0.0


@pytest.mark.parametrize("suffix, text", [
    (".toml", 'version = "bom"\n'), (".json", '{"version": "bom"}'),
    (".yaml", "version: bom\n")])
def test_an_experiments_file_with_a_utf8_byte_order_mark_is_read(tmp_path, suffix, text):
    """Saved by an editor that writes UTF-8 with a byte-order mark (Notepad), a TOML
    file was refused as "Invalid statement (at line 1, column 1)" and a JSON one as
    "Unexpected UTF-8 BOM", for a file that reads correctly in any editor; YAML read
    it. The mark is not part of the text."""
    from api.ab_report import load_experiments_for_analysis
    p = tmp_path / f"exp{suffix}"
    p.write_bytes(text.encode("utf-8-sig"))
    assert Experiments.load(p).version == "bom"
    load_experiments_for_analysis(p)


def _diversity_config(params, endpoints=("complements", "upsell")) -> dict:
    exp = {"name": "div", "coverage": 1.0, "qa_override": True, "variants": [
        {"name": "control"}, {"name": "wide", "params": params}]}
    if endpoints is not None:
        exp["endpoints"] = list(endpoints)
    return {"layers": [{"name": "ranking", "experiments": [exp]}]}


@pytest.mark.parametrize("params, key, words", [
    ({"k": 3}, "params.k", "unknown param 'k'"),
    ({"diversity": 1.5}, "params.diversity", "must be a number in [0.0, 1.0], got 1.5"),
    ({"diversity": -0.1}, "params.diversity", "got -0.1"),
    ({"diversity": "0.3"}, "params.diversity", "got '0.3'"),
    ({"diversity": True}, "params.diversity", "got True"),
    ({"diversity": float("nan")}, "params.diversity", "got nan"),
    ([0.3], "params", "must be a table/mapping"),
])
def test_variant_params_are_engine_settings_in_range(params, key, words):
    # any key or value passed before, and was then never used: an A/A test
    with pytest.raises(SchemaError) as err:
        Experiments.from_dict(_diversity_config(params))
    full = f"layers[0].experiments[0].variants[1].{key}"
    assert err.value.field == full and full in str(err.value)
    assert words in str(err.value)


@pytest.mark.parametrize("endpoints, inert", [(["complements", "analyze"], "analyze"),
                                              (["complete"], "complete"),
                                              (None, "complete")])  # none: every one
def test_a_param_on_an_endpoint_that_does_not_honour_it_is_refused(endpoints, inert):
    with pytest.raises(SchemaError) as err:
        Experiments.from_dict(_diversity_config({"diversity": 0.5}, endpoints))
    assert err.value.field == "layers[0].experiments[0].variants[1].params.diversity"
    assert f"params.diversity has no effect on endpoint {inert}" in str(err.value)
    assert err.value.allowed == ["complements", "upsell", "preview"]


def test_variant_params_reach_the_assignment_and_its_echo():
    exp = Experiments.from_dict(_diversity_config({"diversity": 1}, ["complements",
                                                                     "upsell", "preview"]))
    a = exp.assign(None, endpoint="upsell", forced="div:wide")
    assert a.params == {"diversity": 1.0} and isinstance(a.params["diversity"], float)
    assert a.as_list() == [{"layer": "ranking", "experiment": "div", "variant": "wide",
                            "forced": True, "params": {"diversity": 1.0}}]
    # the control sets none: its entry and its engine call are as before
    c = exp.assign(None, endpoint="complements", forced="div:control")
    assert c.params == {} and "params" not in c.as_list()[0]
    # an endpoint outside the experiment: no entry, no params
    assert exp.assign(None, endpoint="analyze", forced="div:wide").params == {}


def test_a_recorded_version_refuses_other_params():
    cfg = {**_diversity_config({"diversity": 0.5}), "version": "v1"}
    exp = Experiments.from_dict(cfg)
    recorded = exp.allocation()
    assert exp.variant_params() == {"div": {"wide": {"diversity": 0.5}}}
    exp.check_recorded(recorded, recorded_params={"div": {"wide": {"diversity": 0.5}}})
    exp.check_recorded(recorded, recorded_params=None)        # an older record: unknown
    exp.check_recorded(recorded, recorded_params={"div": {"wide": {"diversity": 0.5}},
                                                  "stopped": {"x": {"diversity": 1}}})
    for other, was in (({"div": {"wide": {"diversity": 0.2}}}, 'wide {"diversity": 0.2}'),
                       ({}, "none"), ({"div": {"control": {"diversity": 0.5}}},
                                      'control {"diversity": 0.5}')):
        with pytest.raises(InputError) as err:
            exp.check_recorded(recorded, recorded_params=other)
        assert err.value.field == "experiments" and (
            f"version 'v1' was recorded with other params for experiment 'div' ({was}; "
            f'now wide {{"diversity": 0.5}})') in str(err.value)


DUPLICATE_COVERAGE = {
    # the reader sees coverage 0.1 at the top of the experiment; the last one served
    ".json": ('{"layers": [{"name": "l", "experiments": [{"name": "e",\n'
              '  "coverage": 0.1,\n'
              '  "variants": [{"name": "a"}, {"name": "b"}],\n'
              '  "coverage": 1.0}]}]}\n',
              "line 4: duplicate key 'coverage' of layers[0].experiments[0] "
              "(first at line 2)"),
    ".yaml": ("layers:\n- name: l\n  experiments:\n  - name: e\n    coverage: 0.1\n"
              "    variants: [{name: a}, {name: b}]\n    coverage: 1.0\n",
              "line 7: duplicate key 'coverage' (first at line 5)"),
    ".toml": ('[[layers]]\nname = "l"\n[[layers.experiments]]\nname = "e"\n'
              'coverage = 0.1\ncoverage = 1.0\n', "line 6"),
}


@pytest.mark.parametrize("suffix", sorted(DUPLICATE_COVERAGE))
def test_a_key_given_twice_is_refused_in_every_format(tmp_path, suffix):
    """``json.loads`` and ``yaml.safe_load`` keep a repeated key's last value: a file
    with two ``coverage`` keys (an edit appended below the old one) served coverage 1.0
    while its reader saw 0.1 (TOML refuses it by spec). Refused naming key and line."""
    from api.ab_report import load_experiments_for_analysis
    text, words = DUPLICATE_COVERAGE[suffix]
    p = tmp_path / f"exp{suffix}"
    p.write_text(text)
    for load in (Experiments.load, load_experiments_for_analysis):
        with pytest.raises(SchemaError) as err:
            load(p)
        assert words in str(err.value) and str(p) in str(err.value), str(err.value)


@pytest.mark.parametrize("text", [
    '{"layers": [{"name": "l", "experiments": [{"name": "e", "variants": [\n'
    '  {"name": "a", "strategy": "default"},\n  {"name": "b", "strategy": "visual"}]}],\n'
    '  "experiments": [{"name": "e2", "variants": [{"name": "c"}]}]}]}',
    '{"salt": "s", "layers": [], "salt": "t"}'])
def test_a_json_key_given_twice_at_any_depth_is_refused(text):
    # a second "experiments" array replaced the first one's experiment and variants
    with pytest.raises(SchemaError, match="duplicate key '(experiments|salt)'"):
        Experiments.from_dict(parse_config_text(text, ".json", "x.json"))


def test_keys_given_once_and_a_yaml_merge_override_are_read():
    """The same key in two objects is no repeat, nor YAML's ``<<`` merge whose own keys
    override the merged ones (what a merge is for)."""
    got = parse_config_text('{"a": {"name": 1}, "b": [{"name": 2}, {"name": 3}]}',
                            ".json", "x.json")
    assert got == {"a": {"name": 1}, "b": [{"name": 2}, {"name": 3}]}
    got = parse_config_text("base: &b {weight: 1, name: a}\n"
                            "v: {<<: *b, name: b}\n", ".yaml", "x.yaml")
    assert got["v"] == {"weight": 1, "name": "b"}


def test_an_api_config_file_with_a_key_given_twice_is_refused(tmp_path):
    # the serve config is read by the same parser: two EVENTS_DB keys served the last
    from api.app import load_config_file
    cfg = tmp_path / "serve.yaml"
    cfg.write_text("events_db: a.db\nrules: r.toml\nevents_db: b.db\n")
    with pytest.raises(SchemaError, match="line 3: duplicate key 'events_db'"):
        load_config_file(cfg)


def _one_experiment(**settings) -> Experiments:
    """One experiment over every endpoint (no ``endpoints`` list), everyone in it."""
    return Experiments.from_dict({"layers": [{"name": "l", "experiments": [
        {"name": "e", "coverage": 1.0, "qa_override": True, "variants": [
            {"name": "control"}, {"name": "treat", **settings}]}]}]},
        models=["m2"], rules=["v2"])


@pytest.mark.parametrize("settings, acts_on", [
    # up-sell echoes the strategy but ranks by similarity whatever it is
    ({"strategy": "visual"}, {"complements", "complete", "preview"}),
    ({"rules": "v2"}, {"complements", "upsell", "complete", "search", "search_image",
                       "preview"}),
    ({"model": "m2"}, set(ENDPOINTS)),
    ({"strategy": "visual", "rules": "v2"}, set(ENDPOINTS) - {"score", "analyze"}),
    # nothing set on the server: a page reads its variant from the envelope
    ({}, set(ENDPOINTS)),
    ({"params": {}}, set(ENDPOINTS)),
])
def test_an_experiment_is_in_a_request_only_where_a_variants_setting_acts(settings,
                                                                           acts_on):
    """With no ``endpoints`` list an experiment was in every request, so a strategy
    experiment logged exposures on search, score, analyze and up-sell, where both arms
    got the same answer: the A/B report counted those units in the arms and diluted
    the effect. It is in the requests of the endpoints where a setting acts."""
    exp = _one_experiment(**settings)
    got = {p for p in ENDPOINTS if exp.assign("u1", endpoint=p).entries}
    assert got == acts_on
    # a QA override too: the forced variant shows nothing different elsewhere
    assert {p for p in ENDPOINTS
            if exp.assign(None, endpoint=p, forced="treat").entries} == acts_on
    assert exp.assign("u1").entries   # no endpoint named: the unit's assignment


def test_a_listed_endpoint_where_nothing_acts_logs_no_exposure_either():
    exp = Experiments.from_dict({"layers": [{"name": "l", "experiments": [
        {"name": "e", "endpoints": ["complements", "upsell"], "variants": [
            {"name": "a", "strategy": "default"}, {"name": "b", "strategy": "visual"}]}]}]})
    assert exp.assign("u1", endpoint="complements").entries
    assert not exp.assign("u1", endpoint="upsell").entries
    assert not exp.assign("u1", endpoint="complete").entries   # not listed



def test_a_listed_endpoint_where_nothing_acts_is_logged_at_load(tmp_path, caplog):
    """An experiment listing up-sell and search for a strategy arm is left out of their
    requests (above): the server served on without a word, and its report showed no
    exposure there. Not refused (old files the A/B report reads again would break):
    the load logs the experiment and its inert endpoints, once per version."""
    (tmp_path / "bundle").mkdir()
    cfg = tmp_path / "exp.json"
    cfg.write_text(json.dumps({"version": "inert-1", "layers": [
        {"name": "ranking", "experiments": [
            {"name": "strat", "coverage": 0.5,
             "endpoints": ["complements", "upsell", "search"],
             "variants": [{"name": "def", "strategy": "default"},
                          {"name": "vis", "strategy": "visual"}]},
            # every endpoint it lists acts: not logged
            {"name": "vis_only", "coverage": 0.5, "endpoints": ["complements"],
             "variants": [{"name": "a"}, {"name": "b", "strategy": "visual"}]}]},
        {"name": "page", "experiments": [   # nothing set on the server: not inert
            {"name": "banner", "endpoints": ["search"], "variants": [
                {"name": "a"}, {"name": "b"}]}]}]}))
    from api import create_app
    conf = {"TESTING": True, "DATA_DIR": str(tmp_path / "data"),
            "BUNDLE": str(tmp_path / "bundle"), "WATCH_INTERVAL": 0, "WARM_VISION": False,
            "ENGINE_LOADER": _AnswerEngine, "EXPERIMENTS": str(cfg)}
    with caplog.at_level("WARNING", logger="api.state"):
        app = create_app(conf)
    said = [r.getMessage() for r in caplog.records if "where none of its variants'" in
            r.getMessage()]
    assert said == [f"experiments file {cfg} (version inert-1): experiment 'strat' lists "
                    f"endpoint(s) upsell, search where none of its variants' settings acts "
                    f"(it acts on complements, complete, preview); it is not in their "
                    f"requests and logs no exposure there"], caplog.text
    assert app.test_client().get("/healthz").status_code == 200   # served all the same
    app.extensions["mixmatch"].events.close()
    caplog.clear()
    with caplog.at_level("WARNING", logger="api.state"):   # a reload of one version
        create_app(conf).extensions["mixmatch"].events.close()
    assert "where none of its variants'" not in caplog.text

class _AnswerEngine:
    """Answers every JSON endpoint with nothing: the test reads the exposures."""

    def __init__(self, path):
        self.bundle_version = "fake"

    def complements(self, item_id, **kw):
        return {"groups": []}

    def upsell(self, item_id, **kw):
        return {"items": []}

    def search(self, filters, **kw):
        return {"items": []}

    def score_outfit(self, items):
        return {"score": 0.5, "pairs": []}

    def complete(self, items, **kw):
        return {"looks": []}


def test_exposures_are_logged_only_on_endpoints_where_the_experiment_acts(tmp_path):
    (tmp_path / "bundle").mkdir()
    rules = tmp_path / "v2.toml"
    rules.write_text('version = "v2"\n')
    cfg = tmp_path / "exp.json"
    cfg.write_text(json.dumps({"layers": [
        {"name": "ranking", "experiments": [{"name": "strat", "variants": [
            {"name": "def", "strategy": "default"},
            {"name": "vis", "strategy": "visual"}]}]},
        {"name": "merch", "experiments": [{"name": "rules", "variants": [
            {"name": "v1"}, {"name": "v2", "rules": "v2"}]}]}]}))
    from api import create_app
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"),
                      "BUNDLE": str(tmp_path / "bundle"), "WATCH_INTERVAL": 0,
                      "WARM_VISION": False, "ENGINE_LOADER": _AnswerEngine,
                      "RULES_FILES": {"v2": str(rules)}, "EXPERIMENTS": str(cfg)})
    c = app.test_client()
    store = app.extensions["mixmatch"].events
    calls = {"complements": lambda: c.get("/v1/items/X/complements?user_id=u1"),
             "upsell": lambda: c.get("/v1/items/X/upsell?user_id=u1"),
             "search": lambda: c.get("/v1/search?user_id=u1&category=top"),
             "score": lambda: c.post("/v1/outfits/score",
                                     json={"items": ["a", "b"], "user_id": "u1"}),
             "complete": lambda: c.post("/v1/outfits/complete",
                                        json={"items": ["a"], "user_id": "u1"})}
    want = {"complements": {"strat", "rules"}, "complete": {"strat", "rules"},
            "upsell": {"rules"}, "search": {"rules"}, "score": set()}
    for endpoint, call in calls.items():
        r = call()
        assert r.status_code == 200, (endpoint, r.get_json())
        body = r.get_json()
        assert {a["experiment"] for a in body.get("assignments", [])} == want[endpoint]
        logged = {e for (e,) in store.query(
            "SELECT experiment FROM exposures WHERE endpoint = ?", (endpoint,))}
        assert logged == want[endpoint], endpoint
    # up-sell serves the default strategy, and says so: the variant's did nothing there
    assert c.get("/v1/items/X/upsell?user_id=u1").get_json()["strategy"] == "default"
    store.close()


def test_a_setting_is_in_the_assignment_only_on_endpoints_where_it_acts():
    """An experiment with a strategy and a param is in up-sell's requests (the param
    acts there), and its variant's strategy came along in the settings: up-sell
    answered ``"strategy": "visual"`` for a ranking that took no strategy."""
    exp = Experiments.from_dict({"layers": [{"name": "l", "experiments": [
        {"name": "e", "qa_override": True, "endpoints": ["complements", "upsell"],
         "variants": [{"name": "a"}, {"name": "vis", "strategy": "visual",
                                      "params": {"diversity": 0.5}}]}]}]})
    up = exp.assign("u1", endpoint="upsell", forced="vis")
    assert up.settings == {"params": {"diversity": 0.5}}
    assert up.as_list() == [{"layer": "l", "experiment": "e", "variant": "vis",
                             "forced": True, "params": {"diversity": 0.5}}]
    assert exp.assign("u1", endpoint="complements", forced="vis").settings == {
        "strategy": "visual", "params": {"diversity": 0.5}}
    # no endpoint named: the unit's whole assignment, every setting
    assert exp.assign("u1", forced="vis").settings["strategy"] == "visual"
    # a model brings a rules experiment into score, which takes no rules: the envelope
    # and the exposure reported the variant's rules version for it
    exp = _one_experiment(model="m2", rules="v2")
    assert exp.assign("u1", endpoint="score", forced="treat").settings == {"model": "m2"}
    assert exp.assign("u1", endpoint="search", forced="treat").settings == {
        "model": "m2", "rules": "v2"}


def test_upsell_echoes_no_strategy_its_variant_set_where_a_param_brings_it_in(tmp_path):
    (tmp_path / "bundle").mkdir()
    cfg = tmp_path / "exp.json"
    cfg.write_text(json.dumps({"layers": [{"name": "ranking", "experiments": [
        {"name": "div", "endpoints": ["complements", "upsell"], "variants": [
            {"name": "def", "strategy": "default"},
            {"name": "vis", "strategy": "visual", "params": {"diversity": 0.5}}]}]}]}))
    strategies = []

    class Engine(_AnswerEngine):
        def upsell(self, item_id, **kw):
            strategies.append(kw["strategy"])
            return {"items": []}

    from api import create_app
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path / "data"),
                      "BUNDLE": str(tmp_path / "bundle"), "WATCH_INTERVAL": 0,
                      "WARM_VISION": False, "ENGINE_LOADER": Engine,
                      "EXPERIMENTS": str(cfg)})
    c = app.test_client()
    exps = app.extensions["mixmatch"].holder.current().experiments
    users = [u for u in (f"u{i}" for i in range(40))
             if exps.assign(u, endpoint="upsell").variant == "vis"]
    assert users
    body = c.get(f"/v1/items/X/upsell?user_id={users[0]}").get_json()
    # in the experiment (its param acts), the variant named, the strategy not echoed
    assert body["variant"] == "vis" and body["strategy"] == "default", body
    assert body["assignments"][0]["params"] == {"diversity": 0.5}
    assert strategies == ["default"]
    app.extensions["mixmatch"].events.close()
