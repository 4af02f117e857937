"""A real stage module for pipeline tests: refuses its config before writing anything."""
from features.exceptions import InputError


def stage_inputs(ctx):
    return {"value": ctx.config.get("value")}


def run_stage(ctx):
    raise InputError(f"value {ctx.config.get('value')!r} refused", field="value",
                     value=ctx.config.get("value"))
