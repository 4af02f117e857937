"""The canonical catalogue's error reports, on bad files written here."""
import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from recommender.catalog import (CATEGORIES, CatalogError, catalog_summary, load_catalog,
                                 validate_catalog, validate_outfits)


def _jpeg_bytes(seed=0) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray((rng.random((40, 30, 3)) * 255).astype("uint8")).save(buf, "JPEG")
    return buf.getvalue()


def _rows(n=4, **over):
    df = pd.DataFrame({
        "item_id": [f"i{k}" for k in range(n)],
        "category": ["top", "bottom", "shoes", "bag"][:n],
        "subcategory": ["Shirt", "Jeans", "Footwear", "Bags"][:n],
        "colour": ["WHITE", "BLUE", "GREY", "BROWN"][:n],
        "material": [""] * n, "gender": ["Female"] * n,
        "image_path": [f"img/i{k}.jpg" for k in range(n)],
    })
    for k, v in over.items():
        df[k] = v
    return df


@pytest.fixture
def image_dir(tmp_path):
    (tmp_path / "img").mkdir()
    return tmp_path


def test_good_catalogue_loads_with_images(image_dir):
    for k in range(4):
        (image_dir / "img" / f"i{k}.jpg").write_bytes(_jpeg_bytes(k))
    cat, report = validate_catalog(_rows(), image_dir)
    assert report.ok and report.row_issues == []
    assert cat["image_ok"].tolist() == [True] * 4


def test_missing_column_is_named(tmp_path):
    path = tmp_path / "cat.csv"
    _rows().drop(columns=["colour"]).to_csv(path, index=False)
    with pytest.raises(CatalogError) as exc:
        load_catalog(path)
    assert "missing required column(s): colour" in str(exc.value)
    assert "columns present: item_id, category" in str(exc.value)


def test_csv_with_a_blank_price_loads_as_unknown_price(tmp_path):
    # a valid catalogue with one unpriced item, written to CSV (NaN -> empty cell)
    cat, report = validate_catalog(_rows(price=[10.0, np.nan, 30.0, 5.5]),
                                   check_images=False)
    assert report.ok
    path = tmp_path / "cat.csv"
    cat.to_csv(path, index=False)
    back = load_catalog(path)
    assert back["price"].tolist()[::2] == [10.0, 30.0] and np.isnan(back["price"][1])
    path.write_text(path.read_text().replace("30.0", "thirty"))
    with pytest.raises(CatalogError, match="non-numeric price in 1 row.*'thirty'"):
        load_catalog(path)


def test_csv_rows_longer_than_the_header_are_refused_not_shifted(tmp_path):
    from features.exceptions import InputError
    path = tmp_path / "cat.csv"
    _rows().to_csv(path, index=False)
    lines = path.read_text().splitlines()
    path.write_text("\n".join(lines[:1] + [ln + ",extra" for ln in lines[1:]]) + "\n")
    with pytest.raises(InputError, match="cat.csv: its rows have more fields") as exc:
        load_catalog(path)
    assert exc.value.field == "catalog"


def test_duplicate_ids_listed_with_counts(tmp_path):
    path = tmp_path / "cat.csv"
    df = _rows()
    df["item_id"] = ["a", "b", "a", "a"]
    df.to_csv(path, index=False)
    with pytest.raises(CatalogError) as exc:
        load_catalog(path)
    assert exc.value.report.duplicate_ids == {"a": 3}
    assert "a (x3)" in str(exc.value)


def test_unknown_categories_named_with_the_allowed_set(tmp_path):
    path = tmp_path / "cat.csv"
    _rows(category=["top", "hat", "hat", "sock"]).to_csv(path, index=False)
    with pytest.raises(CatalogError) as exc:
        load_catalog(path)
    msg = str(exc.value)
    assert "'hat' (2 rows)" in msg and "'sock' (1 rows)" in msg
    assert "allowed: " + ", ".join(CATEGORIES) in msg


