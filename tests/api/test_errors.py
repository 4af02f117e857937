"""Every bad input gets a JSON 4xx naming the field; uploads are refused before a full
decode. These checks run before the engine is reached, so they need no bundle."""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from api import create_app

ENVELOPE = {"request_id", "experiment", "variant", "bundle_version", "rules_version"}


def png_bytes(w=32, h=24) -> bytes:
    buf = io.BytesIO()
    rgb = (np.arange(w * h * 3) % 251).astype(np.uint8).reshape(h, w, 3)
    Image.fromarray(rgb).save(buf, "PNG")
    return buf.getvalue()


def png_declaring(w: int, h: int) -> bytes:
    """A real PNG whose IHDR claims w x h (CRC fixed): a decompression-bomb header."""
    data = bytearray(png_bytes(8, 8))
    ihdr = bytearray(data[12:29])          # type + 13 bytes of IHDR data
    ihdr[4:12] = struct.pack(">II", w, h)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)) & 0xFFFFFFFF)
    return bytes(data)


def check_error(r, status: int, field):
    assert r.status_code == status, r.get_data(as_text=True)
    body = r.get_json()
    assert body["field"] == field, body
    assert body["error"]
    assert ENVELOPE <= set(body)
    assert r.headers["X-Request-ID"] == body["request_id"]
    return body


@pytest.mark.parametrize("url, field", [
    ("/v1/items/A/complements?k=0", "k"),
    ("/v1/items/A/complements?k=51", "k"),
    ("/v1/items/A/complements?k=abc", "k"),
    ("/v1/items/A/complements?k=1_0", "k"),
    ("/v1/items/A/complements?k=1&k=2", "k"),
    ("/v1/items/A/complements?categories=hat", "categories"),
    ("/v1/items/A/complements?categories=top,,shoes", "categories"),
    ("/v1/items/A/upsell?context=" + ",".join(f"i{i}" for i in range(21)), "context"),
    ("/v1/search?category=hat", "category"),
    ("/v1/search?k=-3", "k"),
    ("/v1/items/" + "x" * 200 + "/complements", "item_id"),
])
def test_bad_query_is_400_naming_the_field(client, url, field):
    check_error(client.get(url), 400, field)


@pytest.mark.parametrize("body, field", [
    ({}, "items"),
    ({"items": []}, "items"),
    ({"items": ["a"] * 21}, "items"),
    ({"items": ["a"], "n": 0}, "n"),
    ({"items": ["a"], "slots": ["hat"]}, "slots[0]"),
    ({"items": ["a"], "colour": "red"}, "colour"),
    ({"items": [3]}, "items[0]"),
])
def test_bad_completion_body_is_400_naming_the_field(client, body, field):
    check_error(client.post("/v1/outfits/complete", json=body), 400, field)


def test_too_long_integer_is_out_of_range_not_a_non_integer(client):
    body = check_error(client.get("/v1/items/A/complements?k=" + "9" * 20), 400, "k")
    assert "out of range" in body["error"] and "9" * 20 in body["error"], body
    body = check_error(client.get("/v1/items/A/complements?k=" + "9" * 60), 400, "k")
    assert "9" * 40 + "... is out of range" in body["error"], body
    body = check_error(client.get("/v1/items/A/complements?k=9x"), 400, "k")
    assert "must be an integer" in body["error"], body


def test_body_must_be_json_object(client):
    check_error(client.post("/v1/outfits/score", data="{nope",
                            content_type="application/json"), 400, "body")
    check_error(client.post("/v1/outfits/score", json=[1, 2]), 400, "body")
    check_error(client.post("/v1/outfits/score", data="items=a",
                            content_type="application/x-www-form-urlencoded"), 415, "body")


@pytest.mark.parametrize("data, says", [
    # valid JSON, but past Python's 4300-digit int conversion limit: it was "the body
    # is not valid JSON", which sent the page looking for a syntax error
    ('{"items": ["a"], "n": ' + "9" * 5000 + "}", "more than 4300 digits"),
    ('{"items": ["a"],}', "line 1 column 17"),
    ("", "the body is empty"),
    (b'{"items": ["\xff"]}', "not UTF-8 text: byte 0xff at position 12"),
])
def test_unreadable_json_body_says_why(client, data, says):
    body = check_error(client.post("/v1/outfits/complete", data=data,
                                   content_type="application/json"), 400, "body")
    assert says in body["error"], body


@pytest.mark.parametrize("url, data, key", [
    ("/v1/events", '{"type": "click", "request_id": "r", "type": "purchase"}', "type"),
    ("/v1/events", '{"events": [{"type": "click", "request_id": "r", "item_id": "a", '
                   '"item_id": "b"}]}', "item_id"),
    ("/v1/outfits/complete", '{"items": ["a"], "items": ["b", "c"]}', "items"),
])
def test_a_key_repeated_in_a_json_body_is_400_naming_it(client, app, url, data, key):
    """The last of the two was taken, silently: a page's event stored as a purchase it
    also called a click. The config files refuse a repeated key; so does the API."""
    body = check_error(client.post(url, data=data, content_type="application/json"),
                       400, key)
    assert f"{key!r} is given twice" in body["error"], body
    assert app.extensions["mixmatch"].events.count("events") == 0


