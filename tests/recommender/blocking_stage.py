"""A real stage module for lock tests: says it runs, then waits for its stdin to close."""
import sys


def stage_inputs(ctx):
    return {}


def run_stage(ctx):
    print("running", flush=True)
    sys.stdin.read()
    ctx.bundle.path("out.txt").write_text("done")
    return {"outputs": ["out.txt"]}
