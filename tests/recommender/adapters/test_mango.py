"""MANGO adapter: a tiny folder in the datathon's format written here, and the real files."""
import csv

import pandas as pd
import pytest

from recommender.adapters.mango import (FAMILY_TO_CATEGORY, UnmappedFamilyError, load_mango,
                                        read_outfits, read_products)
from recommender.catalog import CATEGORIES, validate_catalog

HEADER = ["cod_modelo_color", "cod_color_code", "des_color_specification_esp",
          "des_agrup_color_eng", "des_sex", "des_age", "des_line", "des_fabric",
          "des_product_category", "des_product_aggregated_family", "des_product_family",
          "des_product_type", "des_filename"]


def _product(code, family, category="Tops", agg="Shirts", ptype="Shirt", colour="BLUE"):
    model, col = code.split("-")
    return [code, col, "AZUL", colour, "Female", "Adult", "SHE", "P-PLANA", category, agg,
            family, ptype, f"datathon/images/2019_{model}_{col}.jpg"]


def write_mango(folder, products, outfits):
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "product_data.csv", "w", newline="") as f:
        w = csv.writer(f, quoting=csv.QUOTE_ALL)
        w.writerow(HEADER)
        w.writerows(products)
    with open(folder / "outfit_data.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["cod_outfit", "cod_modelo_color"])
        w.writerows(outfits)
    (folder / "images").mkdir(exist_ok=True)
    return folder


@pytest.fixture
def tiny(tmp_path):
    products = [_product("11-01", "Shirt"),
                _product("11-02", "Shirt", colour="WHITE"),
                _product("22-TO", "Jeans", "Bottoms", "Jeans", "Jeans"),
                _product("33-99", "Hats, scarves and gloves", "Accesories, Swim and Intimate",
                         "Accessories", "Hat"),
                _product("44-01", "Glassware", "Home", "Dinning Room", "Glass")]
    return write_mango(tmp_path / "mango", products, [[1, "11-01"], [1, "22-TO"],
                                                       [2, "11-02"], [2, "33-99"]])


def test_columns_and_categories(tiny):
    cat = read_products(tiny)
    assert cat["item_id"].tolist() == ["11-01", "11-02", "22-TO", "33-99", "44-01"]
    assert cat["category"].tolist() == ["top", "top", "bottom", "accessory", "other"]
    row = cat.iloc[2]
    assert (row["subcategory"], row["colour"], row["material"], row["gender"]) == \
        ("Jeans", "BLUE", "P-PLANA", "Female")
    assert row["image_path"] == "images/2019_22_TO.jpg"
    assert row["model_code"] == "22" and row["colour_code"] == "TO"
    assert row["season"] == "2019"
    assert row["product_type"] == "Jeans" and row["aggregated_family"] == "Jeans"
    assert row["product_category"] == "Bottoms" and row["colour_name"] == "AZUL"
    assert (row["age"], row["line"]) == ("Adult", "SHE")
    # no price or stock in this catalogue: never invented
    assert "price" not in cat.columns and "in_stock" not in cat.columns


def test_ids_stay_strings_and_outfits_are_str(tiny):
    outfits = read_outfits(tiny)
    assert outfits.to_dict("list") == {"outfit_id": ["1", "1", "2", "2"],
                                       "item_id": ["11-01", "22-TO", "11-02", "33-99"]}


def test_missing_images_are_flagged_not_dropped(tiny):
    cat, _, root = load_mango(tiny)
    clean, report = validate_catalog(cat, root)
    assert report.ok and len(clean) == 5 and not clean["image_ok"].any()
    assert len(report.row_issues) == 5 and "not found" in report.row_issues[0][1]


def test_unmapped_family_is_named(tmp_path):
    folder = write_mango(tmp_path / "m", [_product("11-01", "Shirt"),
                                          _product("55-01", "Capes"),
                                          _product("55-02", "Capes")], [])
    with pytest.raises(UnmappedFamilyError, match=r"'Capes' \(2 rows\)") as exc:
        read_products(folder)
    assert exc.value.unmapped == {"Capes": 2} and exc.value.field == "des_product_family"


def test_missing_source_column_is_named(tmp_path):
    folder = write_mango(tmp_path / "m", [_product("11-01", "Shirt")], [])
    df = pd.read_csv(folder / "product_data.csv", dtype=str).drop(columns=["des_fabric"])
    df.to_csv(folder / "product_data.csv", index=False)
    with pytest.raises(Exception, match="lacks column.*des_fabric"):
        read_products(folder)


def test_table_covers_only_known_slots():
    assert set(FAMILY_TO_CATEGORY.values()) <= set(CATEGORIES)
    assert len(FAMILY_TO_CATEGORY) == 39


@pytest.mark.realdata
def test_real_catalogue(mango_dir):
    cat, outfits, root = load_mango(mango_dir)
    # every family of the real file is in the documented table (else read_products raises)
    assert len(cat) == 9222 and cat["item_id"].is_unique
    src = pd.read_csv(mango_dir / "product_data.csv", dtype=str)
    assert set(src["des_product_family"]) == set(FAMILY_TO_CATEGORY)
    counts = cat["category"].value_counts().to_dict()
    assert counts == {"top": 2768, "bottom": 1631, "dress": 1374, "accessory": 776,
                      "outerwear": 725, "bag": 602, "jewellery": 592, "shoes": 494,
                      "other": 260}
    assert (cat["model_code"] == cat["item_id"].str.split("-").str[0]).all()
    assert cat["image_path"].str.match(r"^images/[^/]+\.jpg$").all()
    assert all((root / p).is_file() for p in cat["image_path"].iloc[::500])
    assert outfits["outfit_id"].nunique() == 6274 and len(outfits) == 34886
    assert outfits["item_id"].isin(cat["item_id"]).all()
