"""Analyze a photo: category, attributes with confidences, colours, keypoints, shape."""
from __future__ import annotations

from flask import Blueprint

from api.blueprints.items import variant_choice
from api.requests import form_fields, image_upload
from api.responses import assign, respond
from api.state import get_state

bp = Blueprint("analyze", __name__)


@bp.post("/v1/analyze")
def analyze():
    """Tag a new arrival or a shopper's photo (multipart field ``image``)."""
    fields = form_fields("image_form")
    # a cut-out's transparency is its garment mask: white on white once composited;
    # decoded shrunk, the photo's size kept for the keypoints (in its pixels)
    rgb, alpha, size = image_upload("image")
    a = assign("analyze", fields)
    engine, _strategy, _rules = variant_choice(a, get_state())
    return respond(engine.analyze_image(rgb, alpha=alpha, size=size))