@pytest.mark.parametrize("url", ["/v1/events", "/v1/outfits/complete"])
def test_deeply_nested_json_is_400_not_500(client, url):
    # json.loads gives up on deep nesting with RecursionError, which is not a ValueError
    deep = "[" * 100_000 + "]" * 100_000
    check_error(client.post(url, data=deep, content_type="application/json"), 400, "body")
    check_error(client.post(url, data='{"items": ' + deep + "}",
                            content_type="application/json"), 400, "body")


@pytest.mark.parametrize("body, field", [
    ('{"type": "click", "request_id": "r", "item_id": "\\ud800"}', "item_id"),
    ('{"events": [{"type": "click", "request_id": "r", "user_id": "a\\udc00"}]}',
     "events[0].user_id"),
])
def test_lone_surrogate_in_json_string_is_400(client, app, body, field):
    # valid JSON escapes, but no UTF-8 can encode them: SQLite's bind raised (500)
    check_error(client.post("/v1/events", data=body, content_type="application/json"),
                400, field)
    assert app.extensions["mixmatch"].events.count("events") == 0


def test_event_validation(client):
    check_error(client.post("/v1/events", json={"type": "view", "request_id": "r"}), 400,
                "type")
    check_error(client.post("/v1/events", json={"type": "click"}), 400, "request_id")
    body = client.post("/v1/events", json={"type": "click", "request_id": "r r"}).get_json()
    assert body["field"] == "request_id"


def test_unknown_path_and_method(client):
    check_error(client.get("/v2/nothing"), 404, "path")
    body = check_error(client.delete("/v1/events"), 405, "method")
    assert "POST" in body["allowed"]


def test_oversized_body_is_413(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "WATCH_INTERVAL": 0,
                      "MAX_CONTENT_LENGTH": 2000})
    r = app.test_client().post("/v1/events", data=b"{" + b" " * 5000 + b"}",
                               content_type="application/json")
    check_error(r, 413, "body")


def upload(client, data: bytes, name="photo.png", url="/v1/analyze", **fields):
    return client.post(url, data={"image": (io.BytesIO(data), name), **fields},
                       content_type="multipart/form-data")


@pytest.mark.parametrize("fields, says", [
    ({f"f{i}": "1" for i in range(11)}, "more than 10 parts"),
    ({"colour": "x" * 2000}, "larger than 1000 bytes"),
])
def test_a_form_past_the_part_limits_is_413_saying_which(tmp_path, fields, says):
    """werkzeug refuses a form of more than MAX_FORM_PARTS parts, or a text field over
    MAX_FORM_MEMORY_SIZE bytes, with a bare 413, which was answered "the request body
    is larger than the limit of 10485760 bytes" for a body of 20 kB. (Limits made small
    here: the test client spools a body over 500 kB to a file it leaves open.)"""
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "WATCH_INTERVAL": 0,
                      "MAX_FORM_PARTS": 10, "MAX_FORM_MEMORY_SIZE": 1000})
    # the photo after the fields: werkzeug leaves a file part it had opened unclosed
    # when it stops mid-form (a ResourceWarning once collected)
    r = app.test_client().post(
        "/v1/search", data={**fields, "image": (io.BytesIO(png_bytes()), "photo.png")},
        content_type="multipart/form-data")
    body = check_error(r, 413, "body")
    assert says in body["error"] and "10485760" not in body["error"], body
    app.extensions["mixmatch"].events.close()


def test_upload_not_an_image_is_415(client):
    body = check_error(upload(client, b"GIF89a-not-really" * 10), 415, "image")
    assert "PNG" in body["allowed"]
    check_error(upload(client, b"%PDF-1.4 hello"), 415, "image")


def test_upload_declaring_enormous_dimensions_is_413_before_decoding(client):
    bomb = png_declaring(100_000, 100_000)
    assert len(bomb) < 1000      # the body is tiny; only the header is huge
    check_error(upload(client, bomb), 413, "image")
    check_error(upload(client, bomb, url="/v1/search"), 413, "image")


