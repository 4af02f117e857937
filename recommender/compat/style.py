"""A learned "style embedding": item vectors from content alone, trained on outfits.

Each item is described only by its content — categorical codes (subcategory,
colour group, season, product type, fabric, predicted attributes, ...) and numeric
features (pixel colours, shape, visual embedding) — and a small shared tower maps
that description to a vector. Training pulls the vectors of items worn together
closer than those of the same pair with one side swapped for another item of the
same subcategory (the evaluation's negative). Nothing is keyed to an item id, so a
new arrival gets its vector from its content, and the cosine of two vectors is a
pair feature for the LightGBM model.

Leakage. A vector trained on outfit ``o`` "knows" ``o``; a LightGBM training row
from ``o`` must not see it. :class:`PairFeaturizer` therefore fits ``n_folds``
extra towers, each on the outfits outside one fold, and gives a training row the
vectors of the tower that never saw its outfit (cross-fitting). Scoring uses the
tower trained on all training outfits.

The tower is a torch module (:class:`StyleNet`, config :class:`StyleConfig`);
after fitting, :class:`StyleEmbedding` keeps its weights as numpy arrays, so the
forward pass at serving time is a few matrix products and the weights are saved
with the rest of the compatibility arrays (no pickle).

Examples
--------
>>> import numpy as np
>>> codes = {"colour": np.array([1, 1, 2, 2] * 10)}
>>> outfits = [np.array([i, i + 2]) for i in range(0, 40, 4)] + \\
...           [np.array([i + 1, i + 3]) for i in range(0, 40, 4)]
>>> subs = np.zeros(40, np.int64)
>>> st = StyleEmbedding(StyleConfig(epochs=3)).fit(codes, {"colour": 3}, None, outfits, subs)
>>> st.transform(codes, None).shape
(40, 16)
"""
from __future__ import annotations

import dataclasses

import numpy as np

from features.exceptions import BundleError, InputError, NotFittedError
from features.settings import check_value

#: Items per block of :meth:`StyleEmbedding.transform`'s forward pass.
TRANSFORM_BLOCK = 65_536


@dataclasses.dataclass
class StyleConfig:
    """Settings of the style tower and its training.

    field_dim : embedding size of each categorical field value
    hidden : hidden units of the tower (0: a linear tower)
    dim : output vector size
    epochs : maximum passes over the training pairs
    batch_size, lr, weight_decay : Adam settings
    val_fraction : share of the outfits held out to stop early (by outfit)
    patience : epochs without validation improvement before stopping
    num_threads : torch threads
    seed : initialisation, negatives and split
    """

    field_dim: int = 8
    hidden: int = 64
    dim: int = 16
    epochs: int = 12
    batch_size: int = 2048
    lr: float = 3e-3
    weight_decay: float = 1e-5
    val_fraction: float = 0.1
    patience: int = 2
    num_threads: int = 1
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict | None) -> "StyleConfig":
        """A checked config from a ``style`` table: InputError naming an unknown key
        (it was a TypeError from the constructor, once the stage had started) or a
        value :meth:`validate` refuses."""
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise InputError(f"unknown style settings {bad}", field="style", value=bad,
                             allowed=sorted(known))
        return cls(**d).validate()

    def validate(self, what: str = "style ") -> "StyleConfig":
        """``self``, or InputError naming the first setting of the wrong kind or out of
        its range. The limits are what training needs: ``epochs = 0`` kept no weights
        (a torch error at the end of the fit), ``batch_size = 0`` and
        ``num_threads = 0`` are torch or range() errors, a negative seed numpy's.
        ``what`` starts each message (a build's check passes "": its ``[stages...]``
        prefix names the table)."""
        for name, least in (("field_dim", 1), ("hidden", 0), ("dim", 1), ("epochs", 1),
                            ("batch_size", 1), ("patience", 1), ("num_threads", 1),
                            ("seed", 0)):
            check_value(name, getattr(self, name), int, least=least, what=what)
        check_value("lr", self.lr, float, above=0, what=what)
        check_value("weight_decay", self.weight_decay, float, least=0, what=what)
        # the held-out share stops training early: none or all of it leaves no signal
        check_value("val_fraction", self.val_fraction, float, above=0, below=1,
                    what=what)
        return self


def _torch_modules():
    import torch
    from torch import nn

    class StyleNet(nn.Module):
        """Content -> style vector: field embeddings and numbers, one hidden layer."""

        def __init__(self, n_values: list[int], n_num: int, cfg: StyleConfig):
            super().__init__()
            self.emb = nn.ModuleList(nn.Embedding(v, cfg.field_dim) for v in n_values)
            d_in = cfg.field_dim * len(n_values) + n_num
            if cfg.hidden:
                self.l1 = nn.Linear(d_in, cfg.hidden)
                self.l2 = nn.Linear(cfg.hidden, cfg.dim)
            else:
                self.l1 = None
                self.l2 = nn.Linear(d_in, cfg.dim)
            self.scale = nn.Parameter(torch.tensor(5.0))
            self.bias = nn.Parameter(torch.tensor(0.0))

        def forward(self, codes, num):
            # codes (B, F) int64, num (B, K) float32 -> (B, dim) unit vectors
            parts = [e(codes[:, k]) for k, e in enumerate(self.emb)] + [num]
            h = torch.cat(parts, dim=1)
            if self.l1 is not None:
                h = torch.relu(self.l1(h))
            v = self.l2(h)
            return v / v.norm(dim=1, keepdim=True).clamp_min(1e-6)

        def pair_logit(self, ca, na, cb, nb):
            return self.scale * (self(ca, na) * self(cb, nb)).sum(dim=1) + self.bias

    return torch, nn, StyleNet


