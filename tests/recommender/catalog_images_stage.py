"""A real stage module for pipeline tests that reads the catalogue's images, as the
attribute and features stages do: ``READS_IMAGES``, its inputs the catalogue, the
image root (a LOCATION_INPUT) and the images' fingerprint; counts its runs by the root
it ran on."""
from features.files import file_hash

RUNS = []
READS_IMAGES = True
LOCATION_INPUTS = ("image_root",)


def stage_inputs(ctx):
    p = ctx.bundle.path("catalog.parquet")
    return {"catalog.parquet": file_hash(p) if p.is_file() else None,
            "image_root": str(ctx.bundle.image_root),
            "images": ctx.bundle.catalog_images()}


def run_stage(ctx):
    RUNS.append(str(ctx.bundle.image_root))
    ctx.bundle.path("model.txt").write_text(str(ctx.bundle.image_root))
    return {"outputs": ["model.txt"], "metrics": {}}
