"""A real stage module for pipeline tests: records its ``[stages.demo]`` table one way
(features.settings.canonical_settings), as the attribute, keypoint and compatibility
stages do, and counts its runs."""
from features.settings import canonical_settings

RUNS = []
#: What the stage runs with where its table is silent.
DEFAULTS = {"lr": 0.5, "epochs": 2}


def stage_inputs(ctx):
    return {"stage": canonical_settings(ctx.stage_config("demo"), DEFAULTS)}


def run_stage(ctx):
    RUNS.append(ctx.stage_config("demo"))
    ctx.bundle.path("spelled.txt").write_text(str(RUNS[-1]))
    return {"outputs": ["spelled.txt"], "metrics": {}}
