"""A real stage module for pipeline tests that reads images under the bundle's image
root, named in its inputs beside their content, as the attribute and features
stages do (``image_root`` a LOCATION_INPUT); counts its runs."""
from features.files import file_hash

RUNS = []
LOCATION_INPUTS = ("image_root",)


def stage_inputs(ctx):
    p = ctx.bundle.path("table.txt")
    return {"image_root": str(ctx.bundle.image_root),
            "table.txt": file_hash(p) if p.is_file() else None,
            "images": ctx.config.get("images")}


def run_stage(ctx):
    RUNS.append(str(ctx.bundle.image_root))
    ctx.bundle.path("model.txt").write_text(str(ctx.bundle.image_root))
    return {"outputs": ["model.txt"], "metrics": {}}
