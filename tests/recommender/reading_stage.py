"""A real stage module for pipeline tests: reads counting_stage's ``out.txt``, names
it (and its hash) in its inputs, as the graph stage names the compatibility model."""
from features.files import file_hash

RUNS = []


def stage_inputs(ctx):
    p = ctx.bundle.path("out.txt")
    return {"files": {"out.txt": file_hash(p) if p.is_file() else None}}


def run_stage(ctx):
    p = ctx.bundle.path("out.txt")
    RUNS.append(p.read_text() if p.is_file() else None)
    ctx.bundle.path("derived.txt").write_text(str(RUNS[-1]))
    return {"outputs": ["derived.txt"], "metrics": {}}
