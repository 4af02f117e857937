"""Garment graph: candidates only, known edges, CSR export consistent with edges.parquet."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recommender.candidates import (IVFIndex, cooccurrence_matrix, exact_neighbours,
                                    neighbours_in)
from recommender.graph import (GraphConfig, ServingGraph, build_graph, graph_stats,
                               to_networkx)
from tests.faults import save_dies_half_way


def test_exact_neighbours_excludes_self_and_sorts():
    x = np.eye(4, dtype=np.float32)
    x[1] = [0.8, 0.6, 0, 0]
    idx, sim = exact_neighbours(x, x, 2, exclude=np.arange(4))
    assert idx[0, 0] == 1 and idx[1, 0] == 0
    assert (np.diff(sim, axis=1) <= 0).all()


def test_ivf_recall_against_exact():
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(40, 16))
    x = (centres[rng.integers(0, 40, 4000)] + 0.3 * rng.normal(size=(4000, 16)))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    q = np.arange(200)
    ex, _ = exact_neighbours(x[q], x, 10, exclude=q)
    ivf = IVFIndex(list_size=200, random_state=0).fit(x)
    ap, _ = ivf.search(x[q], 10, n_probe=3, exclude=q)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ap, ex)])
    assert recall > 0.9
    assert not (ap == q[:, None]).any()


def test_neighbours_in_switches_to_ivf_and_returns_catalogue_rows():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    base = np.arange(100, 600)
    nb, _ = neighbours_in(x, np.array([0, 150]), base, 5, exact_max=100, list_size=50)
    assert ((nb >= 100) | (nb == -1)).all() and 150 not in nb[1]


def test_cooccurrence_counts_each_outfit_once():
    m = cooccurrence_matrix(pd.DataFrame({"outfit_id": ["1", "1", "1", "2", "2"],
                                          "item_id": ["a", "b", "b", "a", "b"]}),
                            np.array(["a", "b"]))
    assert m.toarray().tolist() == [[0, 2], [2, 0]]


def test_build_scores_candidates_not_all_pairs():
    rng = np.random.default_rng(0)
    n = 400
    cats = np.array(["top", "bottom", "shoes", "bag"])[np.arange(n) % 4]
    cat = pd.DataFrame({"item_id": [f"i{i}" for i in range(n)], "category": cats,
                        "colour": "BLACK"})
    emb = rng.normal(size=(n, 8)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    pairing = {"top": ("bottom", "shoes", "bag"), "bottom": ("top", "shoes", "bag"),
               "shoes": ("top", "bottom"), "bag": ("top", "bottom")}
    calls = []

    def scorer(s, d, c):
        calls.append(len(s))
        return np.ones(len(s), dtype=np.float32)

    cfg = GraphConfig(k_compat=5, k_candidates=10, k_visual=5)
    res = build_graph(cat, emb, None, pairing, scorer=scorer, config=cfg)
    # 100 items per category; each scored against <= k_candidates per target category
    n_targets = sum(len(pairing[c]) for c in cats)
    assert sum(calls) <= n_targets * 10 < n * (n - 1) / 4
    s, d, _ = res.edges["compat"]
    assert (cat["category"].to_numpy()[s] != cat["category"].to_numpy()[d]).all()
    assert np.bincount(s, minlength=n).max() <= 5 * 3


def test_tiny_bundle_graph_files_and_known_edges(tiny_bundle):
    g = json.loads((tiny_bundle / "graph" / "graph.json").read_text())
    assert g["scorer"] == "content" and g["cooc_source"] == "train_outfits"
    edges = pd.read_parquet(tiny_bundle / "graph" / "edges.parquet")
    cooc = edges[edges.kind == "cooc"]
    # t1 and p1 share o1a only (o1b is held out)
    w = cooc[(cooc.src == "t1") & (cooc.dst == "p1")].weight
    assert w.tolist() == [1.0]
    assert cooc[(cooc.src == "t2") & (cooc.dst == "p2")].weight.tolist() == [2.0]
    cat = pd.read_parquet(tiny_bundle / "catalog.parquet")
    sg = ServingGraph(tiny_bundle / "graph", len(cat))
    i = int(np.flatnonzero(cat.item_id == "t2")[0])
    idx, wts = sg.row("compat", "bottom", i)
    assert cat.item_id[idx[0]] == "p2" and (np.diff(wts) <= 0).all()
    # CSR rows agree with the edges table
    e = edges[(edges.kind == "compat") & (edges.src == "t2")]
    e = e[e.dst.isin(cat.item_id[cat.category == "bottom"])]
    assert set(e.dst) == set(cat.item_id[idx])


def test_networkx_record(tiny_bundle):
    edges = pd.read_parquet(tiny_bundle / "graph" / "edges.parquet")
    g = to_networkx(edges)
    assert g.has_edge("t2", "p2", key="cooc")
    st = graph_stats(g)
    assert st["edges"] == len(edges) and st["components"] == 1


def test_graph_stage_is_idempotent(tiny_bundle):
    from recommender.bundle import Bundle
    from recommender.pipeline import BuildContext, run_stages

    b = Bundle.open(tiny_bundle)
    before = b.stage_record("graph")["finished"]
    msgs = []
    ctx = BuildContext(b, {"source": "test", "seed": 0, "quick": True,
                           "stages": {"graph": {"k_compat": 10, "k_visual": 10}}},
                       log=msgs.append)
    run_stages(ctx, ["graph"])
    assert any("up to date" in m for m in msgs)
    assert Bundle.open(tiny_bundle).stage_record("graph")["finished"] == before


def test_serving_graph_refuses_misaligned(tiny_bundle):
    from features.exceptions import BundleError

    with pytest.raises(BundleError, match="rebuild"):
        ServingGraph(tiny_bundle / "graph", 3)


def test_topk_rows_matches_a_full_sort_with_ties():
    from recommender.candidates import _topk_rows

    rng = np.random.default_rng(3)
    for t in range(200):
        m, n = int(rng.integers(1, 30)), int(rng.integers(1, 60))
        k = int(rng.integers(1, n + 3))
        sc = (rng.integers(0, 6, (m, n)) / 5).astype(np.float32)  # many ties
        if t % 4 == 0:
            sc[rng.random((m, n)) < 0.3] = -np.inf
        idx, val = _topk_rows(sc, k)
        assert (val == -np.sort(-sc, axis=1)[:, :min(k, n)]).all()
        assert (np.take_along_axis(sc, idx, 1) == val).all()
        # ties: lower column first
        same = val[:, 1:] == val[:, :-1]
        assert (idx[:, 1:][same] > idx[:, :-1][same]).all()


def test_topk_per_src_keeps_heaviest_by_source_ties_by_dst():
    from recommender.graph import _topk_per_src

    src = np.array([2, 0, 0, 2, 0, 2, 0])
    dst = np.array([5, 9, 1, 7, 4, 6, 3])
    w = np.array([0.5, 0.9, 0.2, 0.5, 0.9, 0.1, 0.2], dtype=np.float32)
    s, d, ww = _topk_per_src(src, dst, w, 2)
    assert s.tolist() == [0, 0, 2, 2]
    assert d.tolist() == [4, 9, 5, 7]  # 0.9 twice: dst 4 before 9; 0.5 twice: 5 before 7


def test_category_index_reused_across_batches_equals_one_search():
    from recommender.candidates import CategoryIndex

    rng = np.random.default_rng(2)
    x = rng.normal(size=(3000, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    base = np.arange(0, 3000, 2)
    ix = CategoryIndex(x, base, exact_max=500, list_size=100, n_probe=3)
    assert not ix.exact
    q = np.arange(0, 3000, 3)
    nb, sim = ix.search(x, q, 5)
    parts = [ix.search(x, q[s:s + 97], 5) for s in range(0, len(q), 97)]
    assert (np.concatenate([p[0] for p in parts]) == nb).all()
    assert (nb[nb >= 0] % 2 == 0).all() and not (nb == q[:, None]).any()
    assert (np.diff(sim, axis=1) <= 0).all()


def test_content_scorer_known_scores():
    from recommender.graph import ContentScorer

    emb = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [1, 0]], dtype=np.float32)
    colours = np.array(["RED", "RED", "BLUE", "BLACK", "GREEN"], dtype=object)
    sc = ContentScorer(emb, colours)
    w = sc(np.array([0, 0, 0, 2]), np.array([1, 2, 3, 4]), np.array([0.0, 0.0, 2.0, 0.0]))
    # same colour, cos 1; other colour, cos 0; neutral partner, cos 1, 2 outfits;
    # two different non-neutral colours, cos 0
    expected = [0.4 + 0.2, 0.2 + 0.1, 0.4 + 0.4 * (1 - np.exp(-1)) + 0.2, 0.2 + 0.1]
    assert np.allclose(w, expected, atol=1e-6)


def test_ivf_probes_are_the_nearest_lists():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3000, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ivf = IVFIndex(list_size=30, random_state=0).fit(x)  # 100 lists
    q = x[:500]
    full = np.argsort(-(q @ ivf.centroids_.T), axis=1, kind="stable")
    for n_probe in (1, 3, 10):  # repeated argmax (<= 8) and partition
        p = ivf.probes(q, n_probe, block=64)
        assert (np.diff(p, axis=1) > 0).all()
        assert (p == np.sort(full[:, :n_probe], axis=1)).all()


def test_write_edges_round_trip(tmp_path):
    from recommender.graph import GraphResult, write_edges

    ids = np.array(["a", "b", "c", "d"], dtype=object)
    res = GraphResult(ids, np.array(["top", "top", "bottom", "bag"], dtype=object),
                      {"compat": (np.array([0, 0, 2], np.int32), np.array([2, 3, 0], np.int32),
                                  np.array([0.9, 0.5, 0.7], np.float32)),
                       "cooc": (np.array([1], np.int32), np.array([2], np.int32),
                                np.array([3.0], np.float32)),
                       "visual": (np.zeros(0, np.int32),) * 2 + (np.zeros(0, np.float32),)},
                      {})
    write_edges(res, tmp_path / "e.parquet")
    e = pd.read_parquet(tmp_path / "e.parquet")
    assert e.astype({"src": str, "dst": str, "kind": str}).values.tolist() == [
        ["a", "c", 0.8999999761581421, "compat"], ["a", "d", 0.5, "compat"],
        ["c", "a", 0.699999988079071, "compat"], ["b", "c", 3.0, "cooc"]]


def test_ivf_scan_in_pieces_is_the_same_and_survives_a_degenerate_list(monkeypatch):
    """Many identical vectors (image-less items: one zero embedding) make one huge list;
    its scores are computed in pieces of SCORE_BLOCK, with the same neighbours."""
    import recommender.candidates as C

    rng = np.random.default_rng(3)
    x = rng.normal(size=(600, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x[:300] = 0.0  # half the items share one vector
    ivf = IVFIndex(list_size=50, random_state=0).fit(x)
    assert np.diff(ivf.offsets_).max() >= 300
    q = np.arange(0, 600, 3)
    want = ivf.search(x[q], 7, n_probe=3, exclude=q)
    monkeypatch.setattr(C, "SCORE_BLOCK", 500)  # a few queries per piece of the big list
    got = ivf.search(x[q], 7, n_probe=3, exclude=q)
    np.testing.assert_array_equal(got[0], want[0])
    # the same products, in smaller matrices: BLAS may round the last bit differently
    np.testing.assert_allclose(got[1], want[1], rtol=1e-6)
    assert not (got[0] == q[:, None]).any()  # a query never gets itself


@pytest.mark.parametrize("exact_max", [1000, 10])
def test_items_without_an_embedding_have_no_visual_neighbours_and_are_none(exact_max):
    """An all-zero embedding (no usable image) is nobody's neighbour and has none,
    on the exact and the IVF path."""
    from recommender.candidates import CategoryIndex

    rng = np.random.default_rng(5)
    emb = rng.normal(size=(60, 6)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    emb[::3] = 0.0
    ix = CategoryIndex(emb, np.arange(60), exact_max=exact_max, list_size=8)
    nb, sim = ix.search(emb, np.arange(60), 5)
    assert (nb[::3] == -1).all() and np.isneginf(sim[::3]).all()
    found = nb[nb >= 0]
    assert len(found) and not np.isin(found, np.arange(0, 60, 3)).any()
    assert (nb[1::3] >= 0).all()  # every item with an embedding still gets 5


def _small_result():
    from recommender.graph import GraphResult

    ids = np.array(["a", "b", "c", "d"], dtype=object)
    return GraphResult(ids, np.array(["top", "top", "bottom", "bag"], dtype=object),
                       {"compat": (np.array([0, 0, 2], np.int32), np.array([2, 3, 0], np.int32),
                                   np.array([0.9, 0.5, 0.7], np.float32)),
                        "cooc": (np.array([1], np.int32), np.array([2], np.int32),
                                 np.array([3.0], np.float32))},
                       {})


def test_edges_cut_short_by_a_failure_leave_the_old_file(tmp_path, monkeypatch):
    # before: edges.parquet was written in place and the writer closed on the way out
    # of an error, so a build dying after the first kind left a valid parquet holding
    # only the compat edges: read as the whole graph of record
    import pyarrow.parquet as pq

    from recommender.graph import write_edges

    write_edges(_small_result(), tmp_path / "e.parquet")
    before = pd.read_parquet(tmp_path / "e.parquet")
    real = pq.ParquetWriter.write_table
    calls = []

    def dies_on_the_second(self, table, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real(self, table, *a, **k)

    monkeypatch.setattr(pq.ParquetWriter, "write_table", dies_on_the_second)
    with pytest.raises(OSError, match="No space"):
        write_edges(_small_result(), tmp_path / "e.parquet")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "e.parquet"), before)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["e.parquet"]


def test_serving_arrays_cut_short_by_a_failure_are_not_left_half(tmp_path, monkeypatch):
    # before: each CSR array was np.save'd in place: a build dying mid-array left a
    # file whose header promises more than it holds under the array's own name
    from recommender.graph import export_serving_arrays

    written = export_serving_arrays(_small_result(), tmp_path)
    before = {p.name: np.load(p) for p in written}
    # the fourth array is cut half way
    monkeypatch.setattr(np, "save", save_dies_half_way(np.save, fail_on=4))
    with pytest.raises(OSError, match="No space"):
        export_serving_arrays(_small_result(), tmp_path)
    monkeypatch.undo()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before)
    for name, arr in before.items():
        assert np.array_equal(np.load(tmp_path / name), arr), name


def test_graph_json_cut_short_by_a_failure_leaves_the_old_one(tiny_bundle, tmp_path,
                                                              monkeypatch):
    # before: graph.json was written in place, last of the graph stage's files
    import pathlib
    import shutil

    from recommender.bundle import Bundle
    from recommender.pipeline import BuildContext, run_stages

    root = tmp_path / "b"
    shutil.copytree(tiny_bundle, root)
    before = json.loads((root / "graph" / "graph.json").read_text())
    real = pathlib.Path.write_text

    def dies_half_way(self, text, *a, **k):
        if self.name.startswith(".graph.json") or self.name == "graph.json":
            real(self, text[:len(text) // 2], *a, **k)
            raise OSError(28, "No space left on device")
        return real(self, text, *a, **k)

    monkeypatch.setattr(pathlib.Path, "write_text", dies_half_way)
    ctx = BuildContext(Bundle.open(root), {"source": "test", "seed": 0, "quick": True,
                                           "stages": {"graph": {"k_compat": 10,
                                                                "k_visual": 10}}},
                       force=True, log=lambda m: None)
    with pytest.raises(OSError, match="No space"):
        run_stages(ctx, ["graph"])
    monkeypatch.undo()
    assert json.loads((root / "graph" / "graph.json").read_text()) == before
    assert not [p.name for p in (root / "graph").iterdir() if p.name.startswith(".")]


def two_piece_tables(n: int):
    """A validated catalogue of n tops and n bottoms, n outfits, unit embeddings."""
    from recommender.catalog import validate_catalog

    ids = [f"t{i}" for i in range(n)] + [f"p{i}" for i in range(n)]
    cat = pd.DataFrame({"item_id": ids,
                        "category": ["top"] * n + ["bottom"] * n, "subcategory": "",
                        "colour": "RED", "material": "", "gender": "Female",
                        "image_path": ""})
    cat, report = validate_catalog(cat, check_images=False)
    assert report.ok
    outfits = pd.DataFrame([(f"o{i}", x) for i in range(n) for x in (f"t{i}", f"p{i}")],
                           columns=["outfit_id", "item_id"])
    emb = np.random.default_rng(n).normal(size=(2 * n, 8)).astype(np.float32)
    return cat, outfits, emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_bundle_from_tables_dying_mid_write_leaves_the_old_tables(tmp_path, monkeypatch):
    # before: the tables and embeddings.npy were written in place, one after another:
    # a rebuild dying while saving the embeddings left the new catalogue beside a
    # half array
    from recommender.build import bundle_from_tables
    from recommender.bundle import Bundle

    b = bundle_from_tables(tmp_path / "b", *two_piece_tables(4), config={"quick": True})
    cat_before = pd.read_parquet(b.path("catalog.parquet"))
    emb_before = np.load(b.path("features", "embeddings.npy"))
    monkeypatch.setattr(np, "save", save_dies_half_way(np.save, fail_on=1))
    with pytest.raises(OSError, match="No space"):
        bundle_from_tables(tmp_path / "b", *two_piece_tables(6), config={"quick": True})
    monkeypatch.undo()
    pd.testing.assert_frame_equal(pd.read_parquet(b.path("catalog.parquet")), cat_before)
    assert np.array_equal(np.load(b.path("features", "embeddings.npy")), emb_before)
    Bundle.open(b.root).check_complete()  # nothing renamed in: it serves as before


def test_bundle_from_tables_into_a_bundle_marks_it_until_the_graph_is_built(tmp_path,
                                                                          monkeypatch):
    # before: the new tables were renamed in over a complete bundle without the
    # building mark, so a loader reading then took the new catalogue beside the old
    # graph (or the new catalogue beside the old embeddings) for a complete bundle
    from features.exceptions import BundleError
    from recommender import build
    from recommender.bundle import Bundle

    b = build.bundle_from_tables(tmp_path / "b", *two_piece_tables(4),
                                 config={"quick": True})
    Bundle.open(b.root).check_complete()
    seen = []
    real_run_stages = build.run_stages

    def run_stages_seeing_the_bundle(ctx, names):
        # the tables are in place and the graph not yet rebuilt: what a loader sees
        assert len(pd.read_parquet(ctx.bundle.path("catalog.parquet"))) == 12
        try:
            Bundle.open(ctx.bundle.root).check_complete()
            seen.append("complete")
        except BundleError as exc:
            seen.append(str(exc))
        return real_run_stages(ctx, names)

    monkeypatch.setattr(build, "run_stages", run_stages_seeing_the_bundle)
    build.bundle_from_tables(tmp_path / "b", *two_piece_tables(6), config={"quick": True})
    assert len(seen) == 1 and "being built" in seen[0]
    again = Bundle.open(b.root)
    again.check_complete()  # the graph of the new tables finished: loadable again
    assert again.stage_record("graph") is not None


def test_a_rules_edit_leaves_the_graph_current_unless_it_changes_the_pairing(tiny_bundle,
                                                                            tmp_path):
    # before: the graph's inputs hashed the whole rules file, so a merchandiser's edit
    # (an excluded id) made `mixmatch build` rebuild the graph and a stage command call
    # it out of date, although the graph reads only the pairing matrix of the rules
    import shutil

    from recommender.bundle import Bundle
    from recommender.pipeline import BuildContext, out_of_date_after, run_stages
    from recommender.rules import default_rules, save_rules
    from recommender.tuning import apply_edits

    root = tmp_path / "b"
    shutil.copytree(tiny_bundle, root)
    b = Bundle.open(root)
    before = b.stage_record("graph")
    config = {"source": "test", "seed": 0, "quick": True,
              "stages": {"graph": {"k_compat": 10, "k_visual": 10}}}
    raw = default_rules().raw
    save_rules(apply_edits(raw, {"filters": {"exclude_ids": ["t0"]}}),
               b.path("rules", "rules.toml"))
    ctx = BuildContext(b, config, log=lambda m: None)
    assert out_of_date_after(ctx, ["compatibility"]) == []
    run_stages(ctx, ["graph"])
    assert Bundle.open(root).stage_record("graph") == before  # skipped: up to date

    save_rules(apply_edits(raw, {"pairing": {"top": ["bottom"]}}),
               b.path("rules", "rules.toml"))
    assert out_of_date_after(ctx, ["compatibility"]) == ["graph"]
    run_stages(ctx, ["graph"])
    assert Bundle.open(root).stage_record("graph")["inputs_hash"] != before["inputs_hash"]


def test_bundle_from_tables_refuses_a_bundle_its_other_stages_built(tmp_path):
    # before: over a real build it renamed its tables in beside the build's features
    # and models and left the ingest, split and features records naming the files it
    # had replaced: the graph it had just built was reported stale, `mixmatch build`
    # then skipped split (its output still there) and trained on all the outfits
    from features.exceptions import BundleError
    from recommender.build import bundle_from_tables
    from recommender.bundle import Bundle

    b = bundle_from_tables(tmp_path / "b", *two_piece_tables(4), config={"quick": True})
    b.record_stage("ingest", inputs_hash="a", outputs=["catalog.parquet"])  # a build's
    manifest = b.path("manifest.json").read_text()
    cat_before = pd.read_parquet(b.path("catalog.parquet"))
    with pytest.raises(BundleError, match=r"built by the stages graph, ingest; .*"
                                          r"folder of its own"):
        bundle_from_tables(tmp_path / "b", *two_piece_tables(6), config={"quick": True})
    assert b.path("manifest.json").read_text() == manifest  # as it was, source included
    pd.testing.assert_frame_equal(pd.read_parquet(b.path("catalog.parquet")), cat_before)
    Bundle.open(b.root).check_complete()


@pytest.mark.parametrize("table, said", [
    ("k_visual = \"five\"", "[stages.graph] k_visual must be a whole number >= 0, got "
                            "'five'"),
    ("k_visual = -3", "[stages.graph] k_visual must be a whole number >= 0, got -3"),
    ("k_popular = 0", "[stages.graph] k_popular must be a whole number >= 1, got 0"),
    ("n_probe = 1.5", "[stages.graph] n_probe must be a whole number >= 1, got 1.5"),
    ("k_visul = 5", "unknown [stages.graph] setting 'k_visul' (allowed: chunk, exact_max"),
])
def test_graph_settings_are_checked_before_the_graph_is_rebuilt(tmp_path, capsys, table,
                                                                 said):
    # before: a string was a TypeError traceback after the stage had started (exit 1),
    # k_popular = 0 an IndexError traceback, a negative count built a smaller graph
    # and exited 0, and an unknown (misspelt) setting was ignored: "up to date"
    from api.cli import main
    from tests.recommender.tiny_bundle import make_tiny_bundle

    bundle = make_tiny_bundle(tmp_path / "bundle")
    before = json.loads((bundle / "manifest.json").read_text())["stages"]["graph"]
    cfg = tmp_path / "graph.toml"
    cfg.write_text(f"[stages.graph]\n{table}\n")
    assert main(["graph", "--bundle", str(bundle), "--config", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert f"mixmatch graph: error: {said}" in err and "Traceback" not in err, err
    assert json.loads((bundle / "manifest.json").read_text())["stages"]["graph"] == before


def test_a_tables_bundle_keeps_its_graph_config_for_the_graph_command(tmp_path, capsys):
    # before: the config the tables' graph was built with was not written into the
    # manifest, so `mixmatch graph --bundle` saw the defaults and rebuilt the graph
    # with them (k_visual 5 -> 20)
    from api.cli import main
    from recommender.build import bundle_from_tables
    from recommender.bundle import Bundle

    config = {"quick": True, "stages": {"graph": {"k_visual": 5}}}
    b = bundle_from_tables(tmp_path / "b", *two_piece_tables(4), config=config)
    assert Bundle.open(b.root).manifest["config"]["stages"] == {"graph": {"k_visual": 5}}
    assert main(["graph", "--bundle", str(b.root), "--dry-run"]) in (0, None)
    plan = capsys.readouterr().out
    assert "graph" in plan and "up to date" in plan and "would run" not in plan
