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


# --- a shop's export in its own conventions: encoding, decimal comma, its stock words ---

EURO_MAP = """
catalog = "export.csv"
sep = ";"
{encoding}
decimal = ","
thousands = "."
true_values = ["ja", "Lieferbar"]
false_values = ["nein"]

[columns]
item_id = "Artikel"
category = "Typ"
colour = "Farbe"
image_path = "Bild"
price = "Preis"
in_stock = "Bestand"

[outfits]
path = "looks.csv"
sep = ";"
{outfits_encoding}
outfit_id = "Look"
item_id = "Artikel"
"""

EURO_CSV = ("Artikel;Typ;Farbe;Bild;Preis;Bestand\n"
            "A1;top;crème;a1.png;23,99;ja\n"
            "A2;bottom;Bordeaux-Rosé;a2.png;1.299,00; NEIN \n"
            "A3;shoes;schwarz;a3.png;;LIEFERBAR\n"
            "A4;bag;grün;a4.png;5;0\n")


def _png(path, rgb=(200, 30, 30)):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 12), rgb).save(path)


@pytest.mark.parametrize("encoding,bom", [("cp1252", ""), ("utf-16", ""),
                                          (None, "\ufeff")],   # UTF-8 with Excel's BOM
                         ids=["cp1252", "utf-16", "utf-8-bom"])
def test_a_european_export_ingests_as_its_mapping_says(tmp_path, capsys, encoding, bom):
    """Before: ``error: non-numeric price in 4 row(s), e.g. item A1: '23,99'``,
    ``in_stock must be true/false; got 'ja'``, and a cp1252 file refused as not UTF-8,
    with no way to say how the shop writes them but editing the export."""
    from api.cli import main

    enc = encoding or "utf-8"
    (tmp_path / "export.csv").write_bytes((bom + EURO_CSV).encode(enc))
    (tmp_path / "looks.csv").write_bytes("Look;Artikel\nSommer-Brisé;A1\nSommer-Brisé;A2\n"
                                         .encode(enc))
    line = f'encoding = "{encoding}"' if encoding else ""
    (tmp_path / "map.toml").write_text(EURO_MAP.format(encoding=line,
                                                       outfits_encoding=line))
    for i in range(1, 5):
        _png(tmp_path / f"a{i}.png")
    cat, outfits, root = load_mapped(tmp_path / "map.toml")
    clean, report = validate_catalog(cat, root)
    assert report.ok, report.summary()
    assert clean["colour"].tolist() == ["crème", "Bordeaux-Rosé", "schwarz", "grün"]
    assert clean["price"].tolist()[:2] == [23.99, 1299.0] and pd.isna(clean["price"][2])
    assert clean["price"][3] == 5.0
    assert clean["in_stock"].tolist() == [True, False, True, False]
    assert clean["image_ok"].all()
    assert outfits.to_dict("list") == {"outfit_id": ["Sommer-Brisé"] * 2,
                                       "item_id": ["A1", "A2"]}
    out = tmp_path / "o"
    assert main(["ingest", "--source", "csv", "--mapping", str(tmp_path / "map.toml"),
                 "--out", str(out)]) == 0, capsys.readouterr().err
    written = pd.read_parquet(out / "catalog.parquet")
    assert written["price"].tolist()[:2] == [23.99, 1299.0]
    assert written["in_stock"].tolist() == [True, False, True, False]
    assert written["colour"][1] == "Bordeaux-Rosé"


