"""Generic CSV/Parquet + mapping-file adapter, with shop files written here."""
import json

import pandas as pd
import pytest
import yaml

from features.exceptions import InputError, NotFoundError, SchemaError
from recommender.adapters.generic import load_mapped, read_mapping
from recommender.catalog import validate_catalog

SHOP = pd.DataFrame({
    "sku": ["A1", "A2", "B1", "C1"],
    "type": ["T-Shirts", "Jeans", "Sneakers", "top"],
    "colour_name": ["white", "blue", "black", "red"],
    "photo": ["a1.png", "a2.png", "", "c1.png"],
    "price_eur": ["19.99", "49.5", "", "9"],
    "fit": ["slim", "wide", "", "boxy"],
    "category": ["x", "y", "z", "w"],          # clashes with a canonical name
})

TOML = """
catalog = "shop.csv"
image_root = "photos"

[columns]
item_id = "sku"
category = "type"
subcategory = "type"
colour = "colour_name"
image_path = "photo"
price = "price_eur"

[category_map]
"T-Shirts" = "top"
"Jeans" = "bottom"
"Sneakers" = "shoes"

[defaults]
gender = "Female"

[outfits]
path = "looks.csv"
outfit_id = "look"
item_id = "sku"
"""


@pytest.fixture
def shop(tmp_path):
    SHOP.to_csv(tmp_path / "shop.csv", index=False)
    pd.DataFrame({"look": [7, 7, 8], "sku": ["A1", "A2", "B1"]}).to_csv(
        tmp_path / "looks.csv", index=False)
    (tmp_path / "map.toml").write_text(TOML)
    return tmp_path


def test_toml_mapping(shop):
    cat, outfits, root = load_mapped(shop / "map.toml")
    assert root == shop / "photos"
    assert cat["item_id"].tolist() == ["A1", "A2", "B1", "C1"]
    assert cat["category"].tolist() == ["top", "bottom", "shoes", "top"]
    assert cat["subcategory"].tolist() == ["T-Shirts", "Jeans", "Sneakers", "top"]
    assert cat["gender"].tolist() == ["Female"] * 4
    assert cat["material"].tolist() == [""] * 4           # unmapped: empty, allowed
    assert "in_stock" not in cat.columns                  # never invented
    assert cat["fit"].tolist() == ["slim", "wide", "", "boxy"]
    assert cat["source_category"].tolist() == ["x", "y", "z", "w"]
    assert outfits.to_dict("list") == {"outfit_id": ["7", "7", "8"],
                                       "item_id": ["A1", "A2", "B1"]}
    clean, report = validate_catalog(cat, root, check_images=False)
    assert report.ok
    assert clean["price"].tolist()[:2] == [19.99, 49.5] and pd.isna(clean["price"][2])


def test_json_and_yaml_give_the_same_catalogue(shop):
    import tomllib

    m = tomllib.loads(TOML)
    (shop / "map.json").write_text(json.dumps(m))
    (shop / "map.yaml").write_text(yaml.safe_dump(m))
    a = load_mapped(shop / "map.toml")[0]
    pd.testing.assert_frame_equal(a, load_mapped(shop / "map.json")[0])
    pd.testing.assert_frame_equal(a, load_mapped(shop / "map.yaml")[0])


def test_parquet_source_and_data_override(shop):
    SHOP.assign(price_eur=[19.99, 49.5, None, 9.0]).to_parquet(shop / "shop.parquet")
    cat, _, root = load_mapped(shop / "map.toml", data=shop / "shop.parquet")
    assert cat["category"].tolist() == ["top", "bottom", "shoes", "top"]
    clean, report = validate_catalog(cat, root, check_images=False)
    assert report.ok and clean["price"].iloc[0] == 19.99


def test_absent_source_column_is_named_with_the_key(shop):
    (shop / "bad.toml").write_text(TOML.replace('item_id = "sku"\ncategory',
                                                'item_id = "SKU"\ncategory'))
    with pytest.raises(SchemaError) as exc:
        load_mapped(shop / "bad.toml")
    msg = str(exc.value)
    assert "mapping key columns.item_id names column 'SKU' absent from" in msg
    assert "columns present: sku, type, colour_name" in msg
    assert exc.value.field == "columns.item_id"


def test_unmapped_category_values_are_named(shop):
    (shop / "bad.toml").write_text(TOML.replace('"Sneakers" = "shoes"\n', ""))
    with pytest.raises(SchemaError, match=r"'Sneakers' \(1 rows\).*one of: top, bottom"):
        load_mapped(shop / "bad.toml")


def test_category_map_to_a_non_slot_is_refused(shop):
    (shop / "bad.toml").write_text(TOML.replace('= "shoes"', '= "footwear"'))
    with pytest.raises(InputError, match=r"category_map.'Sneakers'.*'footwear'") as exc:
        read_mapping(shop / "bad.toml")
    assert "shoes" in exc.value.allowed


def test_unknown_keys_and_columns_are_refused(shop):
    (shop / "a.json").write_text(json.dumps({"catalog": "shop.csv", "colums": {}}))
    with pytest.raises(InputError, match="unknown mapping key 'colums'"):
        read_mapping(shop / "a.json")
    (shop / "b.json").write_text(json.dumps({"catalog": "shop.csv", "columns": {
        "item_id": "sku", "category": "type", "colour_group": "colour_name"}}))
    with pytest.raises(InputError, match="columns.colour_group is not a canonical"):
        read_mapping(shop / "b.json")
    (shop / "c.json").write_text(json.dumps({"catalog": "shop.csv",
                                             "columns": {"category": "type"}}))
    with pytest.raises(InputError, match="columns.item_id"):
        read_mapping(shop / "c.json")


