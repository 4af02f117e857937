import math

import pandas as pd
import pytest
from scipy import stats

from api.ab_analysis import (newcombe_diff_interval, srm_check, variant_report,
                             wilson_interval)
from features.exceptions import InputError


def test_wilson_matches_hand_worked_value():
    # p=0.1, n=100, z=1.96: centre=(0.1+0.0192)/1.0384, half=1.96*sqrt(.0009+.00009604)/1.0384
    lo, hi = wilson_interval(10, 100)
    z = stats.norm.ppf(0.975)
    centre = (0.1 + z * z / 200) / (1 + z * z / 100)
    half = z * math.sqrt(0.1 * 0.9 / 100 + z * z / 40000) / (1 + z * z / 100)
    assert lo == pytest.approx(centre - half) and hi == pytest.approx(centre + half)
    assert wilson_interval(0, 10)[0] == 0.0


def test_wilson_rejects_impossible_counts():
    with pytest.raises(InputError, match="successes=11"):
        wilson_interval(11, 10)


def test_newcombe_contains_zero_for_equal_rates_and_not_for_large_gap():
    lo, hi = newcombe_diff_interval(50, 500, 50, 500)
    assert lo < 0 < hi
    lo, hi = newcombe_diff_interval(150, 500, 50, 500)
    assert lo > 0.1 and hi < 0.3


def test_srm_flags_a_skewed_split():
    assert not srm_check({"a": 5010, "b": 4990}, {"a": 0.5, "b": 0.5})["mismatch"]
    assert srm_check({"a": 5600, "b": 4400}, {"a": 0.5, "b": 0.5})["mismatch"]
    with pytest.raises(InputError, match="no configured weight"):
        srm_check({"c": 1}, {"a": 0.5, "b": 0.5})


def test_variant_report_counts_units_not_requests():
    exposures = pd.DataFrame({
        "request_id": ["r1", "r2", "r3", "r4"], "experiment": ["e"] * 4,
        "variant": ["control", "control", "treat", "treat"],
        "unit": ["u1", "u1", "u2", "u3"]})
    events = pd.DataFrame({"request_id": ["r1", "r2", "r3", "zz"],
                           "type": ["click", "click", "purchase", "click"]})
    rep = variant_report(exposures, events, "e", "control", weights={"control": .5, "treat": .5})
    v = rep["variants"].set_index(["variant", "event"])
    assert v.loc[("control", "click"), "units"] == 1
    assert v.loc[("control", "click"), "rate"] == 1.0
    assert v.loc[("treat", "purchase"), "conversions"] == 1
    assert v.loc[("treat", "click"), "diff"] == -1.0
    assert rep["srm"]["expected"] == {"control": 1.5, "treat": 1.5}
    with pytest.raises(InputError, match="control variant 'x'"):
        variant_report(exposures, events, "e", "x")


def test_a_request_exposed_in_two_layers_counts_in_both():
    exposures = pd.DataFrame({
        "request_id": ["r1", "r1", "r2", "r2"], "experiment": ["rank", "rules"] * 2,
        "variant": ["a", "x", "b", "y"], "unit": ["u1", "u1", "u2", "u2"]})
    events = pd.DataFrame({"request_id": ["r1"], "type": ["click"]})
    rank = variant_report(exposures, events, "rank", "a")["variants"].set_index(
        ["variant", "event"])
    rules = variant_report(exposures, events, "rules", "x")["variants"].set_index(
        ["variant", "event"])
    assert rank.loc[("a", "click"), "conversions"] == 1
    assert rules.loc[("x", "click"), "conversions"] == 1
    assert rules.loc[("y", "click"), "units"] == 1