@pytest.mark.parametrize("decimal,thousands,text,value", [
    (",", None, "1299,5", 1299.5),
    (",", " ", "1\u202f299,50", 1299.5),     # French Excel: a narrow no-break space
    (",", " ", "1 299,50", 1299.5),
    (".", "'", "1'299.50", 1299.5),          # Swiss
    (".", ",", "1,299.50", 1299.5),
    (".", ",", "-12", -12.0),                # refused later by validation, as before
    (",", ".", ",5", 0.5),
])
def test_price_conventions(tmp_path, decimal, thousands, text, value):
    (tmp_path / "p.csv").write_text(f"sku;type;price\nA1;top;{text}\n")
    m = {"catalog": "p.csv", "sep": ";", "decimal": decimal,
         "columns": {"item_id": "sku", "category": "type", "price": "price"}}
    if thousands:
        m["thousands"] = thousands
    (tmp_path / "m.json").write_text(json.dumps(m))
    cat = load_mapped(tmp_path / "m.json")[0]
    assert cat["price"].tolist() == [value]


@pytest.mark.parametrize("decimal,thousands,text", [
    (",", ".", "23.99"),       # a dot-decimal price in a file said to use commas: not 2399
    (",", ".", "1.2999,00"),   # digit groups of three
    (",", None, "1.299,00"),   # thousands dots the mapping does not mention
    (",", ".", "23,99 Euro"),  # a word that is no currency code or symbol
    (".", ",", "1e3"),
])
def test_a_price_not_in_the_mappings_convention_is_named(tmp_path, decimal, thousands,
                                                         text):
    (tmp_path / "p.csv").write_text(f"sku;type;price\nA1;top;1\nA2;top;{text}\n"
                                    f"A3;top;{text}\n")
    m = {"catalog": "p.csv", "sep": ";", "decimal": decimal,
         "columns": {"item_id": "sku", "category": "type", "price": "price"}}
    if thousands:
        m["thousands"] = thousands
    (tmp_path / "m.json").write_text(json.dumps(m))
    with pytest.raises(SchemaError) as exc:
        load_mapped(tmp_path / "m.json")
    assert f"non-numeric price in 2 row(s), e.g. item A2: {text!r} (read with decimal " \
           f"{decimal!r}" in str(exc.value), str(exc.value)
    assert exc.value.field == "columns.price"


# --- prices carrying their currency: € 23,99, 23,99 EUR, $1,299.00 ---

def _priced(tmp_path, cells, **keys):
    """A catalogue A1, A2, ... with these price cells and a mapping with ``keys``."""
    rows = "".join(f"A{i};top;{c}\n" for i, c in enumerate(cells, 1))
    (tmp_path / "p.csv").write_text("sku;type;price\n" + rows)
    m = {"catalog": "p.csv", "sep": ";", **keys,
         "columns": {"item_id": "sku", "category": "type", "price": "price"}}
    (tmp_path / "m.json").write_text(json.dumps(m))
    return tmp_path / "m.json"


NB, NNB = "\u00a0", "\u202f"   # the no-break spaces of French and Nordic exports


