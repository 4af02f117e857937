"""A real stage module for pipeline tests whose inputs name where its data lies
(``data``, a LOCATION_INPUT) as well as what it holds (``content``), as the ingest's
do; it records the place as the bundle's image root, and counts its runs."""
RUNS = []
LOCATION_INPUTS = ("data",)


def stage_inputs(ctx):
    return {"data": ctx.config.get("data"), "content": ctx.config.get("content")}


def relocate(ctx):
    ctx.bundle.manifest["image_root"] = ctx.config.get("data")
    return f"image root now {ctx.config.get('data')}"


def run_stage(ctx):
    RUNS.append((ctx.config.get("data"), ctx.config.get("content")))
    ctx.bundle.manifest["image_root"] = ctx.config.get("data")
    ctx.bundle.path("table.txt").write_text(str(ctx.config.get("content")))
    return {"outputs": ["table.txt"], "metrics": {}}
