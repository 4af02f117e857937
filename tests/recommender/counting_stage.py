"""A real stage module for pipeline tests: writes a file and counts its runs."""
RUNS = []


def stage_inputs(ctx):
    return {"value": ctx.config.get("value")}


def run_stage(ctx):
    RUNS.append(ctx.config.get("value"))
    ctx.bundle.path("out.txt").write_text(str(ctx.config.get("value")))
    return {"outputs": ["out.txt"], "metrics": {"value": ctx.config.get("value")}}