@pytest.mark.parametrize("keys,text,value", [
    ({"currency": "EUR", "decimal": ",", "thousands": "."}, "€23,99", 23.99),
    ({"currency": "EUR", "decimal": ",", "thousands": "."}, "€ 23,99", 23.99),
    ({"currency": "EUR", "decimal": ",", "thousands": "."}, "23,99 €", 23.99),
    ({"currency": "EUR", "decimal": ",", "thousands": "."}, f"23,99{NB}€", 23.99),
    ({"currency": "EUR", "decimal": ",", "thousands": "."}, "1.299,00€", 1299.0),
    ({"currency": "EUR", "decimal": ",", "thousands": "."}, "EUR 23,99", 23.99),
    ({"currency": "EUR", "decimal": ",", "thousands": "."}, "23,99EUR", 23.99),
    ({"currency": "EUR", "decimal": ",", "thousands": "."}, "23,99 eur", 23.99),
    ({"currency": "EUR", "decimal": ",", "thousands": "."}, "23,99", 23.99),   # no symbol
    ({"currency": "eur", "decimal": ","}, "23,99 €", 23.99),     # the code in any case
    ({"currency": "EUR", "decimal": ",", "thousands": " "}, f"1{NNB}299,50{NNB}€", 1299.5),
    ({"currency": "EUR"}, "€23.99", 23.99),                      # decimal "." by default
    ({"currency": "EUR"}, "-€12", -12.0),      # refused later by validation, as before
    ({"currency": "EUR"}, "€-12", -12.0),
    ({"currency": "USD", "thousands": ","}, "$1,299.00", 1299.0),
    ({"currency": "USD", "thousands": ","}, "US$ 1,299", 1299.0),
    ({"currency": "USD"}, "23.99 USD", 23.99),
    ({"currency": "GBP"}, "£12", 12.0),
    ({"currency": "CAD"}, "$12.50", 12.5),     # $ is every dollar's
    ({"currency": "AUD"}, "A$12.50", 12.5),
    ({"currency": "MXN", "thousands": ","}, "$1,299", 1299.0),
    ({"currency": "JPY", "thousands": ","}, "¥1,200", 1200.0),
    ({"currency": "CNY"}, "¥12.50", 12.5),     # the yen's symbol is the yuan's too
    ({"currency": "CHF", "thousands": "'"}, "CHF 1'299.50", 1299.5),
    ({"currency": "CHF", "thousands": "'"}, "Fr. 1'299.50", 1299.5),
    ({"currency": "SEK", "decimal": ",", "thousands": " "}, f"1{NB}299,00 kr", 1299.0),
    ({"currency": "NOK", "decimal": ",", "thousands": "."}, "kr 1.299,00", 1299.0),
    ({"currency": "DKK", "decimal": ",", "thousands": "."}, "1.299,00 kr.", 1299.0),
    ({"currency": "PLN", "decimal": ",", "thousands": " "}, "1 299,99 zł", 1299.99),
    ({"currency": "CZK", "decimal": ","}, "499 Kč", 499.0),
    ({"currency": "INR", "thousands": ","}, "₹1,299", 1299.0),
    ({"currency": "INR"}, "Rs.499", 499.0),
    ({"currency": "BRL", "decimal": ",", "thousands": "."}, "R$ 1.299,90", 1299.9),
    ({"currency": "TRY", "decimal": ",", "thousands": "."}, "1.299,90 TL", 1299.9),
    ({"currency": "TRY", "decimal": ","}, "₺49,90", 49.9),
])
def test_a_price_may_carry_the_declared_currency(tmp_path, keys, text, value):
    """Before: every one of these was refused as a non-numeric price, and a shop had to
    edit its export to ingest it."""
    cat = load_mapped(_priced(tmp_path, ["5", text, ""], **keys))[0]
    assert cat["price"].tolist()[:2] == [5.0, value] and pd.isna(cat["price"][2])


def test_a_negative_price_with_its_symbol_is_refused_as_without(tmp_path):
    cat, _, root = load_mapped(_priced(tmp_path, ["5", "-€12"], currency="EUR"))
    report = validate_catalog(cat, root, check_images=False)[1]
    assert not report.ok and "negative price in 1 row(s), e.g. item A2" in report.summary()


@pytest.mark.parametrize("keys,text,looks", [
    ({"currency": "EUR", "decimal": ","}, "$12", "'$' is written for USD or CAD or AUD or "
     "NZD or HKD or SGD or MXN"),
    ({"currency": "EUR"}, "12 USD", "'USD' is written for USD"),
    ({"currency": "EUR", "decimal": ","}, "12 kr", "'kr' is written for SEK or NOK or DKK"),
    ({"currency": "CAD"}, "US$12", "'US$' is written for USD"),   # $ would be CAD's
    ({"currency": "JPY"}, "RMB 12", "'RMB' is written for CNY"),
    ({"currency": "GBP"}, "€12", "'€' is written for EUR"),
])
def test_a_price_in_another_currency_is_refused_naming_it(tmp_path, keys, text, looks):
    """Read as a number, a $12 among euros would be 12 euros: mixing currencies is
    refused, naming the item, the cell and the currency the mapping declares."""
    with pytest.raises(SchemaError) as exc:
        load_mapped(_priced(tmp_path, ["5", text, text], **keys))
    msg = str(exc.value)
    said = (f"price in another currency than the mapping's currency "
            f"{keys['currency'].upper()!r} in 2 row(s), e.g. item A2: {text!r} ({looks}): "
            "one catalogue's prices must share one currency")
    assert said in msg, msg
    assert exc.value.field == "columns.price" and exc.value.value == text