def test_truncated_upload_is_400(client):
    data = png_bytes(64, 64)
    check_error(upload(client, data[: len(data) // 2]), 400, "image")


def test_upload_too_many_bytes_is_413(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "WATCH_INTERVAL": 0,
                      "MAX_IMAGE_BYTES": 1000})
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, "PNG")     # noise does not compress: > 12 kB
    check_error(upload(app.test_client(), buf.getvalue()), 413, "image")


def test_upload_missing_or_not_multipart(client):
    check_error(client.post("/v1/analyze", data={"k": "3"},
                            content_type="multipart/form-data"), 400, "image")
    check_error(client.post("/v1/analyze", data=png_bytes(), content_type="image/png"),
                415, "body")
    check_error(upload(client, png_bytes(), url="/v1/search", k="0"), 400, "k")


def test_admin_token(client, tmp_path):
    check_error(client.post("/admin/reload"), 401, "token")
    check_error(client.post("/admin/reload", headers={"Authorization": "Bearer nope"}),
                401, "token")
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "WATCH_INTERVAL": 0})
    check_error(app.test_client().post("/admin/reload"), 403, "token")


@pytest.mark.parametrize("url, where", [
    ("/v1/outfits/complete", "JSON body"), ("/v1/outfits/score", "JSON body"),
    ("/v1/events", "JSON body"), ("/v1/analyze", "form's fields"),
    ("/admin/reload", "JSON body")])
def test_a_query_string_on_a_post_route_is_400_naming_it(client, url, where):
    # before: ignored, so ?user_id=u1 on a completion drew the A/B arm as if none given
    headers = {"Authorization": "Bearer s3cret"}
    r = (upload(client, png_bytes(), url=f"{url}?user_id=u1") if "analyze" in url else
         client.post(f"{url}?user_id=u1&k=3", json={"items": ["A"]}, headers=headers))
    body = check_error(r, 400, "user_id")
    assert body["error"] == (f"POST {url} reads its parameters from the {where}, not the "
                             f"query string: move 'user_id' there")
    assert client.application.extensions["mixmatch"].events.count("events") == 0


def test_no_bundle_is_503_json(client):
    body = check_error(client.get("/v1/items/A/complements"), 503, None)
    assert "no bundle" in body["error"]


def test_last_resort_handler_still_answers_json(app):
    @app.get("/boom")
    def boom():
        raise ZeroDivisionError("hidden detail")

    r = app.test_client().get("/boom")
    body = check_error(r, 500, None)
    assert "hidden detail" not in body["error"]


def test_request_id_is_echoed_when_valid(client):
    """The client's X-Request-ID is echoed in the header; the body's request_id (what
    events carry) is the server's own and differs on every response, even when the
    client sends the same id again."""
    ids = set()
    for _ in range(2):
        r = client.get("/healthz", headers={"X-Request-ID": "shop-123"})
        assert r.headers["X-Request-ID"] == "shop-123"
        ids.add(r.get_json()["request_id"])
    assert len(ids) == 2 and "shop-123" not in ids
    r = client.get("/healthz", headers={"X-Request-ID": "bad id with spaces"})
    assert r.get_json()["request_id"] == r.headers["X-Request-ID"] != "bad id with spaces"


def test_cors_origins_given_as_one_string_is_one_origin_not_a_substring(tmp_path):
    """``cors_origins = "https://shop.example"`` (a string, natural in a config file)
    was matched with ``in`` on the string: an Origin of ``https://shop`` or ``e`` was
    allowed, and echoed back in Access-Control-Allow-Origin."""
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "WATCH_INTERVAL": 0,
                      "CORS_ORIGINS": "https://shop.example"})
    c = app.test_client()
    for origin in ("https://shop", "e", "shop.example"):
        r = c.get("/healthz", headers={"Origin": origin})
        assert r.headers.get("Access-Control-Allow-Origin") is None, origin
    r = c.get("/healthz", headers={"Origin": "https://shop.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://shop.example"


@pytest.mark.parametrize("bad", [5, ["https://shop.example", 5], {"a": "b"}])
def test_cors_origins_that_are_not_origins_stop_the_start(tmp_path, bad):
    from features.exceptions import InputError
    with pytest.raises(InputError, match="CORS_ORIGINS") as err:
        create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "WATCH_INTERVAL": 0,
                    "CORS_ORIGINS": bad})
    assert err.value.field == "CORS_ORIGINS"


def test_cors_from_config(tmp_path):
    app = create_app({"TESTING": True, "DATA_DIR": str(tmp_path), "WATCH_INTERVAL": 0,
                      "CORS_ORIGINS": ["https://shop.example"]})
    c = app.test_client()
    r = c.get("/healthz", headers={"Origin": "https://shop.example"})
    assert r.headers["Access-Control-Allow-Origin"] == "https://shop.example"
    # a cross-origin page reads how long a 503 (events database busy) asks it to wait
    exposed = {h.strip() for h in r.headers["Access-Control-Expose-Headers"].split(",")}
    assert exposed == {"X-Request-ID", "Retry-After"}
    assert c.get("/healthz", headers={"Origin": "https://evil.example"}
                 ).headers.get("Access-Control-Allow-Origin") is None
    r = c.options("/v1/events", headers={"Origin": "https://shop.example",
                                         "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200 and "POST" in r.headers["Access-Control-Allow-Methods"]