def outfit_pairs(outfits) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(a, b, outfit) of every unordered pair inside each outfit."""
    a, b, g = [], [], []
    for k, o in enumerate(outfits):
        o = np.unique(np.asarray(o, np.int64))
        i, j = np.triu_indices(len(o), 1)
        a.append(o[i])
        b.append(o[j])
        g.append(np.full(len(i), k))
    if not a:
        z = np.zeros(0, np.int64)
        return z, z, z
    return np.concatenate(a), np.concatenate(b), np.concatenate(g)


def same_group_swap(items: np.ndarray, groups: np.ndarray, rng) -> np.ndarray:
    """A random item of the same group (e.g. subcategory) for each of ``items``."""
    order = np.argsort(groups, kind="stable")
    srt = groups[order]
    g = groups[items]
    lo = np.searchsorted(srt, g, "left")
    hi = np.searchsorted(srt, g, "right")
    return order[lo + (rng.random(len(items)) * (hi - lo)).astype(np.int64)]


def fit_standardiser(num: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each numeric input column, NaN ignored (a column
    with no finite value gets mean 0 and sd 1; so does a constant one's sd)."""
    if num is None or not num.shape[1]:
        return np.zeros(0), np.zeros(0)
    num = np.asarray(num, np.float64)
    ok = np.isfinite(num)
    cnt = np.maximum(ok.sum(axis=0), 1)
    mean = np.where(ok, num, 0.0).sum(axis=0) / cnt
    sd = np.sqrt((np.where(ok, num - mean, 0.0) ** 2).sum(axis=0) / cnt)
    return mean, np.where(sd > 1e-9, sd, 1.0)


def content_rows(codes: dict, num: np.ndarray | None) -> int:
    """Number of items in a content tower's inputs (codes first, else numbers)."""
    return len(next(iter(codes.values()))) if codes else (0 if num is None else len(num))


def content_inputs(fields, n_values, mean, std, codes: dict, num: np.ndarray | None, n: int,
                   what: str) -> tuple[np.ndarray, np.ndarray]:
    """(codes (n, F) int64, numbers (n, K) float32) as a content tower reads them.

    Codes outside a field's range become 0 (unknown); numbers are standardised,
    missing ones become 0 (the mean) and the rest are clipped to +-5 sd. ``what``
    names the model in errors.
    """
    c = np.zeros((n, len(fields)), np.int64)
    for k, f in enumerate(fields):
        if f not in codes:
            raise InputError(f"{what} needs field {f!r}", field=f)
        c[:, k] = np.clip(np.asarray(codes[f], np.int64), 0, n_values[k] - 1)
    if mean.size:
        if num is None or num.shape[1] != mean.size:
            raise InputError(f"{what} needs {mean.size} numeric inputs per item", field="num")
        x = (np.asarray(num, np.float64) - mean) / std
        x = np.clip(np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0), -5, 5)
    else:
        x = np.zeros((n, 0))
    return c, x.astype(np.float32)