@pytest.mark.parametrize("keys,text", [
    ({"currency": "EUR", "decimal": ",", "thousands": "."}, "€23.99"),   # not 2399 €
    ({"currency": "EUR", "decimal": ","}, "€ 23,99 €"),
    ({"currency": "EUR", "decimal": ","}, "EUR €23,99"),
    ({"currency": "EUR", "decimal": ","}, "23 € 99"),
    ({"currency": "EUR", "decimal": ","}, "-€-12"),
    ({"currency": "EUR"}, "€1e3"),           # strict, as with decimal and thousands
    ({"currency": "EUR"}, "€"),
])
def test_the_number_beside_the_symbol_is_read_as_strictly_as_before(tmp_path, keys,
                                                                     text):
    with pytest.raises(SchemaError) as exc:
        load_mapped(_priced(tmp_path, ["5", text, text], **keys))
    msg = str(exc.value)
    assert f"non-numeric price in 2 row(s), e.g. item A2: {text!r} (read with decimal " \
        f"{keys.get('decimal', '.')!r}" in msg, msg
    assert ", currency 'EUR', as the mapping says)" in msg
    assert exc.value.field == "columns.price"


@pytest.mark.parametrize("keys,cells,said", [
    ({}, ["€23.99"], "e.g. item A2: '€23.99', which looks like EUR; the mapping declares "
     "no currency: add currency = \"EUR\" to the mapping"),
    ({"decimal": ",", "thousands": "."}, ["23,99 EUR"], "'23,99 EUR', which looks like "
     "EUR; the mapping declares no currency: add currency = \"EUR\" to the mapping"),
    ({}, ["£12"], "'£12', which looks like GBP; the mapping declares no currency: add "
     "currency = \"GBP\" to the mapping"),
    ({"thousands": ","}, ["$1,299.00"], "'$1,299.00', which looks like one of USD, CAD, "
     "AUD, NZD, HKD, SGD, MXN; the mapping declares no currency: add currency = \"USD\" "
     "(or the one it is) to the mapping"),
    ({"decimal": ","}, [f"99{NB}kr"], "which looks like one of SEK, NOK, DKK; the mapping "
     "declares no currency: add currency = \"SEK\" (or the one it is)"),
    ({}, ["€23.99", "$5"], "add currency = \"EUR\" to the mapping (the column holds "
     "symbols or codes of AUD, CAD, EUR, HKD, MXN, NZD, SGD, USD: one catalogue's prices "
     "must share one currency)"),
], ids=["euro-no-keys", "code-with-decimal-keys", "pound", "dollar", "crown", "mixed"])
def test_a_currency_symbol_without_the_currency_key_says_which_to_add(tmp_path, keys,
                                                                     cells, said):
    """Before: ``non-numeric price in 1 row(s), e.g. item A2: '€23.99'``, nothing saying
    what to do. Still refused (which currency is not the reader's guess), now naming
    the currency and the key to add."""
    with pytest.raises(SchemaError) as exc:
        load_mapped(_priced(tmp_path, ["5", *cells, ""], **keys))
    msg = str(exc.value)
    assert f"price with a currency symbol or code in {len(cells)} row(s), e.g. item A2:" \
        in msg, msg
    assert said in msg, msg
    assert exc.value.field == "currency" and exc.value.value == cells[0]