def test_an_exposure_without_a_unit_is_its_own_unit():
    """A QA request forcing a variant with no user_id/session_id is logged with a NULL
    unit: pandas dropped it from the grouping, so its click vanished and two such
    requests counted as one unit with no conversion."""
    exposures = pd.DataFrame({
        "request_id": ["r1", "r2", "r3"], "experiment": ["e"] * 3,
        "variant": ["a"] * 3, "unit": [None, None, "u1"]})
    events = pd.DataFrame({"request_id": ["r1"], "type": ["click"]})
    v = variant_report(exposures, events, "e", "a")["variants"].set_index(
        ["variant", "event"])
    assert v.loc[("a", "click"), "units"] == 3
    assert v.loc[("a", "click"), "conversions"] == 1


def test_a_variant_missing_from_the_weights_is_reported_not_fatal():
    """A variant removed from the experiments config after it was logged: the SRM
    check raised 'no configured weight', so the whole report (and the notebook)
    failed. Its rows are reported; the SRM compares the configured variants only."""
    exposures = pd.DataFrame({
        "request_id": ["r1", "r2", "r3", "r4", "r5"], "experiment": ["e"] * 5,
        "variant": ["a", "b", "b", "gone", "gone"],
        "unit": ["u1", "u2", "u3", "u4", "u5"]})
    events = pd.DataFrame({"request_id": ["r4"], "type": ["click"]})
    rep = variant_report(exposures, events, "e", "a", weights={"a": 1.0, "b": 1.0})
    v = rep["variants"].set_index(["variant", "event"])
    assert v.loc[("gone", "click"), "units"] == 2
    assert v.loc[("gone", "click"), "conversions"] == 1
    assert rep["srm"]["expected"] == {"a": 1.5, "b": 1.5}
    assert rep["srm"]["unconfigured"] == {"gone": 2}
    assert "gone" in rep["srm"]["note"] and "left out" in rep["srm"]["note"]
    # every logged variant configured: no note
    rep = variant_report(exposures, events, "e", "a",
                         weights={"a": 1.0, "b": 1.0, "gone": 1.0})
    assert "note" not in rep["srm"] and "unconfigured" not in rep["srm"]


def test_ab_summary_with_the_design_of_a_config_that_dropped_a_variant():
    from api.ab_report import ab_summary, experiment_design
    from api.experiments import Experiments
    now = Experiments.from_dict({"layers": [{"name": "l", "experiments": [
        {"name": "e", "variants": [{"name": "a", "weight": 3}, {"name": "b"}]}]}]})
    exposures = pd.DataFrame({
        "request_id": ["r1", "r2", "r3"], "experiment": ["e"] * 3,
        "variant": ["a", "b", "c"], "unit": ["u1", "u2", "u3"], "forced": [0] * 3})
    events = pd.DataFrame({"request_id": ["r3"], "type": ["click"]})
    control, weights = experiment_design(now, "e")
    rep = ab_summary(exposures, events, "e", control=control, weights=weights)
    assert rep["control"] == "a"
    assert set(rep["variants"]["variant"]) == {"a", "b", "c"}
    assert rep["srm"]["expected"] == {"a": 1.5, "b": 0.5}
    assert rep["srm"]["unconfigured"] == {"c": 1}


@pytest.mark.parametrize("folder", ["runs#3", "what?x=1", "100%AB"])
def test_read_event_tables_opens_a_path_with_uri_characters_read_only(tmp_path, folder):
    """The database was opened as ``file:{path}?mode=ro``: a '#' or '?' in the path cut
    it short, so another file (``runs``) was opened read-write, created empty, and
    the read failed with 'no such table'; a '%' failed to open."""
    from api.ab_report import read_event_tables
    from api.events import EventStore
    db = tmp_path / folder / "events.db"
    store = EventStore(db)
    store.add_exposures("r1", "u1", [("l", "e", "a", False)], endpoint="complements",
                        bundle_version="b", rules_version="1")
    store.close()
    before = sorted(p.name for p in tmp_path.iterdir())
    exposures, events = read_event_tables(db)
    assert exposures["request_id"].tolist() == ["r1"] and events.empty
    assert sorted(p.name for p in tmp_path.iterdir()) == before   # nothing created


