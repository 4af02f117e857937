"""MANGO Fashion Compatibility datathon files -> the canonical catalogue and outfits.

Source folder (``<data>``)::

    product_data.csv   one row per product, key cod_modelo_color ("MODEL-COLOUR")
    outfit_data.csv    cod_outfit,cod_modelo_color (one row per outfit item)
    images/NAME.jpg    packshots; des_filename reads "datathon/images/NAME.jpg"

Column mapping
--------------
=============================  ==========================================
canonical column               MANGO column
=============================  ==========================================
item_id                        cod_modelo_color
category                       des_product_family, via :data:`FAMILY_TO_CATEGORY`
subcategory                    des_product_family
colour                         des_agrup_color_eng (10 colour groups)
material                       des_fabric
gender                         des_sex
image_path                     des_filename "datathon/images/NAME.jpg" -> "images/NAME.jpg"
                               (relative to the image root, which is ``<data>``)
model_code                     the part of cod_modelo_color before "-" (split key)
season                         the collection year that prefixes the packshot's file
                               name ("2019_41085800_02.jpg" -> "2019"); shops know
                               their collections, and looks are built within one
product_type                   des_product_type
aggregated_family              des_product_aggregated_family
product_category               des_product_category
colour_name                    des_color_specification_esp (Spanish colour name)
colour_code                    cod_color_code
age                            des_age
line                           des_line
=============================  ==========================================

There is no price or stock in this catalogue, so the canonical ``price`` and
``in_stock`` columns are left out (never invented): up-sell by price is unavailable.

Family -> outfit slot (``category``)
------------------------------------
Every ``des_product_family`` of the published file (39 families) is listed below; a
family absent from this table is reported by name (:class:`UnmappedFamilyError`),
never dropped or guessed.

==========  ===================================================================
category    des_product_family
==========  ===================================================================
top         Shirt, Cardigans, Sweater, Sweatshirts, Bodysuits, Poloshirts,
            T-shirt, Tops
bottom      Jeans, Shorts, Skirts, Leggings and joggers, Trousers
dress       Dresses, Jumpsuit
outerwear   Coats, Outer Vest, Parkas, Puffer coats, Trenchcoats, Blazers,
            Jackets, Leather jackets, Vest
shoes       Footwear
bag         Bags
jewellery   Jewellery
accessory   Belts and Ties, Glasses, "Hats, scarves and gloves", Gadgets,
            Wallets & cases
other       Swimwear, Intimate, Fragances, Bedding, Deco Accessories,
            Deco Textiles, Glassware
==========  ===================================================================

Why: a slot is what an outfit holds one of, so the table follows MANGO's own
``des_product_category`` where it names a slot (Tops -> top, Bottoms -> bottom,
Outerwear -> outerwear, which is where the datathon puts cardigans, sweaters and the
tailored "Vest"), and splits MANGO's "Accessories" family group into the slots a
look fills separately (shoes, bag, jewellery, the rest as accessory). Swimwear,
lingerie, fragrance and home goods fill no outfit slot: they go to ``other`` (kept
in the catalogue, never proposed as an outfit slot).

Examples
--------
>>> FAMILY_TO_CATEGORY["Jeans"], FAMILY_TO_CATEGORY["Hats, scarves and gloves"]
('bottom', 'accessory')
>>> image_path_from_filename("datathon/images/2019_41085800_02.jpg")
'images/2019_41085800_02.jpg'
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from features.exceptions import NotFoundError, SchemaError
from recommender.catalog import CATEGORIES, read_user_csv

PRODUCTS_FILE = "product_data.csv"
OUTFITS_FILE = "outfit_data.csv"
IMAGES_DIR = "images"

_SLOTS: dict[str, tuple[str, ...]] = {
    "top": ("Shirt", "Cardigans", "Sweater", "Sweatshirts", "Bodysuits", "Poloshirts",
            "T-shirt", "Tops"),
    "bottom": ("Jeans", "Shorts", "Skirts", "Leggings and joggers", "Trousers"),
    "dress": ("Dresses", "Jumpsuit"),
    "outerwear": ("Coats", "Outer Vest", "Parkas", "Puffer coats", "Trenchcoats",
                  "Blazers", "Jackets", "Leather jackets", "Vest"),
    "shoes": ("Footwear",),
    "bag": ("Bags",),
    "jewellery": ("Jewellery",),
    "accessory": ("Belts and Ties", "Glasses", "Hats, scarves and gloves", "Gadgets",
                  "Wallets & cases"),
    "other": ("Swimwear", "Intimate", "Fragances", "Bedding", "Deco Accessories",
              "Deco Textiles", "Glassware"),
}
#: des_product_family -> canonical category (the documented table above).
FAMILY_TO_CATEGORY: dict[str, str] = {f: c for c, fams in _SLOTS.items() for f in fams}

#: What a MANGO build trains with unless its ``--config`` says otherwise (key by key;
#: ``--quick`` builds leave it out): the attribute-network recipe of issue #3, trained
#: within 30 minutes of a 2-core machine, with the figures it was chosen on and measured
#: with in ``benchmarks/mango_attributes.toml``, whose ``[stages.attributes]`` table
#: it equals (a test keeps the two alike).  Without it a MANGO build would train the
#: generic default network (base preset, 20 epochs, no time budget, no descriptor
#: fusion), which was never measured on this catalogue.
STAGE_DEFAULTS: dict[str, dict] = {
    "attributes": {
        "preset": "small",
        "image_size": [160, 112],
        "epochs": 47,
        "batch_size": 64,
        "num_threads": 2,
        "sampling_mix": 0.3,
        "label_smoothing": 0.05,
        "jitter": 0.02,
        "time_budget_s": 1460,
        "descriptors": True,
        "tta_zoom": 1.08,
        "eval_every": 5,
    },
}

#: MANGO columns the adapter reads, with the canonical or free column each becomes.
COLUMN_MAP: dict[str, str] = {
    "cod_modelo_color": "item_id",
    "des_product_family": "subcategory",
    "des_agrup_color_eng": "colour",
    "des_fabric": "material",
    "des_sex": "gender",
    "des_product_type": "product_type",
    "des_product_aggregated_family": "aggregated_family",
    "des_product_category": "product_category",
    "des_color_specification_esp": "colour_name",
    "cod_color_code": "colour_code",
    "des_age": "age",
    "des_line": "line",
}
REQUIRED_SOURCE_COLUMNS: tuple[str, ...] = tuple(COLUMN_MAP) + ("des_filename",)


class UnmappedFamilyError(SchemaError):
    """``des_product_family`` values that the documented table does not map."""

    def __init__(self, unmapped: dict[str, int]):
        shown = ", ".join(f"{k!r} ({v} rows)" for k, v in unmapped.items())
        super().__init__(f"des_product_family value(s) with no outfit slot in "
                         f"recommender.adapters.mango.FAMILY_TO_CATEGORY: {shown}; add "
                         "them to the table (one of: " + ", ".join(CATEGORIES) + ")",
                         field="des_product_family", value=next(iter(unmapped)))
        self.unmapped = unmapped


def image_path_from_filename(des_filename: str) -> str:
    """``datathon/images/NAME.jpg`` -> ``images/NAME.jpg`` (relative to the data dir)."""
    if not isinstance(des_filename, str) or not des_filename:
        return ""
    return f"{IMAGES_DIR}/{des_filename.replace(chr(92), '/').rsplit('/', 1)[-1]}"


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise NotFoundError(f"MANGO file not found: {path}", field="data", value=str(path))
    # empty: a failed export or download; not UTF-8: saved again by a spreadsheet
    return read_user_csv(path, f"MANGO file {path}", "data", error=SchemaError,
                         empty="expected a CSV with a header row", dtype=str,
                         keep_default_na=False)


def read_products(data: str | os.PathLike) -> pd.DataFrame:
    """The canonical catalogue (not yet validated) from ``<data>/product_data.csv``.

    Raises :class:`SchemaError` naming missing source columns, and
    :class:`UnmappedFamilyError` naming every family without a slot.
    """
    path = Path(data) / PRODUCTS_FILE
    src = _read_csv(path)
    missing = [c for c in REQUIRED_SOURCE_COLUMNS if c not in src.columns]
    if missing:
        raise SchemaError(f"{path} lacks column(s) {', '.join(missing)}; columns present: "
                          f"{', '.join(src.columns)}", field=missing[0])
    fam = src["des_product_family"].str.strip()
    unmapped = fam[~fam.isin(FAMILY_TO_CATEGORY)].value_counts()
    if len(unmapped):
        raise UnmappedFamilyError({str(k): int(v) for k, v in unmapped.items()})
    out = pd.DataFrame({"item_id": src["cod_modelo_color"].str.strip()})
    out["category"] = fam.map(FAMILY_TO_CATEGORY)
    for source, canonical in COLUMN_MAP.items():
        if canonical != "item_id":
            out[canonical] = src[source].str.strip()
    out["image_path"] = src["des_filename"].map(image_path_from_filename)
    out["model_code"] = out["item_id"].str.split("-", n=1).str[0]
    out["season"] = out["image_path"].str.extract(r"/(\d{4})_", expand=False).fillna("")
    order = ["item_id", "category", "subcategory", "colour", "material", "gender",
             "image_path", "model_code", "season", "product_type", "aggregated_family",
             "product_category", "colour_name", "colour_code", "age", "line"]
    return out[order]


def read_outfits(data: str | os.PathLike) -> pd.DataFrame:
    """``outfit_id, item_id`` (both str) from ``<data>/outfit_data.csv``."""
    path = Path(data) / OUTFITS_FILE
    src = _read_csv(path)
    missing = [c for c in ("cod_outfit", "cod_modelo_color") if c not in src.columns]
    if missing:
        raise SchemaError(f"{path} lacks column(s) {', '.join(missing)}; columns present: "
                          f"{', '.join(src.columns)}", field=missing[0])
    return pd.DataFrame({"outfit_id": src["cod_outfit"].str.strip(),
                         "item_id": src["cod_modelo_color"].str.strip()})


def source_files(data: str | os.PathLike) -> dict[str, Path]:
    """The files a MANGO ingest reads (for hashing), plus the images folder."""
    data = Path(data)
    return {"products": data / PRODUCTS_FILE, "outfits": data / OUTFITS_FILE,
            "images": data / IMAGES_DIR}


def load_mango(data: str | os.PathLike) -> tuple[pd.DataFrame, pd.DataFrame, Path]:
    """``(catalogue, outfits, image_root)`` of a MANGO folder, unvalidated.

    Validate with :func:`recommender.catalog.validate_catalog` (``image_root`` is the
    data folder, since ``image_path`` reads ``images/NAME.jpg``).
    """
    return read_products(data), read_outfits(data), Path(data)