def test_missing_files_and_bad_syntax(shop):
    with pytest.raises(NotFoundError, match="mapping file not found"):
        read_mapping(shop / "nope.toml")
    (shop / "bad.toml").write_text(TOML.replace('catalog = "shop.csv"', 'catalog = "gone.csv"'))
    with pytest.raises(NotFoundError, match="mapping key catalog names file"):
        load_mapped(shop / "bad.toml")
    (shop / "broken.toml").write_text("[columns\nitem_id=")
    with pytest.raises(InputError, match="not valid TOML"):
        read_mapping(shop / "broken.toml")
    (shop / "broken.yaml").write_text("columns: [a, b\n")
    with pytest.raises(InputError, match="not valid YAML"):
        read_mapping(shop / "broken.yaml")


DUPLICATE_CATEGORY = {
    # the reader sees category = type at the top of [columns]; the last one was read
    ".json": ('{"catalog": "shop.csv",\n "columns": {"item_id": "sku", "category": "type",'
              '\n  "category": "fit"}}\n',
              "is not valid JSON: line 3: duplicate key 'category' of columns (first at "
              "line 2)"),
    ".yaml": ("catalog: shop.csv\ncolumns:\n  item_id: sku\n  category: type\n"
              "  category: fit\n",
              "is not valid YAML: line 5: duplicate key 'category' (first at line 4)"),
}
DUPLICATE_CATEGORY[".yml"] = DUPLICATE_CATEGORY[".yaml"]   # YAML too, not "YML"


@pytest.mark.parametrize("suffix", sorted(DUPLICATE_CATEGORY))
def test_a_mapping_key_given_twice_is_refused_naming_it(shop, capsys, suffix):
    """Before: ``json.loads``/``yaml.safe_load`` kept the last ``category``, so ingest
    read the categories from a column a reader of the file's top did not see (with two
    columns whose values both map, it wrote every item into the other's slot and exited
    0). Refused like a syntax error, naming the file, the key and both lines."""
    from api.cli import main

    text, said = DUPLICATE_CATEGORY[suffix]
    p = shop / f"dup{suffix}"
    p.write_text(text)
    with pytest.raises(InputError) as exc:
        read_mapping(p)
    assert f"mapping file {p} {said}" in str(exc.value), str(exc.value)
    assert exc.value.field == "mapping"
    out = shop / "b"
    assert main(["ingest", "--source", "csv", "--mapping", str(p), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err


def test_unreadable_source_csv_is_an_input_error(shop):
    # a shop export in Latin-1 (not UTF-8), and a row with more fields than the header
    (shop / "shop.csv").write_bytes(b"sku,type\nA1,T-Shirts\nA2,Jeans caf\xe9\n")
    with pytest.raises(InputError, match=r"shop.csv .*not UTF-8 text: byte .*xe9.* on line 3") as exc:
        load_mapped(shop / "map.toml")
    assert exc.value.field == "catalog"
    (shop / "shop.csv").write_text("sku,type\nA1,T-Shirts\nA2,Jeans,x,y\n")
    with pytest.raises(InputError, match="shop.csv .*not a well-formed table"):
        load_mapped(shop / "map.toml")
    # every row one field longer: pandas would index by the first column and shift
    (shop / "shop.csv").write_text("sku,type\nA1,T-Shirts,x\nA2,Jeans,y\n")
    with pytest.raises(InputError, match="shop.csv .*more fields than its header"):
        load_mapped(shop / "map.toml")
    SHOP.to_csv(shop / "shop.csv", index=False)
    (shop / "looks.csv").write_bytes(b"look,sku\n7,A1\n8,B\xe91\n")
    with pytest.raises(InputError, match="looks.csv .*not UTF-8") as exc:
        load_mapped(shop / "map.toml")
    assert exc.value.field == "outfits.path"


def test_mapping_file_not_utf8_or_scalar_of_wrong_type(shop):
    (shop / "latin.toml").write_bytes(TOML.replace('"T-Shirts"', '"Caf\u00e9"')
                                      .encode("latin-1"))
    with pytest.raises(InputError, match=r"mapping file .*latin.toml is not UTF-8"):
        read_mapping(shop / "latin.toml")
    (shop / "sep.json").write_text(json.dumps({"catalog": "shop.csv", "sep": 1, "columns": {
        "item_id": "sku", "category": "type"}}))
    with pytest.raises(InputError, match="mapping key sep must be a non-empty string, got 1"):
        read_mapping(shop / "sep.json")
    (shop / "cat.json").write_text(json.dumps({"catalog": ["shop.csv"], "columns": {
        "item_id": "sku", "category": "type"}}))
    with pytest.raises(InputError, match="mapping key catalog must be a non-empty string"):
        read_mapping(shop / "cat.json")


def test_outfit_column_named_when_absent(shop):
    (shop / "bad.toml").write_text(TOML.replace('outfit_id = "look"', 'outfit_id = "set"'))
    with pytest.raises(SchemaError, match="outfits.outfit_id names column 'set'"):
        load_mapped(shop / "bad.toml")


def test_default_category_and_kept_attributes(shop):
    (shop / "m.json").write_text(json.dumps({
        "catalog": "shop.csv", "columns": {"item_id": "sku"},
        "defaults": {"category": "top"}, "attributes": ["fit"]}))
    cat, outfits, root = load_mapped(shop / "m.json")
    assert outfits is None and root == shop
    assert cat["category"].tolist() == ["top"] * 4
    assert cat["subcategory"].tolist() == ["top"] * 4
    assert list(cat.columns) == ["item_id", "category", "subcategory", "colour",
                                 "material", "gender", "image_path", "fit"]
