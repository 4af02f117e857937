"""Pictures for merchandisers: item photos in grids with scores and reasons.

matplotlib is imported only inside the functions (serving never pays for it), and
figures are built with :class:`matplotlib.figure.Figure` directly rather than
through pyplot: nothing is registered globally, figures are freed with their last
reference, and it works under any backend (Agg in CI). In a notebook, a Figure
returned as a cell's last value is shown once (after ``%matplotlib inline``).

- :class:`ItemImages` -- thumbnails of catalogue items (letterboxed on white; a grey
  placeholder with the category when the photo is missing);
- :func:`grid` -- rows of item photos, each with a caption (the building block);
- :func:`complements_figure`, :func:`looks_figure`, :func:`rules_diff_figure`,
  :func:`outfits_figure` -- engine responses as pictures;
- :func:`calibration_figure`, :func:`importance_figure`, :func:`metrics_figure`,
  :func:`ab_rates_figure`, :func:`ab_counts_figure` -- plots for the reports.

Examples
--------
>>> import pandas as pd
>>> cat = pd.DataFrame({"item_id": ["a"], "category": ["bag"], "image_path": [""]})
>>> images = ItemImages(cat, image_root=None, size=32)
>>> images.get("a").shape                      # placeholder: no photo
(32, 32, 3)
>>> fig = grid([("bags", [{"item_id": "a", "score": 0.9, "reason": "goes with it"}])],
...            images)
>>> len(fig.axes)
1
"""
from __future__ import annotations

import os
import textwrap
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

#: Border colours of marked items (rules diffs, liked/disliked looks).
MARK_COLOURS = {"added": "#1a9850", "removed": "#d73027", "pinned": "#4575b4",
                "fallback": "#fdae61", "real": "#1a9850", "fake": "#d73027"}

#: Bar colour of each scorer in the report plots, by name: colours by row position
#: made the model blue in one figure and orange in the next (a pivot sorts the rows).
SCORER_COLOURS = {"model": "#4575b4", "cooccurrence": "#fdae61", "popularity": "#74add1",
                  "random": "#bbbbbb"}