def test_the_default_experiment_is_one_with_assigned_units_not_qa_traffic():
    """QA forced a new experiment more often than units saw the running one: the
    notebook's default (most exposures) picked the QA-only experiment and ab_summary
    then refused it with 'no exposures', listing that very experiment as allowed."""
    from api.ab_report import ab_summary, experiment_names, most_exposed_experiment
    from features.exceptions import NotFoundError
    exposures = pd.DataFrame({
        "request_id": ["q1", "q2", "q3", "r1", "r2"],
        "experiment": ["new"] * 3 + ["old"] * 2, "variant": ["a"] * 3 + ["c", "t"],
        "unit": [None] * 3 + ["u1", "u2"], "forced": [1, 1, 1, 0, 0]})
    events = pd.DataFrame({"request_id": ["r2"], "type": ["click"]})
    assert most_exposed_experiment(exposures) == "old"
    assert ab_summary(exposures, events, "old", control="c")["control"] == "c"
    assert experiment_names(exposures, include_forced=True) == ["new", "old"]
    with pytest.raises(InputError) as err:
        ab_summary(exposures, events, "new")
    assert err.value.allowed == ["old"]
    with pytest.raises(NotFoundError, match="forced by QA"):
        most_exposed_experiment(exposures[exposures["forced"] == 1], "db")


def test_events_keyed_by_a_client_request_id_are_tied_only_when_it_was_unique():
    """A page posting events with its own X-Request-ID (what the header echoes) rather
    than the body's request_id: tied to the one request that id named; an id reused
    for several requests cannot say which of them a click followed and stays untied."""
    from api.ab_report import tie_client_request_ids
    exposures = pd.DataFrame({
        "request_id": ["s1", "s1", "s2", "s3", "s4"],
        "client_request_id": ["page-1", "page-1", "sess", "sess", None]})
    events = pd.DataFrame({"request_id": ["page-1", "sess", "s4", "zz"],
                           "type": ["click"] * 4})
    tied = tie_client_request_ids(exposures, events)
    assert tied["request_id"].tolist() == ["s1", "sess", "s4", "zz"]
    assert events["request_id"].tolist() == ["page-1", "sess", "s4", "zz"]   # a copy


def _store_two_versions(db, w1, w2, n1=40, n2=100, b_every2=2, b_every=10,
                        params1=None, params2=None):
    """An events database whose experiment 'e' ran under config version v1 (units
    u0.. split by ``b_every2``) and then v2 (units w0.., one in ``b_every`` in b), the
    server recording each version's weights with its first exposure."""
    from api.events import EventStore
    store = EventStore(db)
    for i in range(n1):
        store.add_exposures(f"r1-{i}", f"u{i}", [("l", "e", "b" if i % b_every2 == 0
                                                  else "a", False)],
                            endpoint="complements", bundle_version="b", rules_version="1",
                            experiments_version="v1", experiments_allocation={"e": w1},
                            experiments_params=params1, ts=1000.0 + i)
    for i in range(n2):
        store.add_exposures(f"r2-{i}", f"w{i}", [("l", "e", "b" if i % b_every == 0
                                                  else "a", False)],
                            endpoint="complements", bundle_version="b", rules_version="1",
                            experiments_version="v2", experiments_allocation={"e": w2},
                            experiments_params=params2, ts=2000.0 + i)
    store.add_events([{"type": "click", "request_id": "r2-1", "item_id": "x"}])
    store.close()