def test_all_errors_reported_together(tmp_path):
    df = _rows(category=["top", "hat", "top", "top"])
    df["item_id"] = ["a", "a", "b", "c"]
    _, report = validate_catalog(df, tmp_path, check_images=False)
    assert len(report.errors) == 2 and not report.ok


def test_bad_images_listed_per_row_and_the_rest_loads(image_dir):
    good = _jpeg_bytes(1)
    (image_dir / "img" / "i0.jpg").write_bytes(good)
    (image_dir / "img" / "i1.jpg").write_bytes(good[: len(good) // 2])   # truncated
    (image_dir / "img" / "i2.jpg").write_bytes(b"\x00garbage" * 50)      # not an image
    # i3.jpg is missing
    path = image_dir / "cat.csv"
    _rows().to_csv(path, index=False)
    cat = load_catalog(path, image_dir, check_images=True)
    assert len(cat) == 4
    assert cat["image_ok"].tolist() == [True, False, False, False]
    _, report = validate_catalog(_rows(), image_dir)
    assert report.ok
    issues = dict(report.row_issues)
    assert set(issues) == {"i1", "i2", "i3"}
    assert "unreadable" in issues["i1"] and "truncated" in issues["i1"]
    assert "unreadable" in issues["i2"]
    assert "not found" in issues["i3"]
    text = report.summary()
    assert "3 row(s) with image problems" in text and "item i3" in text


def test_an_image_past_the_decoders_limit_is_a_row_issue_not_a_crash(image_dir):
    """One giant (or bomb) image must not end the ingest with PIL's traceback: it is
    listed with its row, like a corrupt file, and the rest loads."""
    from tests.features.synth import oversized_png

    (image_dir / "img" / "i0.jpg").write_bytes(_jpeg_bytes(1))
    oversized_png(image_dir / "img" / "i1.png")
    df = _rows(2, image_path=["img/i0.jpg", "img/i1.png"])
    cat, report = validate_catalog(df, image_dir)
    assert report.ok and cat["image_ok"].tolist() == [True, False]
    issues = dict(report.row_issues)
    assert set(issues) == {"i1"}
    assert "unreadable" in issues["i1"] and "225000000 pixels" in issues["i1"]


def test_an_image_past_pils_warning_size_is_checked_without_the_warning(image_dir,
                                                                          monkeypatch):
    """Between PIL's warning size and twice it an image is decoded (the features stage
    shrinks it): the ingest checks it without PIL's DecompressionBombWarning, which
    was printed per image and, under warnings-as-errors, ended the ingest."""
    import warnings

    (image_dir / "img" / "i0.jpg").write_bytes(_jpeg_bytes(1))     # 40 x 30
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cat, report = validate_catalog(_rows(1, image_path=["img/i0.jpg"]), image_dir)
    assert report.ok and cat["image_ok"].tolist() == [True] and not report.row_issues


def test_empty_image_path_means_no_image_not_an_error(image_dir):
    _, report = validate_catalog(_rows(1, image_path=[""]), image_dir)
    assert report.ok and report.row_issues == []


def test_outfits_naming_unknown_items_are_dropped_and_said():
    out, problems = validate_outfits(
        pd.DataFrame({"outfit_id": [1, 1, 2], "item_id": ["a", "x", "a"]}), ["a"])
    assert out.to_dict("list") == {"outfit_id": ["1", "2"], "item_id": ["a", "a"]}
    assert "1 outfit row(s)" in problems[0] and "x" in problems[0]


def test_summary_counts_categories_and_outfit_sizes():
    cat, _ = validate_catalog(_rows(), check_images=False)
    outfits = pd.DataFrame({"outfit_id": ["1", "1", "2", "2", "2"],
                            "item_id": ["i0", "i1", "i0", "i1", "i2"]})
    text = catalog_summary(cat, outfits)
    assert "items: 4" in text and "price: none" in text
    assert "outfits: 2, items per outfit: min 2, median 2, max 3" in text


def test_in_stock_blanks_and_unknown_words_are_named_with_the_allowed_words(tmp_path):
    """A blank in_stock cell is neither in nor out of stock: named with an item and the
    fix (it read "got <NA>"); an unknown word names the item and the words allowed."""
    df = _rows(in_stock=["yes", "", "ja", pd.NA])
    _, report = validate_catalog(df, tmp_path, check_images=False)
    blank, word = report.errors
    assert blank.startswith("in_stock is blank in 2 row(s), e.g. item i1:")
    assert "leave the column out when stock is not known" in blank
    assert word.startswith("in_stock 'ja' is not a stock value in 1 row(s), e.g. item i2;")
    assert "1, t, true, y, yes (in stock)" in word and "true_values, false_values" in word
    cat, report = validate_catalog(_rows(in_stock=[" Yes", "no", "T", "0"]), tmp_path,
                                   check_images=False)
    assert report.ok and cat["in_stock"].tolist() == [True, False, True, False]


#: Image options the ingest stage's table refuses, each with its message less the
#: table's name (``[stages.ingest] ``) and what it did before the functions checked it.
BAD_IMAGE_OPTIONS = [
    # before: opened no image and flagged every row with a path usable
    ("image_sample", 0, "image_sample must be a whole number >= 1, got 0"),
    # before: numpy's ValueError (a negative number of samples)
    ("image_sample", -3, "image_sample must be a whole number >= 1, got -3"),
    # before: numpy's TypeError (a float number of samples), 2.0 too
    ("image_sample", 2.5, "image_sample must be a whole number >= 1, got 2.5"),
    ("image_sample", 2.0, "image_sample must be a whole number >= 1, got 2.0"),
    # before: a TypeError comparing a string with the row count
    ("image_sample", "ten", "image_sample must be a whole number >= 1, got 'ten'"),
    # before: opened one image
    ("image_sample", True, "image_sample must be a whole number >= 1, got True"),
    # before: bool("false") is true: every image opened; 0 and None opened none
    ("check_images", "false", "check_images must be true or false, got 'false'"),
    ("check_images", 0, "check_images must be true or false, got 0"),
    ("check_images", None, "check_images must be true or false, got None"),
]


@pytest.mark.parametrize("name, value, said", BAD_IMAGE_OPTIONS)
def test_a_bad_image_option_is_refused_naming_it(image_dir, name, value, said):
    from features.exceptions import InputError
    from recommender.catalog import opened_rows

    calls = [lambda: validate_catalog(_rows(), image_dir, **{name: value})]
    if name == "check_images":
        # before reading: the file is not there, and that is not what is said
        calls.append(lambda: load_catalog(image_dir / "none.csv", check_images=value))
    else:
        calls.append(lambda: opened_rows(4, value))
    for call in calls:
        with pytest.raises(InputError) as exc:
            call()
        assert str(exc.value) == said
        assert exc.value.field == name
        assert exc.value.value == value and type(exc.value.value) is type(value)


@pytest.mark.parametrize("options, image_ok", [
    ({}, [True, False, False, True]),                        # every image opened
    ({"image_sample": 2}, [True, True, True, True]),         # rows 0 and 3 opened
    ({"image_sample": np.int64(2)}, [True, True, True, True]),
    ({"image_sample": 9}, [True, False, False, True]),       # more than the rows: all
    ({"image_sample": None}, [True, False, False, True]),
    ({"check_images": False}, [True, True, True, True]),     # none opened: a path is set
    ({"check_images": np.True_, "image_sample": 1}, [True, True, True, True]),
])
def test_good_image_options_open_the_images_they_did(image_dir, options, image_ok):
    for k in (0, 3):
        (image_dir / "img" / f"i{k}.jpg").write_bytes(_jpeg_bytes(k))
    cat, report = validate_catalog(_rows(), image_dir, **options)
    assert report.ok
    assert cat["image_ok"].tolist() == image_ok