class StyleEmbedding:
    """Content-only item vectors fitted on outfits (sklearn-style).

    Parameters
    ----------
    config : :class:`StyleConfig`

    Attributes (after fit)
    ----------------------
    fields_ : categorical field names, in tower order
    n_values_ : codes per field (0 = unknown)
    num_mean_, num_std_ : standardisation of the numeric inputs
    weights_ : dict of numpy arrays (the tower)
    history_ : validation log-loss per epoch
    """

    def __init__(self, config: StyleConfig | None = None):
        self.config = config or StyleConfig()

    def _inputs(self, codes: dict, num: np.ndarray | None, n: int):
        return content_inputs(self.fields_, self.n_values_, self.num_mean_, self.num_std_,
                              codes, num, n, "style embedding")

    def fit(self, codes: dict[str, np.ndarray], n_values: dict[str, int],
            num: np.ndarray | None, outfits, groups: np.ndarray) -> "StyleEmbedding":
        """Fit on ``outfits`` (lists of item rows); negatives swap within ``groups``."""
        cfg = self.config
        torch, nn, StyleNet = _torch_modules()
        torch.set_num_threads(cfg.num_threads)
        torch.manual_seed(cfg.seed)
        rng = np.random.default_rng(cfg.seed)
        self.fields_ = list(codes)
        self.n_values_ = [int(n_values[f]) for f in self.fields_]
        n = len(groups)
        self.num_mean_, self.num_std_ = fit_standardiser(num)
        c, x = self._inputs(codes, num, n)
        outfits = [o for o in outfits if len(np.unique(o)) >= 2]
        if len(outfits) < 2:
            raise InputError("the style embedding needs at least 2 outfits of 2+ items",
                             field="outfits")
        perm = rng.permutation(len(outfits))
        n_val = max(1, int(round(cfg.val_fraction * len(outfits))))
        a, b, _ = outfit_pairs([outfits[k] for k in perm[n_val:]])
        va, vb, _ = outfit_pairs([outfits[k] for k in perm[:n_val]])
        groups = np.asarray(groups, np.int64)
        # validation pairs: fixed negatives, so epochs compare on the same rows
        vna = same_group_swap(vb, groups, rng)
        vA = np.r_[va, va]
        vB = np.r_[vb, vna]
        vy = np.r_[np.ones(len(va)), np.zeros(len(va))].astype(np.float32)
        ct, xt = torch.from_numpy(c), torch.from_numpy(x)
        net = StyleNet(self.n_values_, x.shape[1], cfg)
        opt = torch.optim.Adam(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        loss_fn = nn.BCEWithLogitsLoss()

        def val_loss():
            with torch.no_grad():
                ia, ib = torch.from_numpy(vA), torch.from_numpy(vB)
                lg = net.pair_logit(ct[ia], xt[ia], ct[ib], xt[ib])
                return float(loss_fn(lg, torch.from_numpy(vy)))

        best, best_state, bad = np.inf, None, 0
        self.history_ = []
        for _ in range(cfg.epochs):
            # each positive pair and a same-group swap of one of its sides
            flip = rng.random(len(a)) < 0.5
            keep = np.where(flip, b, a)
            repl = np.where(flip, a, b)
            neg = same_group_swap(repl, groups, rng)
            A = np.r_[a, keep]
            B = np.r_[b, neg]
            y = np.r_[np.ones(len(a)), np.zeros(len(a))].astype(np.float32)
            order = rng.permutation(len(A))
            net.train()
            for s in range(0, len(order), cfg.batch_size):
                k = order[s:s + cfg.batch_size]
                ia, ib = torch.from_numpy(A[k]), torch.from_numpy(B[k])
                lg = net.pair_logit(ct[ia], xt[ia], ct[ib], xt[ib])
                loss = loss_fn(lg, torch.from_numpy(y[k]))
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            v = val_loss()
            self.history_.append(v)
            if v < best - 1e-4:
                best, bad = v, 0
                best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        net.load_state_dict(best_state)
        self.weights_ = {k: t.detach().cpu().numpy().astype(np.float32)
                         for k, t in net.state_dict().items()}
        return self

    def transform(self, codes: dict[str, np.ndarray], num: np.ndarray | None) -> np.ndarray:
        """(n, dim) unit style vectors of items from their content (numpy forward pass)."""
        if not hasattr(self, "weights_"):
            raise NotFittedError("StyleEmbedding used before fit/load")
        n = content_rows(codes, num)
        if n > TRANSFORM_BLOCK:
            # in blocks of rows: the layers' activations for a million items at once
            # are gigabytes (the fit's fold towers and partner sums transform them all)
            return np.concatenate([
                self.transform({f: v[s:s + TRANSFORM_BLOCK] for f, v in codes.items()},
                               None if num is None else num[s:s + TRANSFORM_BLOCK])
                for s in range(0, n, TRANSFORM_BLOCK)])
        c, x = self._inputs(codes, num, n)
        w = self.weights_
        parts = [w[f"emb.{k}.weight"][c[:, k]] for k in range(len(self.fields_))] + [x]
        h = np.concatenate(parts, axis=1)
        if "l1.weight" in w:
            h = np.maximum(h @ w["l1.weight"].T + w["l1.bias"], 0)
        v = h @ w["l2.weight"].T + w["l2.bias"]
        return (v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-6)).astype(
            np.float32)

    # -- persistence -------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"config": dataclasses.asdict(self.config), "fields": self.fields_,
                "n_values": self.n_values_}

    def to_arrays(self, prefix: str = "style__") -> dict[str, np.ndarray]:
        out = {f"{prefix}w__{k}": v for k, v in self.weights_.items()}
        out[f"{prefix}num_mean"] = self.num_mean_
        out[f"{prefix}num_std"] = self.num_std_
        return out

    @classmethod
    def from_saved(cls, meta: dict, arrays, prefix: str = "style__") -> "StyleEmbedding":
        try:
            self = cls(StyleConfig(**meta["config"]))
            self.fields_ = list(meta["fields"])
            self.n_values_ = [int(v) for v in meta["n_values"]]
            files = arrays.files if hasattr(arrays, "files") else list(arrays)
            self.weights_ = {k[len(prefix) + 3:]: np.asarray(arrays[k]) for k in files
                             if k.startswith(prefix + "w__")}
            self.num_mean_ = np.asarray(arrays[prefix + "num_mean"])
            self.num_std_ = np.asarray(arrays[prefix + "num_std"])
        except (KeyError, TypeError) as exc:
            raise BundleError(f"saved style embedding is incomplete ({exc})") from exc
        return self