def test_a_mid_experiment_reweighting_is_reported_per_version_and_the_latest_analysed(
        tmp_path):
    """Weights edited mid-experiment (50/50 -> 90/10): the report pooled both periods,
    checked the sample ratio of all 140 units against the current 9:1 weights and
    flagged a mismatch (p ~ 7e-6) although each period split exactly as configured,
    and said nothing of the edit. Each version is listed with its own check against
    its own weights, and only the latest is analysed, with a note."""
    from api.ab_report import ab_summary, read_event_tables, read_experiments_configs
    db = tmp_path / "events.db"
    _store_two_versions(db, {"a": 1.0, "b": 1.0}, {"a": 9.0, "b": 1.0})
    exposures, events = read_event_tables(db)
    configs = read_experiments_configs(db)
    assert configs == {"v1": {"e": {"a": 1.0, "b": 1.0}}, "v2": {"e": {"a": 9.0, "b": 1.0}}}
    rep = ab_summary(exposures, events, "e", control="a", weights={"a": 9, "b": 1},
                     configs=configs)
    v = rep["versions"].set_index("version")
    assert v.index.tolist() == ["v1", "v2"]
    assert v["exposures"].tolist() == [40, 100] and v["units"].tolist() == [40, 100]
    assert v.loc["v1", "weights"] == {"a": 1.0, "b": 1.0}
    assert v["srm_p_value"].tolist() == [1.0, 1.0]          # each split as configured
    assert v["srm_mismatch"].tolist() == [False, False]
    assert v.loc["v1", "first_ts"] == pd.Timestamp(1000.0, unit="s", tz="UTC")
    assert v.loc["v2", "last_ts"] == pd.Timestamp(2099.0, unit="s", tz="UTC")
    assert v["analysed"].tolist() == [False, True] and rep["analysed_versions"] == ["v2"]
    assert rep["counts"].set_index("variant")["units"].to_dict() == {"a": 90, "b": 10}
    assert rep["srm"]["expected"] == {"a": 90.0, "b": 10.0} and not rep["srm"]["mismatch"]
    assert "['v1', 'v2']" in rep["note"] and "'v2' is analysed (100 of 140" in rep["note"]
    assert "pool_versions=True" in rep["note"]
    # pooled on request: every exposure, the check per version only
    pooled = ab_summary(exposures, events, "e", control="a", configs=configs,
                        pool_versions=True)
    assert pooled["counts"]["units"].sum() == 140 and pooled["srm"] is None
    assert pooled["versions"]["analysed"].all() and "pooled" in pooled["note"]
    # or one version picked
    first = ab_summary(exposures, events, "e", control="a", configs=configs, version="v1")
    assert first["analysed_versions"] == ["v1"]
    assert first["srm"]["expected"] == {"a": 20.0, "b": 20.0}
    assert "'v1' is analysed, as asked" in first["note"]
    with pytest.raises(InputError) as err:
        ab_summary(exposures, events, "e", configs=configs, version="v3")
    assert err.value.allowed == ["v1", "v2"]


def test_a_version_bump_with_the_same_allocation_is_pooled_without_a_note(tmp_path):
    """Only the version changed (weights 1:1, then 2:2: the same shares): nothing a unit
    saw changed, so both versions are analysed together as before, and listed."""
    from api.ab_report import ab_summary, read_event_tables, read_experiments_configs
    db = tmp_path / "events.db"
    _store_two_versions(db, {"a": 1.0, "b": 1.0}, {"a": 2.0, "b": 2.0}, b_every=2)
    exposures, events = read_event_tables(db)
    rep = ab_summary(exposures, events, "e", control="a",
                     configs=read_experiments_configs(db))
    assert rep["note"] is None and rep["analysed_versions"] == ["v1", "v2"]
    assert rep["counts"]["units"].sum() == 140
    assert rep["srm"]["expected"] == {"a": 70.0, "b": 70.0}
    assert rep["versions"]["version"].tolist() == ["v1", "v2"]