def test_symbol_less_prices_ingest_byte_identically_with_or_without_currency(tmp_path):
    """A mapping without ``currency`` reads prices as before: its catalog.parquet is the
    one the canonical (demo) reader writes from the same table, a reader that knows
    nothing of currencies, lenient forms (``1e3``, `` 12 ``, ``12.``, ``+5``) included.
    And declaring the currency of a file whose prices carry no symbol changes nothing."""
    from api.cli import main

    canon = pd.DataFrame({
        "item_id": ["a", "b", "c", "d", "e", "f"],
        "category": ["top", "bottom", "shoes", "bag", "top", "top"],
        "subcategory": ["Tee", "Jeans", "Boot", "Tote", "Tee", "Tee"],
        "colour": ["red", "", "", "", "", ""], "material": [""] * 6,
        "gender": ["Female"] + [""] * 5, "image_path": [""] * 6,
        "price": ["19.99", "1e3", " 12 ", "12.", "+5", ""],
        "in_stock": ["1", "0", "true", "0", "1", "1"]})
    (tmp_path / "src").mkdir()
    canon.to_csv(tmp_path / "src" / "catalog.csv", index=False)
    (tmp_path / "m.json").write_text(json.dumps({
        "catalog": "src/catalog.csv", "columns": {c: c for c in canon.columns}}))

    def ingest(*args):
        out = tmp_path / f"o{len(list(tmp_path.glob('o*')))}"
        assert main(["ingest", *args, "--out", str(out), "--no-check-images"]) == 0
        return (out / "catalog.parquet").read_bytes()

    via_mapping = ingest("--source", "csv", "--mapping", str(tmp_path / "m.json"))
    assert via_mapping == ingest("--source", "demo", "--data", str(tmp_path / "src"))
    assert pd.read_parquet(tmp_path / "o0" / "catalog.parquet")["price"].tolist()[:5] == \
        [19.99, 1000.0, 12.0, 12.0, 5.0]

    # a European file, symbol-less, read with decimal/thousands, then also with currency
    (tmp_path / "e.csv").write_text(EURO_CSV.replace(";ja\n", ";1\n")
                                    .replace("NEIN", "0").replace("LIEFERBAR", "1"))
    keys = {"catalog": "e.csv", "sep": ";", "decimal": ",", "thousands": ".",
            "columns": {"item_id": "Artikel", "category": "Typ", "price": "Preis",
                        "in_stock": "Bestand"}}
    (tmp_path / "e.json").write_text(json.dumps(keys))
    (tmp_path / "e_eur.json").write_text(json.dumps({**keys, "currency": "EUR"}))
    plain = ingest("--source", "csv", "--mapping", str(tmp_path / "e.json"))
    assert plain == ingest("--source", "csv", "--mapping", str(tmp_path / "e_eur.json"))


def test_an_export_with_euro_signs_ingests_and_records_its_currency(tmp_path, capsys):
    """End to end through ``mixmatch ingest``, as the European export above: the prices
    with their symbol or code, and the currency recorded beside the ingest's counts."""
    from api.cli import main

    (tmp_path / "export.csv").write_text(
        EURO_CSV.replace(";23,99;", ";€23,99;").replace(";1.299,00;", f";1.299,00{NB}€;")
        .replace(";5;", ";EUR 5;"), encoding="utf-8")
    (tmp_path / "looks.csv").write_text("Look;Artikel\nL1;A1\nL1;A2\n")
    (tmp_path / "map.toml").write_text(EURO_MAP.format(encoding="", outfits_encoding="")
                                       .replace('thousands = "."',
                                                'thousands = "."\ncurrency = "EUR"'))
    for i in range(1, 5):
        _png(tmp_path / f"a{i}.png")
    out = tmp_path / "o"
    assert main(["ingest", "--source", "csv", "--mapping", str(tmp_path / "map.toml"),
                 "--out", str(out)]) == 0, capsys.readouterr().err
    written = pd.read_parquet(out / "catalog.parquet")
    assert written["price"].tolist()[:2] == [23.99, 1299.0] and pd.isna(written["price"][2])
    assert written["price"][3] == 5.0
    assert json.loads((out / "ingest.json").read_text())["metrics"]["currency"] == "EUR"

    # the same file, its mapping without currency: refused naming it, nothing written
    (tmp_path / "map.toml").write_text(EURO_MAP.format(encoding="", outfits_encoding=""))
    out2 = tmp_path / "o2"
    assert main(["ingest", "--source", "csv", "--mapping", str(tmp_path / "map.toml"),
                 "--out", str(out2)]) == 2
    err = capsys.readouterr().err
    assert "e.g. item A1: '€23,99', which looks like EUR; the mapping declares no " \
           "currency: add currency = \"EUR\" to the mapping" in err, err
    assert not (out2 / "catalog.parquet").exists()


