"""An experiment's ``model`` arm (a variant serving another bundle, from ``MODELS``) is
served wholly from that bundle: the preview page's cards and photos, and the envelope's
``bundle_version``, not the main bundle's."""
from __future__ import annotations

import json
import re

import pandas as pd
import pytest

from api import create_app

RED, BLUE, GREEN = (200, 0, 0), (0, 0, 200), (0, 200, 0)


def _with_images(bundle, root, colour, price_factor=1.0):
    """Give every item of ``bundle`` a photo ``<id>.png`` of one ``colour`` under
    ``root`` (the manifest's image_root), multiply its prices by ``price_factor``,
    and give it a version of its own."""
    from PIL import Image
    root.mkdir()
    cat = pd.read_parquet(bundle / "catalog.parquet")
    cat["image_path"] = [f"{i}.png" for i in cat["item_id"]]
    cat["price"] = cat["price"] * price_factor
    cat.to_parquet(bundle / "catalog.parquet")
    for i in cat["item_id"]:
        Image.new("RGB", (4, 4), colour).save(root / f"{i}.png")
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["image_root"] = str(root)
    # the version hashes the stage records, which the edits above leave as they were:
    # two tiny bundles built alike shared it (when their model files came out
    # byte-identical), and the tests below tell the arms apart by it
    manifest["bundle_version"] = f"{bundle.name}-{manifest['bundle_version']}"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    return bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """main (red photos); ``other``: items the main bundle does not hold (ids ``x...``,
    blue photos); ``same``: the main bundle's ids with green photos and doubled
    prices."""
    from tests.recommender.tiny_bundle import make_tiny_bundle
    tmp = tmp_path_factory.mktemp("model_arm")
    return {"main": _with_images(make_tiny_bundle(tmp / "main"), tmp / "main_img", RED),
            "other": _with_images(make_tiny_bundle(tmp / "other", id_prefix="x"),
                                  tmp / "other_img", BLUE),
            "same": _with_images(make_tiny_bundle(tmp / "same"), tmp / "same_img", GREEN,
                                 price_factor=2.0)}


@pytest.fixture
def app(bundles, tmp_path):
    exp = tmp_path / "experiments.json"
    exp.write_text(json.dumps({"layers": [{"name": "m", "experiments": [
        {"name": "model", "coverage": 1.0, "qa_override": True, "variants": [
            {"name": "main", "weight": 1}, {"name": "other", "weight": 1, "model": "other"},
            {"name": "same", "weight": 1, "model": "same"}]}]}]}))
    app = create_app({"TESTING": True, "BUNDLE": str(bundles["main"]),
                      "MODELS": {"other": str(bundles["other"]),
                                 "same": str(bundles["same"])},
                      "EXPERIMENTS": str(exp), "DATA_DIR": str(tmp_path / "data"),
                      "WATCH_INTERVAL": 0, "WARM_VISION": False})
    yield app
    app.extensions["mixmatch"].events.close()


CARD = re.compile(r'<div class="card[^"]*" data-item-id="([^"]+)">\s*(?:<img src="([^"]+)"'
                  r'|<div class="noimg">)[^<]*(?:</div>)?\s*<div><b>[^<]+</b>([^<]*)</div>')


def cards(html: str) -> list[tuple[str, str | None, str]]:
    """(item id, image URL or None, "subcategory colour · price") of each card."""
    return [(i, img or None, " ".join(text.split())) for i, img, text in CARD.findall(html)]


def pixel(client, url) -> tuple:
    from io import BytesIO

    from PIL import Image
    with client.get(url) as r:
        assert r.status_code == 200 and r.mimetype == "image/png", (url, r.status_code)
        return Image.open(BytesIO(r.data)).convert("RGB").getpixel((0, 0))


def engine(app, model):
    state = app.extensions["mixmatch"].holder.current()
    return state.engine_for(model)


def want_text(eng, item_id) -> str:
    row = eng.catalog.set_index("item_id").loc[item_id]
    return f"{row['subcategory']} {row['colour']} · {row['price']:.2f}"


@pytest.mark.parametrize("model, item, colour", [("other", "xt0", BLUE),
                                                 ("same", "t0", GREEN),
                                                 (None, "t0", RED)])
def test_preview_of_a_model_arm_shows_that_bundles_items_and_photos(app, model, item,
                                                                    colour):
    # before: the cards were read from the main catalogue: the ``other`` arm's items,
    # which only its bundle holds, were blank ("no image", no name or price), and the
    # ``same`` arm showed the main bundle's prices and red photos for its items
    c = app.test_client()
    variant = model or "main"
    r = c.get(f"/preview/{item}?variant=model:{variant}&k=2")
    assert r.status_code == 200, r.get_data(as_text=True)
    shown = cards(r.get_data(as_text=True))
    eng = engine(app, model)
    served = {it["item_id"] for g in eng.complements(item, k=2)["groups"]
              for it in g["items"]}
    assert {i for i, _, _ in shown} >= served | {item}
    for item_id, url, text in shown:
        assert url is not None, f"{item_id}: blank card"
        assert text == want_text(eng, item_id)
        assert ("model=" in url) == (model is not None), url
        assert pixel(c, url) == colour, (item_id, url)