def test_a_variants_params_edited_between_versions_are_not_pooled(tmp_path):
    """Same weights, but the treatment arm's diversity changed with the version (0.5,
    then 0.8): the report pooled both periods as one arm (it read the weights only).
    Each version lists its params; only the latest is analysed, with a note; the same
    params under both versions pool as before."""
    from api.ab_report import (ab_summary, read_event_tables, read_experiments_configs,
                               read_experiments_params)
    db = tmp_path / "events.db"
    _store_two_versions(db, {"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0}, b_every=2,
                        params1={"e": {"b": {"diversity": 0.5}}},
                        params2={"e": {"b": {"diversity": 0.8}}})
    exposures, events = read_event_tables(db)
    params = read_experiments_params(db)
    assert params == {"v1": {"e": {"b": {"diversity": 0.5}}},
                      "v2": {"e": {"b": {"diversity": 0.8}}}}
    rep = ab_summary(exposures, events, "e", control="a",
                     configs=read_experiments_configs(db), params=params)
    v = rep["versions"].set_index("version")
    assert v.loc["v1", "params"] == {"b": {"diversity": 0.5}}
    assert rep["analysed_versions"] == ["v2"]
    assert "different params of its variants" in rep["note"]
    assert "each variant's treatment" in rep["note"]
    same = tmp_path / "same.db"
    _store_two_versions(same, {"a": 1.0, "b": 1.0}, {"a": 1.0, "b": 1.0}, b_every=2,
                        params1={"e": {"b": {"diversity": 0.5}}},
                        params2={"e": {"b": {"diversity": 0.5}}})
    exposures, events = read_event_tables(same)
    rep = ab_summary(exposures, events, "e", control="a",
                     configs=read_experiments_configs(same),
                     params=read_experiments_params(same))
    assert rep["note"] is None and rep["analysed_versions"] == ["v1", "v2"]


def test_exposures_from_before_versions_were_logged_are_one_unknown_version(tmp_path):
    """Rows with no experiments_version (an older server) are one version, 'unknown':
    alone, they are analysed against the weights passed in, as before; beside a
    recorded version, their allocation cannot be compared, so the latest is analysed."""
    import sqlite3

    from api.ab_report import ab_summary, read_event_tables, read_experiments_configs
    from api.events import EventStore
    db = tmp_path / "events.db"
    EventStore(db).close()
    con = sqlite3.connect(db)
    con.executemany(
        "INSERT INTO exposures (ts, request_id, unit, layer, experiment, variant, "
        "endpoint) VALUES (?, ?, ?, 'l', 'e', ?, 'complements')",
        [(float(i), f"old-{i}", f"o{i}", "ab"[i % 2]) for i in range(10)])
    con.commit()
    con.close()
    exposures, events = read_event_tables(db)
    assert read_experiments_configs(db) == {}
    rep = ab_summary(exposures, events, "e", control="a", weights={"a": 1, "b": 1},
                     configs=read_experiments_configs(db))
    assert rep["note"] is None and rep["analysed_versions"] == ["unknown"]
    assert rep["srm"]["expected"] == {"a": 5.0, "b": 5.0}
    store = EventStore(db)
    for i in range(4):
        store.add_exposures(f"new-{i}", f"n{i}", [("l", "e", "a", False)],
                            endpoint="complements", bundle_version=None,
                            rules_version=None, experiments_version="v2",
                            experiments_allocation={"e": {"a": 1.0}}, ts=100.0 + i)
    store.close()
    exposures, events = read_event_tables(db)
    rep = ab_summary(exposures, events, "e", control="a", weights={"a": 1, "b": 1},
                     configs=read_experiments_configs(db))
    assert rep["versions"]["version"].tolist() == ["unknown", "v2"]
    assert rep["versions"].set_index("version").loc["unknown", "weights"] is None
    assert rep["analysed_versions"] == ["v2"]
    assert "['unknown'] are not recorded" in rep["note"]
    pooled = ab_summary(exposures, events, "e", control="a", pool_versions=True,
                        configs=read_experiments_configs(db))
    assert pooled["counts"]["units"].sum() == 14
    assert ab_summary(exposures, events, "e", control="a",
                      version="unknown")["counts"]["units"].sum() == 10


def test_each_experiments_version_records_its_allocation_once(tmp_path):
    """The server keeps the weights of each experiments config version it logged
    exposures with, so a report can check each version's sample ratio after the file
    has been edited; the first record of a version stands."""
    from api.events import EventStore
    store = EventStore(tmp_path / "events.db")
    for i, alloc in enumerate([{"e": {"a": 1.0}}, {"e": {"a": 5.0}}]):
        store.add_exposures(f"r{i}", "u", [("l", "e", "a", False)], endpoint="c",
                            bundle_version=None, rules_version=None,
                            experiments_version="v1", experiments_allocation=alloc)
    store.add_exposures("r9", "u", [("l", "e", "a", False)], endpoint="c",
                        bundle_version=None, rules_version=None)
    assert store.query("SELECT version, allocation FROM experiments_configs") == [
        ("v1", '{"e": {"a": 1.0}}')]
    store.close()


def _experiment(units: dict[str, int], clicks: dict[str, int]):
    """Exposures of experiment ``e`` (one request per unit) and their clicks."""
    rows, events = [], []
    for v, n in units.items():
        for i in range(n):
            rows.append({"request_id": f"{v}{i}", "experiment": "e", "variant": v,
                         "unit": f"{v}-u{i}", "forced": 0})
            if i < clicks.get(v, 0):
                events.append({"request_id": f"{v}{i}", "type": "click"})
    return pd.DataFrame(rows), pd.DataFrame(events, columns=["request_id", "type"])


def test_explain_split_says_in_words_whether_units_split_as_configured():
    # before: the notebook printed "chi2 = 1.670, p = 0.1962: no mismatch" and left a
    # merchandiser to know what a chi-square and a p-value of a split are
    from api.ab_report import ab_summary, explain_split

    exposures, events = _experiment({"a": 500, "b": 500}, {})
    ok = explain_split(ab_summary(exposures, events, "e", control="a",
                                  weights={"a": 0.5, "b": 0.5}))
    assert "a 500 (50.0%), b 500 (50.0%); the config expects a 50.0%, b 50.0%" in ok
    assert "no sign of a sample-ratio mismatch (flagged below p = 0.001)" in ok
    exposures, events = _experiment({"a": 600, "b": 400}, {})
    bad = explain_split(ab_summary(exposures, events, "e", control="a",
                                   weights={"a": 0.5, "b": 0.5}))
    assert "SAMPLE-RATIO MISMATCH" in bad and "not comparable" in bad
    unchecked = explain_split(ab_summary(exposures, events, "e", control="a"))
    assert "not checked" in unchecked
    # config versions with different weights pooled: no one split to check against
    exposures["experiments_version"] = ["v1"] * 500 + ["v2"] * 500
    pooled = ab_summary(exposures, events, "e", control="a", pool_versions=True,
                        configs={"v1": {"e": {"a": 1, "b": 1}}, "v2": {"e": {"a": 3, "b": 1}}})
    assert pooled["srm"] is None
    assert "checked against its own weights in the versions table" in explain_split(pooled)


def test_explain_differences_reads_the_interval_for_each_variant():
    from api.ab_report import ab_summary, explain_differences

    exposures, events = _experiment({"a": 400, "b": 400, "c": 400},
                                    {"a": 40, "b": 120, "c": 44})
    text = explain_differences(ab_summary(exposures, events, "e", control="a"),
                               events=("click",)).splitlines()
    assert len(text) == 2                          # one line per variant beside control
    b, c = text
    assert b.startswith("click: b 30.0% of units vs a 10.0%, a difference of +20.0 points")
    assert "95% interval +" in b and b.endswith("b is higher; the interval leaves out 0.")
    assert c.startswith("click: c 11.0% of units vs a 10.0%, a difference of +1.0 points")
    assert "the interval includes 0" in c
    fewer = explain_differences(ab_summary(exposures, events, "e", control="b"),
                                events=("click",))
    assert "a is lower" in fewer and "c is lower" in fewer
