"""A real stage module for pipeline tests: records its ``[stages.demo]`` table one way
(features.settings.canonical_settings), as the attribute, keypoint and compatibility
stages do, and counts its runs. Since :data:`features.settings.ONE_NAME` it records
``rate`` as ``lr`` and ``steps`` as ``epochs`` (as the compatibility stage records a
LightGBM alias), and before it ``steps`` meant another thing (the stage raises
MeantOtherwiseThen there, as that stage does for an alias LightGBM ignored)."""
from features.exceptions import MeantOtherwiseThen
from features.settings import ONE_NAME, canonical_settings, spelled_since

RUNS = []
#: What the stage runs with where its table is silent.
DEFAULTS = {"lr": 0.5, "epochs": 2}
#: Keys recorded under another name since ONE_NAME.
ALIASES = {"rate": "lr", "steps": "epochs"}
#: Keys whose tables trained otherwise before ONE_NAME (a test empties it to record
#: as the code before did, which did not know).
IGNORED_THEN = ("steps",)


def stage_inputs(ctx):
    table = ctx.stage_config("demo")
    if spelled_since(ONE_NAME):
        table = {ALIASES.get(k, k): v for k, v in table.items()}
    elif set(IGNORED_THEN) & set(table):
        raise MeantOtherwiseThen("ignored then")
    return {"stage": canonical_settings(table, DEFAULTS)}


def run_stage(ctx):
    RUNS.append(ctx.stage_config("demo"))
    ctx.bundle.path("spelled.txt").write_text(str(RUNS[-1]))
    return {"outputs": ["spelled.txt"], "metrics": {}}
