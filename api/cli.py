"""The ``mixmatch`` command line: one subcommand per stage, plus build, serve, demo,
and events (backup and restore of the events database).

It lives in ``api`` because it is the outermost layer: it may import every
package (``api`` -> ``recommender`` -> ``features``), none may import it.
Every handler imports its implementation lazily, so ``mixmatch --help`` is fast
and a command whose implementation has not landed says so and exits 3.

Exit codes: 0 success, 1 a check failed (e.g. validation found errors),
2 bad input, 3 not implemented yet.

Example::

    mixmatch demo --out data/demo --items 2000 --seed 0
    mixmatch build --source demo --out bundles/demo
    mixmatch serve --bundle bundles/demo --port 8000
    mixmatch events backup --db bundles/demo/serving/events.db --out events-monday.db
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Callable

from features.exceptions import InputError, MixmatchError, StageNotAvailable

from recommender.paths import DATA_ENV, default_data_root  # noqa: F401  (re-exported)


def _impl(module: str, func: str, issue: int) -> Callable[..., Any]:
    """Import ``module.func`` or raise StageNotAvailable naming the issue."""
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise StageNotAvailable(f"this command is not implemented yet: {module} has "
                                    f"not landed (issue #{issue})") from exc
        raise
    try:
        return getattr(mod, func)
    except AttributeError as exc:
        raise StageNotAvailable(f"this command is not implemented yet: {module}.{func} "
                                f"has not landed (issue #{issue})") from exc


# -- handlers -------------------------------------------------------------------------
def cmd_ingest(args) -> int:
    return _impl("recommender.ingest", "cli_ingest", 2)(args)


def cmd_demo(args) -> int:
    return _impl("recommender.demo", "cli_demo", 2)(args)


def cmd_build(args) -> int:
    return _impl("recommender.build", "cli_build", 2)(args)


def cmd_features(args) -> int:
    args.stages = "features"
    return _impl("recommender.build", "cli_stages", 3)(args)


#: The stages ``mixmatch train --stage`` runs: those that train a model.
TRAIN_STAGES = ("attributes", "keypoints", "compatibility")


def cmd_train(args) -> int:
    # --stage "" names no stage, refused as build --stages "" is, not the default
    given = args.stage is not None
    if given:
        # `train --stage ingest` ingested the source again (and `--stage graph` built
        # the graph) under a command that says it trains models; a name that is no
        # stage at all is left to the stage list's own "unknown stage"
        from recommender.pipeline import STAGE_NAMES

        for name in (s.strip() for s in args.stage.split(",")):
            if name in STAGE_NAMES and name not in TRAIN_STAGES:
                runs = (f"mixmatch {name} --bundle B" if name in ("features", "graph")
                        else f"mixmatch build --out B --stages {name}")
                # the error's own "(allowed: ...)" lists the training stages
                raise InputError(f"train --stage {name!r}: not a stage that trains a "
                                 f"model; `{runs}` runs it", field="stage", value=name,
                                 allowed=list(TRAIN_STAGES))
    args.stages = args.stage if given else "attributes,keypoints,compatibility"
    # without --stage, only those a build of the bundle's source runs: the keypoint
    # detector trains on the demo's FashionAI labels, a MANGO bundle has none
    args.applicable_only = not given
    return _impl("recommender.build", "cli_stages", 3)(args)


def cmd_graph(args) -> int:
    args.stages = "graph"
    return _impl("recommender.build", "cli_stages", 5)(args)


def cmd_make_eval(args) -> int:
    return _impl("recommender.evaluation.make_eval", "cli_make_eval", 4)(args)


def _has_a_line(path: str) -> bool:
    """Whether ``path`` has a line that is not blank (read up to the first one)."""
    try:
        with open(path, "rb") as f:
            return any(line.strip() for line in f)
    except OSError:
        return True   # left to the reader, which names the error


def cmd_evaluate(args) -> int:
    """Score what was asked: keypoint files, attribute heads, FITB/compatibility."""
    # every refusal comes before any scoring: a missing input is named, not found by a
    # traceback after minutes of work on the others
    if (args.keypoints_truth or args.keypoints_pred) and not (args.keypoints_truth
                                                              and args.keypoints_pred):
        raise MixmatchError("--keypoints-truth and --keypoints-pred go together")
    if args.attributes and not args.bundle:
        raise MixmatchError("--attributes needs --bundle")
    if (args.fitb or args.compat or args.ablations) and not args.bundle:
        raise MixmatchError("--fitb/--compat/--ablations need --bundle")
    if args.retrieval and not args.bundle:
        raise MixmatchError("--retrieval needs --bundle")
    for opt, path, what in (("--fitb", args.fitb, "questions"),
                            ("--compat", args.compat, "outfits")):
        if path and not os.path.isfile(path):
            raise MixmatchError(f"{opt} file not found: {path}")
        if path and not _has_a_line(path):
            # scored as nothing, it printed n 0 and an empty accuracy with exit 0: a
            # scripted check read a truncated or wrongly generated file as a pass
            raise MixmatchError(f"{opt} file {path} is empty: it has no {what} to score")
    result: dict[str, Any] = {}
    did = False
    if args.keypoints_truth or args.keypoints_pred:
        fn = _impl("features.fashionai.metrics", "evaluate_keypoint_files", 3)
        result["keypoints"] = fn(args.keypoints_truth, args.keypoints_pred)
        did = True
    if args.attributes:
        fn = _impl("recommender.evaluation.evaluate", "evaluate_attributes", 3)
        result.update(fn(args.bundle))
        did = True
    if args.fitb or args.compat or args.ablations:
        fn = _impl("recommender.evaluation.evaluate", "evaluate_bundle_files", 4)
        result.update(fn(args.bundle, fitb=args.fitb, compat=args.compat,
                         ablations=args.ablations, seed=args.seed,
                         print_text=not args.json))
        did = True
    if args.retrieval:
        fn = _impl("recommender.evaluation.retrieval", "evaluate_retrieval", 5)
        result["retrieval"] = fn(args.bundle, print_text=not args.json)
        did = True
    if not did:
        raise MixmatchError("nothing to evaluate: give --keypoints-truth/--keypoints-pred, "
                            "--attributes, --fitb/--compat, --ablations or --retrieval")
    if args.json:
        if "keypoints" in result and len(result) == 1:
            result = result["keypoints"]
        # NaN (a head or split with nothing to score) is printed as null: bare NaN is
        # not JSON, and jq or JSON.parse would refuse the whole output
        from recommender.json_output import dumps

        print(dumps(result, indent=2, sort_keys=True))
    elif "keypoints" in result:
        kp = result["keypoints"]
        print(f"keypoint NE: {kp['ne']:.4f} over {kp['n_keypoints']} keypoints")
        for cat, v in sorted(kp.get("per_category", {}).items()):
            print(f"  {cat:<9} NE {v['ne']:.4f}  ({v['n_keypoints']} keypoints)")
        if kp.get("n_skipped"):
            first = kp["skipped"][0]
            print(f"  {kp['n_skipped']} image(s) skipped: no normalising distance (e.g. "
                  f"{first['image_id']}: {first['reason']}; --json lists them)")
        if kp.get("n_extra_predictions"):
            # scored as the challenge scored a submission: only the ground truth's
            # images count, but a file of the wrong images should not look complete
            print(f"  {kp['n_extra_predictions']} predicted image(s) not in the ground "
                  f"truth, ignored")
    if args.attributes and not args.json and "heads" in result:
        per_image = result.get("per_image", {}).get("heads")
        extra = f"{'per image':>12}{'macro_f1':>10}" if per_image else ""
        print(f"{'head':<32}{'accuracy':>10}{'macro_f1':>10}{'n':>8}{extra}")
        for head, v in result["heads"].items():
            line = f"{head:<32}{v['accuracy']:>10.3f}{v['macro_f1']:>10.3f}{v['n']:>8}"
            if per_image:
                r = per_image[head]
                line += f"{r['accuracy']:>12.3f}{r['macro_f1']:>10.3f}"
            print(line)
        if per_image:
            print(f"pooled over colour variants ({result['group_column']}): "
                  f"{', '.join(result['pooled_heads'])}; 'per image' is each image's own "
                  f"prediction")
        if result.get("descriptor_fusion"):
            # a fused head has a weight; a head taking fused heads' evidence, {head: weight}
            print("fused with full-resolution descriptors: " + ", ".join(
                f"{h} (weight {w:g})" if not isinstance(w, dict) else
                f"{h} (evidence of " + ", ".join(f"{s} weight {v:g}" for s, v in w.items())
                + ")" for h, w in result["descriptor_fusion"].items()))
        if "fashionai_map" in result:
            print(f"FashionAI mAP: {result['fashionai_map']:.4f}")
    return 0


def cmd_serve(args) -> int:
    return _impl("api.server", "cli_serve", 6)(args)


def cmd_events(args) -> int:
    return _impl("api.events", "cli_events", 6)(args)


#: Stage settings of ``mixmatch up``: a fresh machine should serve within minutes, so
#: the networks train smaller and under a time budget (``mixmatch build`` trains the
#: full-size ones; ``make up`` is a demo, not a benchmark).
UP_PROFILE = {
    "attributes": {"preset": "small", "image_size": [112, 80], "epochs": 8,
                   "time_budget_s": 150},
    "keypoints": {"image_size": [112, 80], "epochs": 20, "time_budget_s": 120},
    "compatibility": {"context_params": {"members": 1, "num_threads": 2}},
}


def cmd_up(args) -> int:
    """Build the demo bundle if missing (or unfinished), validate it, then serve it.

    This is the README's first command. Building is idempotent: finished stages
    are skipped, so a second ``mixmatch up`` goes straight to serving.
    """
    from recommender.build import build_bundle
    from recommender.bundle import Bundle
    from recommender.catalog import catalog_summary, load_catalog

    if not args.no_serve:  # a taken port is named now, not after minutes of building
        _impl("api.server", "check_workers", 6)(args.workers)
        _impl("api.server", "check_port", 6)(args.host, args.port)
    build_bundle(args.bundle, source="demo", items=args.items, seed=0,
                 overrides={"stages": UP_PROFILE})
    b = Bundle.open(args.bundle)
    cat = load_catalog(b.path("catalog.parquet"))
    print(f"demo bundle {args.bundle} (version {b.version}) is ready:")
    print(catalog_summary(cat))
    print("stages: " + ", ".join(b.manifest.get("stages", {})))
    if args.no_serve:
        return 0
    args.config = None
    args.dev = False
    return cmd_serve(args)


# -- parser ---------------------------------------------------------------------------
def seed_value(text: str) -> int:
    """argparse type of every ``--seed``: a whole number >= 0.

    numpy's generators refuse a negative seed, and they are first called after
    minutes of work, or after ``mixmatch demo`` has started writing its folder.

    >>> seed_value("3")
    3
    """
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text!r}")
    return value


class HelpFormatter(argparse.HelpFormatter):
    """argparse's formatter, except that an epilog of examples keeps its lines.

    Wrapped like prose, the example commands would run into one paragraph; the
    descriptions are still wrapped to the terminal as argparse does.
    """

    def _fill_text(self, text, width, indent):
        if text.startswith("examples:\n"):
            return "\n".join(indent + line for line in text.splitlines())
        return super()._fill_text(text, width, indent)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mixmatch", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, fn, help_, examples=()):
        epilog = "examples:\n" + "\n".join(f"  {e}" for e in examples) if examples else None
        sp = sub.add_parser(name, help=help_, description=help_, epilog=epilog,
                            formatter_class=HelpFormatter)
        sp.set_defaults(func=fn)
        return sp

    sources = ("demo", "mango", "csv")
    # the range ``--port`` states is what api.server.check_port refuses outside of,
    # before serving and before ``up`` builds
    host_help = "address to listen on (default: %(default)s, this machine only)"
    port_help = "port to listen on, 0-65535 (default: %(default)s)"

    sp = add("ingest", cmd_ingest, "Map a source catalogue onto the canonical schema "
             "(catalog.parquet, outfits.parquet) and print a summary.")
    sp.add_argument("--source", choices=sources + ("fashionai",), required=True,
                    help="demo (a folder written by `mixmatch demo`), mango (the MANGO "
                    "datathon files), csv (your own, with --mapping) or fashionai "
                    "(FashionAI keypoint and attribute labels)")
    sp.add_argument("--data", metavar="DIR", help="source folder (demo: required; mango: "
                    "holds product_data.csv; csv: the catalogue file, instead of the "
                    f"mapping's; default for mango/fashionai: ${DATA_ENV}/<source>)")
    sp.add_argument("--mapping", metavar="FILE",
                    help="column-mapping file (TOML/JSON/YAML) for --source csv")
    sp.add_argument("--out", required=True, metavar="DIR", help="output folder")
    sp.add_argument("--no-check-images", action="store_true",
                    help="skip opening every image (faster on huge catalogues)")

    sp = add("demo", cmd_demo, "Generate the demo catalogue: packshots, attributes, "
             "FashionAI keypoints and outfits by a style grammar.")
    sp.add_argument("--out", required=True, metavar="DIR", help="folder to write: new, "
                    "empty or an earlier demo catalogue's (any other is refused)")
    sp.add_argument("--items", type=int, default=2000, metavar="N",
                    help="catalogue size, at least 1 (default: %(default)s; above "
                    "20,000 the table form: Parquet too, images for a sample)")
    sp.add_argument("--seed", type=seed_value, default=0,
                    help="seed of everything drawn: same seed, byte-identical files "
                    "(default: %(default)s)")
    sp.add_argument("--image-sample", type=int, default=None, metavar="N",
                    help="render images only for this many items (table form for "
                    "benchmarks; default: all items up to 20,000, else 2,000)")
    sp.add_argument("--outfits", type=int, default=None, metavar="N",
                    help="number of outfits (default: about items/3)")
    sp.add_argument("--fashionai-keypoints", default=None, metavar="CSV",
                    help="FashionAI train.csv to seed garment shapes (default: the shared "
                    "data's when present, else built-in shapes; 'none': built-in)")

    def bundle_build_args(sp, seed_help):
        sp.add_argument("--seed", type=seed_value, default=0, help=seed_help)
        sp.add_argument("--force", action="store_true",
                        help="re-run stages even when finished on the same inputs")
        sp.add_argument("--dry-run", action="store_true",
                        help="print each stage's plan (up to date, or would run and "
                        "why) and exit without writing anything; takes no lock, so it "
                        "works while a build runs")
        sp.add_argument("--engine", choices=("local", "dask"), default="local",
                        help="run the stages in this process (local) or on a Dask cluster "
                        "(dask; needs mixmatch[dask]) (default: %(default)s)")
        sp.add_argument("--scheduler", default=None, metavar="ADDRESS",
                        help="Dask scheduler address, e.g. tcp://host:8786 (default with "
                        "--engine dask: a local cluster for the run, 2 processes unless "
                        "the config's [dask] sizes it)")
        sp.add_argument("--config", default=None, metavar="FILE",
                        help="build config file (TOML/JSON/YAML) overriding stage "
                        "defaults ([stages.<stage>] tables, [dask] cluster sizes)")

    sp = add("build", cmd_build, "Run every stage into one bundle folder with a manifest.",
             examples=("mixmatch build --out bundles/demo",
                       "mixmatch build --source mango --out bundles/mango --holdout 0",
                       "mixmatch build --source csv --mapping shop.toml --out bundles/shop "
                       "--engine dask"))
    sp.add_argument("--source", choices=sources, default="demo",
                    help="demo (generated), mango (the MANGO datathon files) or csv (your "
                    "own, with --mapping) (default: %(default)s)")
    sp.add_argument("--data", metavar="DIR", help="source folder (demo: the catalogue "
                    "`mixmatch demo` wrote there, used as it is and never overwritten, or "
                    "generated there when it has none; default BUNDLE/source; mango: "
                    f"default ${DATA_ENV}/mango; csv: the catalogue file, instead of the "
                    "mapping's)")
    sp.add_argument("--mapping", metavar="FILE",
                    help="column-mapping file (TOML/JSON/YAML), needed by --source csv")
    sp.add_argument("--out", required=True, metavar="BUNDLE",
                    help="bundle folder (an unfinished build there resumes)")
    sp.add_argument("--items", type=int, default=None, metavar="N",
                    help="demo catalogue size (default: the size of the one in --data DIR, "
                    "else 2000; --source demo only). BUNDLE/source is regenerated for "
                    "another size; a --data catalogue of another size is refused")
    sp.add_argument("--stages", default=None, help="comma-separated subset of: ingest, "
                    "split, attributes, keypoints, features, compatibility, graph "
                    "(default: every stage of the source)")
    sp.add_argument("--quick", action="store_true",
                    help="smaller models and fewer epochs (tests, smoke runs)")
    sp.add_argument("--holdout", type=float, default=None, metavar="FRACTION",
                    help="share of outfits, in [0, 1), held out for the bundle's "
                    "evaluation files (default 0.2); 0 trains on every outfit: the bundle "
                    "to serve")
    bundle_build_args(sp, "seed of the demo catalogue (a --data one keeps its own, and "
                      "the build says so when it is another), the outfit split and the "
                      "models (default: 0)")
    # None when not given: a --data catalogue of another seed is said only when asked
    sp.set_defaults(seed=None)

    for name, fn, help_ in (
            ("features", cmd_features, "Extract the features table and embeddings of a "
             "bundle's catalogue (resumable, idempotent)."),
            ("graph", cmd_graph, "Build the garment graph of a bundle."),
            ("train", cmd_train, "Train a bundle's models: attribute network, keypoint "
             "detector, compatibility model.")):
        sp = add(name, fn, help_)
        sp.add_argument("--bundle", required=True,
                        help="bundle folder, as written by `mixmatch build`")
        sp.add_argument("--quick", action="store_true", help="smaller models and fewer "
                        "epochs (always on for a bundle built with --quick)")
        if name == "train":
            sp.add_argument("--stage", default=None,
                            help="comma-separated: attributes, keypoints, compatibility "
                            "(default: those a build of the bundle's source trains; "
                            "keypoints only for demo)")
        bundle_build_args(sp, "seed of the stages run (default: the bundle's own)")
        # the bundle's own seed unless one is given: a default of 0 would rebuild the
        # stage of a bundle built with another seed
        sp.set_defaults(seed=None)

    sp = add("make-eval", cmd_make_eval, "Split outfits and write FITB and compatibility "
             "files (Polyvore protocol).")
    sp.add_argument("--outfits", required=True, metavar="FILE",
                    help="outfits file, CSV or Parquet (outfit_id,item_id)")
    sp.add_argument("--catalog", required=True, metavar="FILE",
                    help="canonical catalogue (parquet/csv)")
    sp.add_argument("--seed", type=seed_value, default=0, help="seed of the split and of "
                    "the drawn wrong answers (default: %(default)s)")
    sp.add_argument("--out", required=True, metavar="DIR",
                    help="folder for the FITB and compatibility files")
    sp.add_argument("--test-fraction", type=float, default=0.2, metavar="FRACTION",
                    help="share of outfits held out, in [0, 1) (default: %(default)s)")

    sp = add("evaluate", cmd_evaluate, "Score a bundle or prediction files: FITB, "
             "compatibility AUC, attributes, keypoint NE, retrieval.",
             examples=("mixmatch evaluate --bundle B --fitb B/eval/fitb.jsonl "
                       "--compat B/eval/compatibility.tsv",
                       "mixmatch evaluate --bundle B --attributes --retrieval --json",
                       "mixmatch evaluate --keypoints-truth truth.csv --keypoints-pred "
                       "pred.csv"))
    sp.add_argument("--bundle", help="bundle folder, needed by --fitb, --compat, "
                    "--attributes, --ablations and --retrieval")
    sp.add_argument("--fitb", metavar="FILE",
                    help="FITB JSONL (a bundle's: BUNDLE/eval/fitb.jsonl)")
    sp.add_argument("--compat", metavar="FILE",
                    help="compatibility TSV (a bundle's: BUNDLE/eval/compatibility.tsv)")
    sp.add_argument("--attributes", action="store_true",
                    help="per-head accuracy and macro-F1 on held-out products")
    sp.add_argument("--keypoints-truth", metavar="CSV",
                    help="FashionAI keypoint CSV (truth; with --keypoints-pred)")
    sp.add_argument("--keypoints-pred", metavar="CSV",
                    help="FashionAI keypoint CSV (predictions)")
    sp.add_argument("--ablations", action="store_true", help="feature-group ablations "
                    "(retrains the compatibility model per step; needs a holdout)")
    sp.add_argument("--retrieval", action="store_true",
                    help="complementary-item Recall@10/NDCG@10 per strategy")
    sp.add_argument("--seed", type=seed_value, default=0, help="seed of FITB tie-breaking "
                    "and of the random baseline (default: %(default)s)")
    sp.add_argument("--json", action="store_true", help="print one JSON object")

    sp = add("serve", cmd_serve, "Serve a bundle over HTTP (gunicorn; --dev for Flask's "
             "server).")
    sp.add_argument("--bundle", required=True, help="bundle folder to serve")
    sp.add_argument("--host", default="127.0.0.1", help=host_help)
    sp.add_argument("--port", type=int, default=8000, help=port_help)
    sp.add_argument("--workers", type=int, default=2, metavar="N",
                    help="gunicorn worker processes, at least 1 (default: %(default)s; "
                    "not used with --dev)")
    sp.add_argument("--config", default=None, metavar="FILE", help="API config file "
                    "(experiments, rules, events database, CORS, admin token)")
    sp.add_argument("--dev", action="store_true", help="Flask's development server (one "
                    "threaded process) instead of gunicorn, for debugging")

    sp = add("events", cmd_events, "Back up or restore the events database (exposures, "
             "shop events), safely while servers write to it.")
    actions = sp.add_subparsers(dest="action", required=True, metavar="ACTION")
    ap = actions.add_parser("backup", help="copy the database into a new file",
                            description="Copy the events database into a new file, as "
                            "of one commit (SQLite's online backup; `cp` misses the "
                            "events still in its -wal file).")
    ap.add_argument("--db", required=True, metavar="DB", help="the events database "
                    "(EVENTS_DB; default DATA_DIR/events.db: <bundle>/serving/events.db)")
    ap.add_argument("--out", required=True, metavar="FILE",
                    help="the backup file (must not exist)")
    ap = actions.add_parser("restore", help="replace the database's rows with a "
                            "backup's", description="Replace the rows of the events "
                            "database with a backup's, in one transaction the servers "
                            "wait for; they keep serving and write into the restored "
                            "database.")
    ap.add_argument("--db", required=True, metavar="DB",
                    help="the events database the servers use")
    ap.add_argument("--from", dest="source", required=True, metavar="FILE",
                    help="a backup made by `mixmatch events backup`")

    sp = add("up", cmd_up, "Build the demo bundle when missing, then serve it.",
             examples=("mixmatch up                 # bundles/demo on http://127.0.0.1:8000",
                       "mixmatch up --port 8001     # when 8000 is taken",
                       "mixmatch up --no-serve      # build and validate only"))
    sp.add_argument("--bundle", default="bundles/demo", help="bundle folder, built "
                    "there when missing or unfinished (default: %(default)s)")
    sp.add_argument("--items", type=int, default=1000, metavar="N", help="demo catalogue "
                    "size (default: %(default)s; built with seed 0 and smaller networks "
                    "than `mixmatch build` trains)")
    sp.add_argument("--host", default="127.0.0.1", help=host_help)
    sp.add_argument("--port", type=int, default=8000, help=port_help)
    sp.add_argument("--workers", type=int, default=2, metavar="N",
                    help="gunicorn worker processes, at least 1 (default: %(default)s)")
    sp.add_argument("--no-serve", action="store_true", help="build and validate only")
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except StageNotAvailable as exc:
        print(f"mixmatch {args.command}: {exc}", file=sys.stderr)
        return 3
    except MixmatchError as exc:
        print(f"mixmatch {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"mixmatch {args.command}: interrupted; finished work is kept and the "
              "next run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