def test_an_image_of_a_model_that_is_not_served_is_a_400_naming_the_served_ones(app):
    # before: a 404, as for a missing photo, with the names in its text only; an
    # unknown variant, the JSON routes' parameter naming what is served, is a 400 with
    # the names allowed, and so is this parameter's bad value now
    c = app.test_client()
    for value in ("nope", "", "default", "x" * 100):
        r = c.get(f"/images/t0.png?model={value}")
        assert r.status_code == 400, (value, r.status_code)
        body = r.get_json()
        assert body["field"] == "model" and body["allowed"] == ["other", "same"], body
        assert body["error"] == (
            f"unknown model {value[:40]!r}: a MODELS name, or leave model out for the "
            f"main bundle's photos (allowed: other, same)")
    assert pixel(c, "/images/t0.png?model=same") == GREEN     # a served one: its photo
    # the main bundle does not hold the other bundle's photos, and a model's image
    # route is confined to its own root as the main one is
    assert c.get("/images/xt0.png").status_code == 404
    assert c.get("/images/../main_img/t0.png?model=other").status_code == 404



def test_an_image_model_given_twice_is_a_400_as_any_repeated_parameter(app):
    # the first was taken: ?model=same&model=nope served the "same" bundle's photo, and
    # ?model=nope&model=same said "unknown model 'nope'"; the JSON routes refuse a
    # repeated parameter as ambiguous
    c = app.test_client()
    for query in ("model=same&model=nope", "model=same&model=same",
                  "model=nope&model=same"):
        r = c.get(f"/images/t0.png?{query}")
        assert r.status_code == 400, (query, r.status_code)
        assert r.get_json()["field"] == "model"
        assert r.get_json()["error"] == ("parameter 'model' is given 2 times; give it "
                                         "once"), query


def test_an_image_model_without_models_served_is_a_400_saying_none_is(tmp_path):
    from tests.recommender.tiny_bundle import make_tiny_bundle

    app = create_app({"TESTING": True, "BUNDLE": str(make_tiny_bundle(tmp_path / "b")),
                      "DATA_DIR": str(tmp_path / "data"), "WATCH_INTERVAL": 0,
                      "WARM_VISION": False})
    try:
        r = app.test_client().get("/images/t0.png?model=nope")
        assert r.status_code == 400
        assert r.get_json()["error"] == ("unknown model 'nope': no MODELS bundle is "
                                         "served; leave model out for the main bundle's "
                                         "photos")
        assert r.get_json()["field"] == "model"
    finally:
        app.extensions["mixmatch"].events.close()

def _plain(body: dict) -> dict:
    from recommender.json_output import json_safe
    body = json.loads(json.dumps(json_safe(body, default=str)))
    return {k: v for k, v in body.items()
            if k not in {"request_id", "experiment", "variant", "bundle_version",
                         "rules_version", "assignments", "strategy"}}


@pytest.mark.parametrize("model", ["other", "same"])
def test_every_endpoint_of_a_model_arm_answers_with_that_bundle_and_its_version(app,
                                                                               model):
    # before: the bodies were the arm's engine's, but the envelope's bundle_version (and
    # the exposure logged with it, and the preview page's footer) was the main
    # bundle's: the events a page posted back named a bundle that had not ranked them
    c = app.test_client()
    eng = engine(app, model)
    x = "x" if model == "other" else ""
    top, bottom = f"{x}t0", f"{x}p0"
    q = f"variant=model:{model}&user_id=u1"
    calls = [
        (c.get(f"/v1/items/{top}/complements?k=2&{q}"),
         eng.complements(top, k=2, strategy="default", rules=None)),
        (c.get(f"/v1/items/{top}/upsell?k=2&context={bottom}&{q}"),
         eng.upsell(top, k=2, context=[bottom], strategy="default", rules=None)),
        (c.post("/v1/outfits/complete", json={"items": [top], "n": 1, "user_id": "u1",
                                              "variant": f"model:{model}"}),
         eng.complete([top], n=1, rules=None)),
        (c.post("/v1/outfits/score", json={"items": [top, bottom],
                                           "variant": f"model:{model}"}),
         eng.score_outfit([top, bottom])),
        (c.get(f"/v1/search?category=top&k=3&{q}"),
         eng.search({"category": "top"}, like=None, k=3)),
    ]
    for r, want in calls:
        body = r.get_json()
        assert r.status_code == 200, body
        assert body["variant"] == model
        assert body["bundle_version"] == str(eng.bundle_version) != str(
            engine(app, None).bundle_version)
        # item names, categories and prices are the arm's catalogue's (the ``same``
        # arm's prices are twice the main bundle's)
        assert _plain(body) == _plain(want)
    html = c.get(f"/preview/{top}?{q}").get_data(as_text=True)
    assert f"bundle {eng.bundle_version}" in html
    logged = app.extensions["mixmatch"].events.query(
        "SELECT DISTINCT bundle_version FROM exposures")
    assert logged == [(str(eng.bundle_version),)]