def test_an_in_stock_value_neither_list_has_is_named(tmp_path):
    (tmp_path / "export.csv").write_text(EURO_CSV.replace(";0\n", ";vielleicht\n"))
    (tmp_path / "looks.csv").write_text("Look;Artikel\n")
    (tmp_path / "map.toml").write_text(EURO_MAP.format(encoding="", outfits_encoding=""))
    with pytest.raises(SchemaError) as exc:
        load_mapped(tmp_path / "map.toml")
    msg = str(exc.value)
    assert "in_stock value(s) not covered by true_values/false_values: 'vielleicht' " \
           "(1 rows); add them to one of the two" in msg, msg
    assert "(read as in stock: 1, ja, lieferbar, t, true, y, yes; as out of stock: 0, f, " \
           "false, n, nein, no)" in msg
    assert "vielleicht" not in exc.value.allowed and "nein" in exc.value.allowed


def _mapping(tmp_path, suffix=".json", **keys):
    (tmp_path / "p.csv").write_text("sku;type;price;stock\nA1;top;2,5;ja\n")
    (tmp_path / "looks.csv").write_text("outfit_id;item_id\n1;A1\n")
    m = {"catalog": "p.csv", "columns": {"item_id": "sku", "category": "type",
                                         "price": "price", "in_stock": "stock"}, **keys}
    p = tmp_path / f"m{suffix}"
    p.write_text(yaml.safe_dump(m) if suffix == ".yaml" else json.dumps(m))
    return p


@pytest.mark.parametrize("keys,said,field", [
    ({"encoding": "utf9"}, "mapping key encoding 'utf9' is not a text encoding Python "
     "knows (unknown encoding: utf9); e.g. utf-8, cp1252", "encoding"),
    ({"encoding": "base64"}, "mapping key encoding 'base64' is not a text encoding",
     "encoding"),
    ({"encoding": 1252}, "mapping key encoding must be a non-empty string, got 1252",
     "encoding"),
    ({"outfits": {"path": "looks.csv", "encoding": "latin-2000"}},
     "mapping key outfits.encoding 'latin-2000' is not a text encoding", "outfits.encoding"),
    ({"decimal": ";"}, "mapping key decimal must be one of '.', ',', got ';'", "decimal"),
    ({"thousands": "_"}, "mapping key thousands must be one of ',', '.', ' ', \"'\" "
     "(leave it out for none), got '_'", "thousands"),
    ({"thousands": "."}, "mapping key thousands '.' is also the decimal mark (decimal "
     "'.', the default): a price could not be read both ways; set decimal = \",\"",
     "thousands"),
    ({"decimal": ",", "thousands": ","}, "thousands ',' is also the decimal mark",
     "thousands"),
    ({"currency": "XYZ"}, "mapping key currency 'XYZ' is not a currency code this reader "
     "knows (an ISO 4217 code of CURRENCY_SYMBOLS in recommender.adapters.generic) "
     "(allowed: EUR, USD, GBP, JPY, CNY, CHF, SEK", "currency"),
    ({"currency": "€"}, "mapping key currency '€' is not a currency code this reader knows "
     "(an ISO 4217 code of CURRENCY_SYMBOLS in recommender.adapters.generic); '€' is "
     "written for EUR: give the code (allowed: EUR,", "currency"),
    ({"currency": 978}, "mapping key currency 978 is not a currency code", "currency"),
    ({"true_values": "ja"}, "mapping key true_values must be a list of non-empty strings "
     "(in_stock values), got 'ja'", "true_values"),
    ({"false_values": ["nein", 0]}, "false_values must be a list of non-empty strings "
     "(in_stock values), got 0", "false_values"),
    ({"true_values": ["ja"], "false_values": [" JA"]}, "mapping key true_values lists "
     "'ja', but false_values lists it too", "true_values"),
    ({"true_values": ["0"]}, "mapping key true_values lists '0', but it always means out "
     "of stock", "true_values"),
], ids=["encoding-unknown", "encoding-not-text", "encoding-not-a-string",
        "outfits-encoding-unknown", "decimal-unknown", "thousands-unknown",
        "thousands-is-the-default-decimal", "thousands-is-decimal", "currency-unknown",
        "currency-a-symbol", "currency-a-number", "true-values-a-string",
        "false-values-a-number", "a-value-in-both-lists", "true-values-a-false-word"])