class ItemImages:
    """Square thumbnails of catalogue items, cached.

    Parameters
    ----------
    catalog : DataFrame with ``item_id``, ``image_path`` (relative to
        ``image_root``) and, for captions and placeholders, ``category``,
        ``colour``, ``subcategory``.
    image_root : folder the image paths are relative to (None: no photos).
    size : thumbnail side in pixels.
    """

    def __init__(self, catalog: pd.DataFrame, image_root: str | os.PathLike | None,
                 size: int = 128):
        self.catalog = catalog.set_index(catalog["item_id"].astype(str), drop=False)
        self.image_root = Path(image_root) if image_root else None
        self.size = int(size)
        self._cache: dict[str, np.ndarray] = {}

    @classmethod
    def from_engine(cls, engine, size: int = 128) -> "ItemImages":
        return cls(engine.catalog, engine.bundle.image_root, size)

    @classmethod
    def from_bundle(cls, bundle_path: str | os.PathLike, size: int = 128) -> "ItemImages":
        from recommender.bundle import Bundle

        b = Bundle.open(bundle_path)
        return cls(pd.read_parquet(b.path("catalog.parquet")), b.image_root, size)

    def row(self, item_id: str) -> pd.Series | None:
        try:
            return self.catalog.loc[str(item_id)]
        except KeyError:
            return None

    def label(self, item_id: str) -> str:
        """A short description: ``colour subcategory`` (or the category)."""
        r = self.row(item_id)
        if r is None:
            return str(item_id)
        parts = [str(r.get(c, "") or "") for c in ("colour", "subcategory")]
        text = " ".join(p for p in parts if p and p != "nan").lower()
        return text or str(r.get("category", item_id))

    def path(self, item_id: str) -> Path | None:
        r = self.row(item_id)
        if r is None or self.image_root is None:
            return None
        rel = str(r.get("image_path", "") or "")
        return self.image_root / rel if rel else None

    def get(self, item_id: str) -> np.ndarray:
        """(size, size, 3) uint8: the photo letterboxed on white, or a placeholder."""
        key = str(item_id)
        img = self._cache.get(key)
        if img is None:
            img = self._load(key)
            self._cache[key] = img
        return img

    def _load(self, item_id: str) -> np.ndarray:
        from PIL import Image

        from features.exceptions import InputError, NotFoundError
        from features.imaging import load_rgb

        p = self.path(item_id)
        if p is not None and p.is_file():
            try:
                # decoded as the pipeline sees it (upright, alpha on white), shrunk
                # while decoding (a JPEG's draft): a full-size decode of a large
                # studio photo took seconds, for a 160-pixel tile
                im = Image.fromarray(load_rgb(p, max_side=self.size))
            except (InputError, NotFoundError):   # NotFound: removed since is_file
                # unreadable photo, or one the decoder refuses (past PIL's pixel
                # limit, 32-bit samples; an ingest with --no-check-images lets them
                # through): the placeholder says so by being grey, and the rest of
                # the sheet is drawn
                pass
            else:
                canvas = Image.new("RGB", (self.size, self.size), (255, 255, 255))
                canvas.paste(im, ((self.size - im.width) // 2,
                                  (self.size - im.height) // 2))
                return np.asarray(canvas, dtype=np.uint8)
        return np.full((self.size, self.size, 3), 225, dtype=np.uint8)


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=80)


def _caption(item: dict, images: ItemImages, width: int) -> str:
    lines = [textwrap.shorten(images.label(item["item_id"]), width, placeholder="…")]
    if item.get("score") is not None:
        lines.append(f"{item['item_id']}  {item['score']:.2f}")
    else:
        lines.append(str(item["item_id"]))
    if item.get("reason"):
        lines += textwrap.wrap(str(item["reason"]), width)[:2]
    if item.get("note"):
        lines.append(str(item["note"]))
    return "\n".join(lines)


def grid(rows: Sequence[tuple[str, Sequence[dict]]], images: ItemImages, *,
         title: str | None = None, cols: int | None = None, cell: float = 1.7,
         caption_width: int = 22):
    """Rows of item photos with captions; returns a matplotlib Figure.

    ``rows``: ``(row title, items)``; an item is a dict with ``item_id`` and
    optionally ``score``, ``reason``, ``note`` and ``mark`` (a key of
    :data:`MARK_COLOURS`: the photo gets a coloured frame). Row titles go on the
    first photo's y axis. Empty rows show "(nothing)".
    """
    rows = [(t, list(items)) for t, items in rows]
    ncols = cols or max([len(items) for _, items in rows] + [1])
    nrows = max(len(rows), 1)
    fig = _figure(cell * ncols + 0.8, (cell + 0.75) * nrows + (0.4 if title else 0))
    for r, (row_title, items) in enumerate(rows):
        for c in range(ncols):
            ax = fig.add_subplot(nrows, ncols, r * ncols + c + 1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(items):
                for s in ax.spines.values():
                    s.set_visible(False)
                if c == 0:
                    ax.text(0.5, 0.5, "(nothing)", ha="center", va="center", fontsize=8,
                            color="#777777", transform=ax.transAxes)
                    ax.set_ylabel(row_title, fontsize=9)
                continue
            it = items[c]
            ax.imshow(images.get(it["item_id"]))
            ax.set_xlabel(_caption(it, images, caption_width), fontsize=6.5)
            mark = it.get("mark")
            colour = MARK_COLOURS.get(mark) if mark else None
            for s in ax.spines.values():
                s.set_edgecolor(colour or "#cccccc")
                s.set_linewidth(3.0 if colour else 0.8)
            if c == 0:
                ax.set_ylabel(row_title, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=11)
    # keep the title's strip free: tight_layout alone lets the first row overlap it
    top = 1 - 0.45 / fig.get_figheight() if title else 1
    fig.tight_layout(rect=(0, 0, 1, top))
    return fig


def _items(group_items: Iterable[dict]) -> list[dict]:
    out = []
    for it in group_items:
        d = dict(it)
        if d.get("pinned"):
            d["mark"], d["note"] = "pinned", "pinned"
        elif d.get("fallback"):
            d["mark"], d["note"] = "fallback", "fallback fill"
        out.append(d)
    return out


def complements_figure(response: dict, images: ItemImages, *, title: str | None = None):
    """A complements response: the anchor, then one row per category group."""
    anchor = response.get("item_id")
    rows = [("item", [{"item_id": a} for a in response.get("items", [anchor])])]
    rows += [(g["category"], _items(g["items"])) for g in response.get("groups", [])]
    t = title or (f"complements of {anchor} ({images.label(anchor)}) -- rules "
                  f"{response.get('rules_version')}")
    return grid(rows, images, title=t)


def looks_figure(response: dict, images: ItemImages, *, title: str | None = None):
    """A ``complete`` response: one row per look, given items framed in blue."""
    rows = []
    for n, look in enumerate(response.get("looks", []), 1):
        items = [{"item_id": it["item_id"], "note": "given" if it.get("given") else None,
                  "mark": "pinned" if it.get("given") else None} for it in look["items"]]
        # a look of one item has nothing to score (score None)
        score = look.get("score")
        rows.append((f"look {n}\n" + ("no score" if score is None else f"score {score:.2f}"),
                     items))
    if not rows:
        rows = [("no look", [])]
    return grid(rows, images, title=title or f"completed looks for {response.get('items')}")


def rules_diff_figure(diff: pd.DataFrame, images: ItemImages, *, only_changed: bool = True,
                      max_rows: int = 8, title: str = "before / after the rules change"):
    """A :func:`recommender.rules.rules_diff` table as pictures.

    For each (item, category) that changed: a *before* row with removed items framed
    red, and an *after* row with added items framed green. Past ``max_rows`` groups
    the title says how many were left out: cut silently, a change to the later items'
    groups looked like no change at all.
    """
    d = diff[diff["changed"]] if only_changed else diff
    if len(d) > max_rows:
        what = "changed groups" if only_changed else "groups"
        title = (f"{title}\n(first {max_rows} of {len(d)} {what}; "
                 f"max_rows={len(d)} shows all)")
    rows = []
    for _, r in d.head(max_rows).iterrows():
        removed, added = set(r["removed"]), set(r["added"])
        rows.append((f"{r['item_id']}\n{r['category']}\nbefore",
                     [{"item_id": i, "mark": "removed" if i in removed else None,
                       "note": "removed" if i in removed else None} for i in r["before"]]))
        rows.append((f"{r['item_id']}\n{r['category']}\nafter",
                     [{"item_id": i, "mark": "added" if i in added else None,
                       "note": "added" if i in added else None} for i in r["after"]]))
    if not rows:
        rows = [("no change", [])]
    return grid(rows, images, title=title)


def outfits_figure(outfits: Sequence[dict], images: ItemImages, *, title: str):
    """Outfits (``{"items", "score", "label"?}``) one per row; a known label frames
    the row's photos green (a real look) or red (a corrupted one)."""
    rows = []
    for o in outfits:
        label = o.get("label")
        mark = None if label is None else ("real" if label else "fake")
        kind = "" if label is None else ("\nreal look" if label else "\nrandom swap")
        rows.append((f"score {o['score']:.2f}{kind}",
                     [{"item_id": i, "mark": mark} for i in o["items"]]))
    return grid(rows or [("none", [])], images, title=title)


# -- plots --------------------------------------------------------------------------
def calibration_figure(bins: pd.DataFrame, *, title: str = "calibration of compatibility "
                       "scores", base_rate: float | None = None):
    """Reliability diagram from :func:`recommender.report.calibration_bins`: observed
    positive rate against mean score per bin (marker area ~ count), the diagonal,
    and a histogram of the counts below."""
    fig = _figure(5.0, 5.5)
    ax = fig.add_axes((0.14, 0.36, 0.8, 0.56))
    ax.plot([0, 1], [0, 1], ls="--", color="#999999", lw=1, label="perfectly calibrated")
    if base_rate is not None:
        ax.axhline(base_rate, color="#fdae61", lw=1, label=f"base rate {base_rate:.2f}")
    if len(bins):
        size = 20 + 200 * bins["n"] / bins["n"].max()
        ax.plot(bins["mean_score"], bins["positive_rate"], color="#4575b4", lw=1.5,
                label="model")
        ax.scatter(bins["mean_score"], bins["positive_rate"], s=size, color="#4575b4",
                   zorder=3)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_ylabel("observed rate of real pairs")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left")
    hx = fig.add_axes((0.14, 0.08, 0.8, 0.2), sharex=ax)
    if len(bins):
        hx.bar((bins["lo"] + bins["hi"]) / 2, bins["n"], width=(bins["hi"] - bins["lo"]) * 0.9,
               color="#bbbbbb")
    hx.set_xlabel("mean predicted score")
    hx.set_ylabel("pairs")
    return fig


def importance_figure(tables: dict, top: int = 15):
    """Two bar charts: gain share per feature group, and the top features."""
    fig = _figure(10.0, max(3.0, 0.28 * top + 1.2))
    g, f = tables["groups"], tables["features"].head(top)
    ax1 = fig.add_subplot(1, 2, 1)
    ax1.barh(g["group"][::-1], g["share"][::-1], color="#4575b4")
    ax1.set_xlabel("share of total gain")
    ax1.set_title("by feature group", fontsize=10)
    ax2 = fig.add_subplot(1, 2, 2)
    ax2.barh(f["feature"][::-1], f["share"][::-1], color="#74add1")
    ax2.set_xlabel("share of total gain")
    ax2.set_title(f"top {len(f)} features", fontsize=10)
    ax2.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    return fig


def metrics_figure(table: pd.DataFrame, columns: Sequence[str], *, title: str,
                   chance: dict | None = None):
    """Grouped bars: one group per metric column, one bar per scorer (row).

    A scorer keeps its colour (:data:`SCORER_COLOURS`) whatever its row, so figures
    read alike; the legend sits right of the bars, where it covers none (inside, it
    hid the model's bars near 1)."""
    fig = _figure(1.6 * len(columns) + 3.5, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    n = len(table)
    width = 0.8 / max(n, 1)
    x = np.arange(len(columns))
    others = iter(["#d73027", "#1a9850", "#984ea3", "#a65628", "#f781bf", "#999999"])
    for k, (_, r) in enumerate(table.iterrows()):
        vals = [np.nan if r[c] is None else float(r[c]) for c in columns]
        colour = SCORER_COLOURS.get(str(r["scorer"])) or next(others, None)
        ax.bar(x + (k - (n - 1) / 2) * width, vals, width, label=r["scorer"], color=colour)
    for c, v in (chance or {}).items():
        if c in columns:
            i = list(columns).index(c)
            ax.hlines(v, i - 0.45, i + 0.45, colors="#333333", linestyles=":", lw=1)
    ax.set_xticks(x, list(columns))
    ax.set_ylim(0, 1)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    fig.tight_layout()
    return fig


def ab_rates_figure(variants: pd.DataFrame, control: str, *,
                    events: Sequence[str] = ("click", "add_to_cart", "purchase"),
                    title: str = "", confidence: float = 0.95):
    """Per event type: each variant's rate with its interval (left), and its
    difference to the control with the interval (right; zero marked).

    ``confidence`` is the level the intervals were computed at (what was passed to
    :func:`api.ab_analysis.ab_summary`); the panel titles name it."""
    if not (isinstance(confidence, (int, float)) and 0 < confidence < 1):
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    level = f"{100 * confidence:g}% CI"
    fig = _figure(10.0, 1.1 + 1.3 * len(events))
    names = sorted(variants["variant"].unique(), key=lambda v: (v != control, v))
    for k, ev in enumerate(events):
        d = variants[variants["event"] == ev].set_index("variant").reindex(names)
        y = np.arange(len(names))[::-1]
        ax = fig.add_subplot(len(events), 2, 2 * k + 1)
        ax.errorbar(d["rate"], y, xerr=[d["rate"] - d["rate_lo"], d["rate_hi"] - d["rate"]],
                    fmt="o", color="#4575b4", capsize=3)
        ax.set_yticks(y, names)
        ax.set_title(f"{ev} rate per unit ({level})", fontsize=9)
        ax.margins(y=0.4)
        ax2 = fig.add_subplot(len(events), 2, 2 * k + 2)
        other = d.drop(index=control, errors="ignore")
        y2 = np.arange(len(other))[::-1]
        ax2.axvline(0, color="#999999", lw=1)
        if len(other):
            for yy, (_, r) in zip(y2, other.iterrows()):
                # green: the interval excludes 0 upwards; red: downwards; grey: neither
                colour = ("#1a9850" if r["diff_lo"] > 0 else "#d73027" if r["diff_hi"] < 0
                          else "#555555")
                ax2.errorbar([r["diff"]], [yy], xerr=[[r["diff"] - r["diff_lo"]],
                                                      [r["diff_hi"] - r["diff"]]],
                             fmt="o", color=colour, capsize=3)
            ax2.set_yticks(y2, [f"{v} - {control}" for v in other.index])
        ax2.set_title(f"{ev}: difference to {control} ({level})", fontsize=9)
        ax2.margins(y=0.4)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    return fig


def ab_counts_figure(counts: pd.DataFrame, srm: dict | None, *, title: str = "units per "
                     "variant"):
    """Units per variant against the count the configured weights expect (SRM).

    The legend sits right of the bars: inside, it covered the first variant's
    expected-count mark, the one thing the figure is for."""
    fig = _figure(6.2, 3.0)
    ax = fig.add_subplot(1, 1, 1)
    x = np.arange(len(counts))
    ax.bar(x, counts["units"], color="#74add1", label="observed units")
    if srm:
        exp = [srm["expected"].get(v, np.nan) for v in counts["variant"]]
        ax.scatter(x, exp, marker="_", s=900, color="#d73027", label="expected", zorder=3)
        title += f"\nSRM chi2={srm['chi2']:.2f}, p={srm['p_value']:.3g}" + (
            " -- MISMATCH" if srm["mismatch"] else "")
    ax.set_xticks(x, counts["variant"])
    ax.set_title(title, fontsize=9)
    # markerscale: the expected mark is a bar-wide line, wider than the legend itself
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0,
              markerscale=0.3)
    fig.tight_layout()
    return fig
