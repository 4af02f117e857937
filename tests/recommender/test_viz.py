"""Pictures: thumbnails with a known layout, grids with the right cells and frames,
plots carrying the numbers they were given."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from matplotlib.colors import to_rgba
from PIL import Image

from recommender import viz


@pytest.fixture
def images(tmp_path):
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "red.png")
    (tmp_path / "broken.jpg").write_bytes(b"not an image")
    cat = pd.DataFrame({"item_id": ["r", "b", "m", "n"],
                        "category": ["bag", "top", "shoes", "bottom"],
                        "colour": ["RED", "BLUE", "BLACK", "WHITE"],
                        "subcategory": ["Tote", "Shirt", "Boots", "Jeans"],
                        "image_path": ["red.png", "broken.jpg", "missing.png", ""]})
    return viz.ItemImages(cat, tmp_path, size=32)


def png_bytes(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def test_thumbnail_is_letterboxed_on_white(images):
    img = images.get("r")
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    # 40x20 scaled to 32x16, centred: rows 8..23 red, the rest white
    assert (img[8:24] == [255, 0, 0]).all()
    assert (img[:8] == 255).all() and (img[24:] == 255).all()


def test_thumbnail_of_a_turned_photo_is_upright(tmp_path):
    """A photo with an EXIF orientation tag is shown as the pipeline read it."""
    from tests.features.synth import turned_photo

    turned_photo(tmp_path / "t.jpg")                     # upright: 40 wide, 80 high
    img = viz.ItemImages(pd.DataFrame({"item_id": ["t"], "category": ["top"],
                                       "image_path": ["t.jpg"]}), tmp_path, size=32).get("t")
    # 16 x 32 centred between white side bands, its dark band on top
    assert (img[:, :7] == 255).all() and (img[:, 25:] == 255).all()
    assert img[:7, 9:23].mean() < 40 and img[12:, 9:23].mean() > 215


@pytest.mark.parametrize("item", ["b", "m", "n", "unknown"])
def test_missing_or_broken_photo_is_a_grey_placeholder(images, item):
    assert (images.get(item) == 225).all()


def test_an_image_the_decoder_refuses_is_a_placeholder_not_the_end_of_the_sheet(tmp_path):
    """An ingest run with --no-check-images lets any file through: one the decoder
    refuses (a header past PIL's pixel limit raises DecompressionBombError, 32-bit
    samples UnsupportedMediaType: neither an OSError) is a grey tile, and the sheet
    goes on."""
    from tests.features.synth import oversized_png

    oversized_png(tmp_path / "bomb.png")
    Image.fromarray(np.zeros((8, 8), np.float32), "F").save(tmp_path / "float.tif")
    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "red.png")
    cat = pd.DataFrame({"item_id": ["bomb", "float", "r"], "category": ["top"] * 3,
                        "image_path": ["bomb.png", "float.tif", "red.png"]})
    images = viz.ItemImages(cat, tmp_path, size=32)
    assert (images.get("bomb") == 225).all()
    assert (images.get("float") == 225).all()
    fig = viz.grid([("tops", [{"item_id": i} for i in ("bomb", "float", "r")])], images)
    assert len(fig.axes) == 3


def test_thumbnail_of_an_image_past_pils_warning_size_is_shown(tmp_path, monkeypatch):
    """Decoded (only past twice PIL's warning size is an image refused), without the
    DecompressionBombWarning that under warnings-as-errors made it a placeholder."""
    import warnings

    Image.new("RGB", (40, 20), (255, 0, 0)).save(tmp_path / "red.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)
    images = viz.ItemImages(pd.DataFrame({"item_id": ["r"], "category": ["bag"],
                                          "image_path": ["red.png"]}), tmp_path, size=32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert (images.get("r")[8:24] == [255, 0, 0]).all()


def test_label(images):
    assert images.label("r") == "red tote"
    assert images.label("unknown") == "unknown"


def test_grid_cells_captions_and_frames(images):
    fig = viz.grid([("row a", [{"item_id": "r", "score": 0.91, "reason": "goes with it",
                                "mark": "added"},
                               {"item_id": "b"}, {"item_id": "m", "mark": "removed"}]),
                    ("row b", [{"item_id": "n"}])], images, title="t")
    assert len(fig.axes) == 6
    first = fig.axes[0]
    assert "0.91" in first.get_xlabel() and "goes with it" in first.get_xlabel()
    assert first.get_ylabel() == "row a"
    assert to_rgba(first.spines["top"].get_edgecolor()) == to_rgba(viz.MARK_COLOURS["added"])
    assert to_rgba(fig.axes[2].spines["top"].get_edgecolor()) == to_rgba(
        viz.MARK_COLOURS["removed"])
    # row b has one photo: its other cells are blank
    assert not fig.axes[4].spines["top"].get_visible()
    assert png_bytes(fig).startswith(b"\x89PNG")


def test_rules_diff_figure_marks_added_and_removed(images):
    diff = pd.DataFrame([
        {"item_id": "b", "category": "bag", "before": ["r", "m"], "after": ["m", "n"],
         "added": ["n"], "removed": ["r"], "changed": True},
        {"item_id": "b", "category": "shoes", "before": ["m"], "after": ["m"],
         "added": [], "removed": [], "changed": False}])
    fig = viz.rules_diff_figure(diff, images)
    assert len(fig.axes) == 4                      # before and after rows of 2
    before_r, after_n = fig.axes[0], fig.axes[3]
    assert "removed" in before_r.get_xlabel()
    assert to_rgba(before_r.spines["left"].get_edgecolor()) == to_rgba(
        viz.MARK_COLOURS["removed"])
    assert to_rgba(after_n.spines["left"].get_edgecolor()) == to_rgba(
        viz.MARK_COLOURS["added"])
    assert len(viz.rules_diff_figure(diff, images, only_changed=False).axes) == 8


def test_complements_and_looks_figures(images):
    resp = {"item_id": "b", "items": ["b"], "rules_version": "7",
            "groups": [{"category": "bag", "items": [
                {"item_id": "r", "score": 0.5, "reason": "x", "pinned": True,
                 "fallback": False}]},
                {"category": "shoes", "items": []}]}
    fig = viz.complements_figure(resp, images)
    assert len(fig.axes) == 3 and "rules 7" in fig._suptitle.get_text()
    assert "pinned" in fig.axes[1].get_xlabel()
    looks = {"items": ["b"], "looks": [{"score": 0.7, "items": [
        {"item_id": "b", "given": True}, {"item_id": "n", "given": False}]}]}
    fig = viz.looks_figure(looks, images)
    assert len(fig.axes) == 2 and "0.70" in fig.axes[0].get_ylabel()
    # a look with nothing added has no score (None): the figure says so
    alone = {"items": ["b"], "looks": [{"score": None, "items": [
        {"item_id": "b", "given": True}]}]}
    assert "no score" in viz.looks_figure(alone, images).axes[0].get_ylabel()


def test_calibration_figure_plots_the_bins():
    bins = pd.DataFrame({"lo": [0.0, 0.5], "hi": [0.5, 1.0], "n": [3.0, 1.0],
                         "mean_score": [0.2, 0.8], "positive_rate": [0.1, 0.9]})
    fig = viz.calibration_figure(bins, base_rate=0.5)
    lines = {l.get_label(): l for l in fig.axes[0].get_lines()}
    assert list(lines["model"].get_xdata()) == [0.2, 0.8]
    assert list(lines["model"].get_ydata()) == [0.1, 0.9]
    assert [p.get_height() for p in fig.axes[1].patches] == [3.0, 1.0]


def test_ab_figures_from_a_report():
    from api.ab_analysis import variant_report

    exp = pd.DataFrame({"request_id": [f"r{i}" for i in range(8)], "experiment": "e",
                        "variant": ["a"] * 4 + ["b"] * 4, "unit": [f"u{i}" for i in range(8)]})
    ev = pd.DataFrame({"request_id": ["r4", "r5", "r0"], "type": ["click"] * 3})
    rep = variant_report(exp, ev, "e", "a", {"a": 1, "b": 1})
    fig = viz.ab_rates_figure(rep["variants"], "a")
    assert len(fig.axes) == 6 and "(95% CI)" in fig.axes[0].get_title()
    rep90 = variant_report(exp, ev, "e", "a", {"a": 1, "b": 1}, confidence=0.9)
    fig = viz.ab_rates_figure(rep90["variants"], "a", confidence=0.9)
    assert {ax.get_title().split("(")[-1] for ax in fig.axes} == {"90% CI)"}
    counts = pd.DataFrame({"variant": ["a", "b"], "units": [4, 4]})
    fig = viz.ab_counts_figure(counts, rep["srm"])
    assert [p.get_height() for p in fig.axes[0].patches] == [4, 4]
    assert "p=1" in fig.axes[0].get_title()
    assert png_bytes(fig).startswith(b"\x89PNG")


def test_importance_and_metrics_figures():
    from recommender.report import importance_tables

    fig = viz.importance_figure(importance_tables({"a": 2.0, "b": 1.0}, {"a": "g", "b": "h"}))
    assert len(fig.axes) == 2
    table = pd.DataFrame({"scorer": ["model", "random"], "fitb": [0.6, 0.25],
                          "auc": [0.8, None]})
    fig = viz.metrics_figure(table, ["fitb", "auc"], title="m", chance={"auc": 0.5})
    heights = [p.get_height() for p in fig.axes[0].patches]
    assert heights[:2] == [0.6, 0.8] and heights[2] == 0.25 and np.isnan(heights[3])


def test_rules_diff_figure_says_when_it_leaves_groups_out(images):
    # before: past max_rows (8) changed groups the figure cut the rest silently; on the
    # tuning notebook's two MANGO items 10 groups changed and the second item's bag and
    # accessory changes were in no picture, with nothing saying so
    diff = pd.DataFrame([
        {"item_id": "b", "category": c, "before": ["r"], "after": ["n"],
         "added": ["n"], "removed": ["r"], "changed": True}
        for c in ("bag", "shoes", "bottom")])
    fig = viz.rules_diff_figure(diff, images, max_rows=2)
    assert len(fig.axes) == 4                      # 2 groups x (before, after)
    assert "first 2 of 3 changed groups" in fig._suptitle.get_text()
    assert "max_rows=3" in fig._suptitle.get_text()
    whole = viz.rules_diff_figure(diff, images, max_rows=3)
    assert len(whole.axes) == 6 and "of 3" not in whole._suptitle.get_text()


def test_metrics_figure_colours_a_scorer_alike_and_keeps_the_legend_off_the_bars():
    # before: bar colours went by row position, and the model report's second figure
    # (a pivot, rows sorted by name) drew the model orange after a first drawing it
    # blue; the legend sat inside the axes, over the model's AUC bars near 1
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    def colours(table):
        fig = viz.metrics_figure(table, ["fitb"], title="m")
        return fig, {t.get_text(): to_rgba(h.get_facecolor()) for t, h in
                     zip(fig.axes[0].get_legend().get_texts(), fig.axes[0].patches)}

    ordered = pd.DataFrame({"scorer": ["model", "cooccurrence", "random"],
                            "fitb": [0.9, 0.7, 0.2]})
    fig, first = colours(ordered)
    _, second = colours(ordered.sort_values("fitb"))
    assert first == second
    assert first["model"] == to_rgba(viz.SCORER_COLOURS["model"])
    FigureCanvasAgg(fig).draw()
    legend = fig.axes[0].get_legend().get_window_extent()
    assert legend.x0 >= fig.axes[0].get_window_extent().x1


def test_ab_counts_figure_keeps_the_legend_off_the_expected_marks():
    # before: the legend sat in the axes' best corner, which for a split near the
    # weights was over the first variant's red expected-count mark
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    counts = pd.DataFrame({"variant": ["control", "visual"], "units": [88, 106]})
    srm = {"chi2": 1.67, "p_value": 0.196, "mismatch": False,
           "expected": {"control": 97.0, "visual": 97.0}}
    fig = viz.ab_counts_figure(counts, srm)
    FigureCanvasAgg(fig).draw()
    ax = fig.axes[0]
    assert ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1