def test_csv_convention_keys_are_checked(tmp_path, keys, said, field):
    with pytest.raises(InputError) as exc:
        read_mapping(_mapping(tmp_path, **keys))
    assert said in str(exc.value), str(exc.value)
    assert exc.value.field == field


def test_yaml_yes_in_true_values_is_refused_with_a_hint(tmp_path):
    p = tmp_path / "m.yaml"
    p.write_text("catalog: p.csv\ncolumns: {item_id: sku, category: type}\n"
                 "true_values: [ja, yes]\n")
    with pytest.raises(InputError, match="got True; quote it in YAML"):
        read_mapping(p)


def test_a_decimal_or_thousands_mark_that_is_the_separator_is_refused(tmp_path):
    # the usual slip: decimal = "," without sep = ";" (CSV's default is ",")
    with pytest.raises(InputError) as exc:
        load_mapped(_mapping(tmp_path, decimal=","))
    assert "mapping key decimal ',' is also the column separator of" in str(exc.value)
    assert "(set sep = \";\")" in str(exc.value) and exc.value.field == "decimal"
    with pytest.raises(InputError, match="mapping key thousands ' ' is also the column "
                       r"separator of .*p.csv \(sep ' '\): set sep to the file's$"):
        load_mapped(_mapping(tmp_path, sep=" ", thousands=" "))
    # a Parquet catalogue has no separator to clash with
    pd.DataFrame({"sku": ["A1"], "type": ["top"], "price": ["2,5"], "stock": ["ja"]}
                 ).to_parquet(tmp_path / "p.parquet")
    cat = load_mapped(_mapping(tmp_path, decimal=",", true_values=["ja"]),
                      data=tmp_path / "p.parquet")[0]
    assert cat["price"].tolist() == [2.5] and cat["in_stock"].tolist() == [True]


def test_a_file_not_in_its_encoding_names_the_mapping_key(tmp_path):
    (tmp_path / "p.csv").write_bytes("sku;type\nA1;café\n".encode("cp1252"))
    m = {"catalog": "p.csv", "sep": ";", "columns": {"item_id": "sku", "category": "type"}}
    (tmp_path / "m.json").write_text(json.dumps(m))
    with pytest.raises(InputError) as exc:
        load_mapped(tmp_path / "m.json")
    assert "is not UTF-8 text: byte b'\\xe9' on line 2; save the file as UTF-8, or name " \
           "its encoding in the mapping key encoding (e.g. \"cp1252\"" in str(exc.value)
    (tmp_path / "m.json").write_text(json.dumps({**m, "encoding": "ascii"}))
    with pytest.raises(InputError) as exc:
        load_mapped(tmp_path / "m.json")
    assert "is not ascii text: byte b'\\xe9' on line 2; check the mapping key encoding" \
        in str(exc.value), str(exc.value)
