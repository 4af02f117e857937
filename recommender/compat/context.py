"""Outfit context model: how well a candidate fills an outfit's blank, given the whole outfit.

The pair model judges two items at a time and a FITB answer's score averages those
judgements; nothing looks at the outfit as a set (a third item that makes a colour
a theme rather than an accident, a silhouette that only works with the shoes). This
model reads the set. Each item becomes a content vector (a small tower over the same
inputs as the style vectors: categorical codes, pixel colours, shape, predicted
attributes, visual embedding, and, with numeric model codes, the code's collection
digits), a transformer encoder reads the outfit's other items together with a query
token for the blank's subcategory, and the candidate's score is the dot product of
the query's output with the candidate's vector::

    [z, h_1, ..., h_L] = Encoder([slot(g), v(x_1), ..., v(x_L)])
    s(c) = <W_q z, W_c v(c)> / sqrt(dim) + 1/L sum_j <W_k h_j, W_d v(c)> / sqrt(dim)

The first term asks how the candidate fits the outfit read as a whole; the second
(``interaction = "late"``, the default) how it fits each other item, each read in the
outfit's light, averaged: a pair that matters (a bag against these shoes) keeps its
own term instead of being folded into one query vector. On MANGO, one network per
seed on the seed-0 split's training outfits, held-out FITB on each network's own tenth
of them went 0.846 -> 0.857, 0.851 -> 0.853 and 0.839 -> 0.847 (seeds 0-2); the seed-2
network on the test outfits' ``fitb_all.jsonl`` 0.836 -> 0.844 (6,983 questions) and
``fitb_cold.jsonl`` 0.714 -> 0.737, at about the same time per epoch.
``interaction = "query"`` is the first term alone, as bundles saved before the option
were trained.

It is trained on the FITB task itself: every item of every training outfit is blanked
in turn and must win a softmax against ``negatives`` items of its subcategory.

:meth:`OutfitContext.score_reverse` asks the question the other way round: with the
candidate in the outfit, how well does each of the other items fill its own blank?
A candidate that makes the rest of the outfit look right scores high even when its
own slot is crowded with plausible items.

Content only, nothing keyed to an item id, so a new arrival is scored like any other
item. Negatives are drawn from items that appear in the training outfits, never from
items without outfit history: drawn from the whole catalogue, the positives (always
outfit items) and negatives would differ in how "outfit-like" their content is, and
the model would learn that prior, which marks a new arrival as wrong (on MANGO this
cost cold answers 0.75 -> 0.58 of FITB accuracy).

The model stops early on FITB accuracy of a held-out share of its outfits (three
negatives from the whole subcategory, as in the evaluation files). After fitting,
the weights are kept as numpy arrays (saved with the compatibility model, no pickle)
and loaded into the torch module to score.

Examples
--------
>>> import numpy as np
>>> groups = np.arange(400) % 4               # four slots (subcategories)
>>> colour = (np.arange(400) // 4) % 4 + 1    # each outfit shares one colour
>>> outfits = [np.array([[i for i in range(400) if colour[i] == c and groups[i] == g][k]
...                      for g in range(4)]) for c in range(1, 5) for k in range(20)]
>>> m = OutfitContext(ContextConfig(dim=16, hidden=32, epochs=2, layers=1)).fit(
...     {"colour": colour}, {"colour": 5}, None, outfits, groups)
>>> m.score([[0, 1]], [[2, 3]], groups).shape
(1, 2)
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from features.exceptions import BundleError, InputError, NotFittedError
from features.settings import check_value
from recommender.compat.style import content_inputs, content_rows, fit_standardiser

CONTEXT_FORMAT = "mixmatch-outfit-context/1"
#: How a candidate meets its outfit (:class:`ContextConfig` ``interaction``).
INTERACTIONS = ("late", "query")
#: Questions per forward pass when scoring.
SCORE_BLOCK = 1024


@dataclasses.dataclass
class ContextConfig:
    """Settings of the outfit context model and its training.

    dim : size of the item vectors and of the transformer
    layers, heads : transformer encoder layers and attention heads
    field_dim : embedding size of each categorical field value
    hidden : hidden units of the item tower
    dropout : dropout in the item tower and the transformer
    negatives : same-subcategory negatives per blank in training
    interaction : "late" (a query term plus a term per context item, see the module
        doc) or "query" (the query term alone, as models saved before the option)
    max_context : at most this many other items of an outfit are read (training
        draws a random subset of larger outfits; scoring reads the first ones)
    epochs : maximum passes over the training blanks
    patience : epochs without a better held-out FITB before stopping
    batch_size, lr, weight_decay : AdamW settings
    val_fraction : share of the outfits held out to stop early (by outfit)
    members : networks trained (seeds ``seed``, ``seed + 1``, ...; each holds out its
        own share), whose scores are averaged. On MANGO one network's test FITB alone
        was 0.822-0.834 over three seeds, the three averaged 0.855.
    max_outfits : at most this many outfits train it, a seeded sample when there are
        more: an epoch's time grows with the outfits' items (on MANGO, 4,266 outfits
        of 5.6 items, an epoch takes about 12 s on two threads), not with the catalogue
    num_threads : torch threads
    seed : initialisation, negatives and split
    """

    dim: int = 128
    layers: int = 2
    heads: int = 4
    field_dim: int = 16
    hidden: int = 256
    dropout: float = 0.1
    negatives: int = 15
    interaction: str = "late"
    max_context: int = 12
    epochs: int = 20
    patience: int = 4
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-4
    val_fraction: float = 0.1
    members: int = 3
    max_outfits: int = 5_000
    num_threads: int = 1
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict | None) -> "ContextConfig":
        d = dict(d or {})
        known = {f.name for f in dataclasses.fields(cls)}
        bad = sorted(set(d) - known)
        if bad:
            raise InputError(f"unknown outfit context settings {bad}", field="context_params",
                             value=bad, allowed=sorted(known))
        return cls(**d).validate()

    def validate(self, what: str = "context ") -> "ContextConfig":
        """``self``, or InputError naming the first setting of the wrong kind or out of
        its range, before any training. The limits are what the networks need:
        ``heads = 0`` was a ZeroDivisionError, ``dim = 0`` one in the score scale,
        ``hidden = 0`` a zero-width layer, ``dropout = 1`` zeroes every activation,
        ``members = "three"`` a ValueError, ``batch_size = 0`` a range() error,
        ``num_threads = 0`` a torch error, a negative seed numpy's and
        ``max_outfits = 1`` left a network no training outfit; ``layers = 0`` is an
        encoder of no layer (the item tower and slot query alone). ``what`` starts each
        message (a build's check passes "": its ``[stages...]`` prefix names the table)."""
        for name, least in (("dim", 1), ("layers", 0), ("heads", 1), ("field_dim", 1),
                            ("hidden", 1), ("negatives", 1), ("max_context", 1),
                            ("epochs", 1), ("patience", 1), ("batch_size", 1),
                            ("members", 1), ("max_outfits", 2), ("num_threads", 1),
                            ("seed", 0)):
            check_value(name, getattr(self, name), int, least=least, what=what)
        if self.dim % self.heads:
            raise InputError(f"{what}dim {self.dim} is not a multiple of heads {self.heads}",
                             field="dim", value=self.dim)
        if self.interaction not in INTERACTIONS:
            raise InputError(f"unknown {what}interaction {self.interaction!r}",
                             field="interaction", value=self.interaction,
                             allowed=INTERACTIONS)
        check_value("dropout", self.dropout, float, least=0, below=1, what=what)
        check_value("lr", self.lr, float, above=0, what=what)
        check_value("weight_decay", self.weight_decay, float, least=0, what=what)
        # each member holds out this share of the outfits to stop early
        check_value("val_fraction", self.val_fraction, float, above=0, below=1,
                    what=what)
        return self


def _torch_modules():
    import torch
    from torch import nn

    class ByteDropout(nn.Module):
        """Dropout whose mask is cut from random bytes (eight per 64-bit draw), with
        ``p`` rounded to a multiple of 1/256.  ``torch.dropout`` draws one random
        number per element, which on the CPU cost this small network a fifth of its
        training time; this draws an eighth as many.  No parameters: the state dict
        is that of ``nn.Dropout``."""

        def __init__(self, p: float):
            super().__init__()
            self.k = int(round(float(p) * 256))
            self.scale = 256.0 / (256 - self.k) if self.k < 256 else 0.0

        def forward(self, x):
            if not self.training or self.k == 0:
                return x
            n = x.numel()
            r = torch.randint(-2 ** 63, 2 ** 63 - 1, ((n + 7) // 8,), dtype=torch.int64)
            keep = r.view(torch.uint8)[:n].view(x.shape) >= self.k
            return x * keep * self.scale

    class ContextNet(nn.Module):
        """Item tower, slot query and transformer encoder (see the module doc)."""

        def __init__(self, n_values: list[int], n_num: int, n_slots: int, cfg: ContextConfig):
            super().__init__()
            self.emb = nn.ModuleList(nn.Embedding(v, cfg.field_dim) for v in n_values)
            d_in = cfg.field_dim * len(n_values) + n_num
            self.tower = nn.Sequential(nn.Linear(d_in, cfg.hidden), nn.GELU(),
                                       ByteDropout(cfg.dropout), nn.Linear(cfg.hidden, cfg.dim))
            self.slot = nn.Embedding(n_slots, cfg.dim)
            layer = nn.TransformerEncoderLayer(cfg.dim, cfg.heads, 2 * cfg.dim, cfg.dropout,
                                               batch_first=True, norm_first=True)
            self.enc = nn.TransformerEncoder(layer, cfg.layers, enable_nested_tensor=False)
            for lay in self.enc.layers:  # (attention weights keep torch's own dropout)
                lay.dropout = ByteDropout(cfg.dropout)
                lay.dropout1 = ByteDropout(cfg.dropout)
                lay.dropout2 = ByteDropout(cfg.dropout)
            self.query = nn.Linear(cfg.dim, cfg.dim)
            self.cand = nn.Linear(cfg.dim, cfg.dim)
            self.late = cfg.interaction == "late"
            if self.late:
                self.key = nn.Linear(cfg.dim, cfg.dim)
                self.cand_item = nn.Linear(cfg.dim, cfg.dim)
            self.scale = 1.0 / math.sqrt(cfg.dim)

        def items(self, c, x):
            parts = [e(c[..., k]) for k, e in enumerate(self.emb)] + [x]
            return self.tower(torch.cat(parts, dim=-1))

        def forward(self, ctx_c, ctx_x, pad, slot, cand_c, cand_x):
            # ctx (B, L, .) with pad (B, L) True = empty; slot (B,); cand (B, C, .)
            return self.encode(self.items(ctx_c, ctx_x), pad, slot,
                               self.items(cand_c, cand_x))

        def encode(self, h_ctx, pad, slot, h_cand):
            # item vectors: context h_ctx (B, L, dim), candidates h_cand (B, C, dim)
            h = torch.cat([self.slot(slot)[:, None], h_ctx], dim=1)
            mask = torch.cat([torch.zeros(len(slot), 1, dtype=torch.bool), pad], dim=1)
            out = self.enc(h, src_key_padding_mask=mask)
            z = self.query(out[:, 0])
            s = (self.cand(h_cand) * z[:, None]).sum(dim=-1) * self.scale
            if not self.late:
                return s
            # each context item against each candidate (B, C, L), averaged over the
            # items present (an empty context adds nothing)
            per_item = torch.einsum("bld,bcd->bcl", self.key(out[:, 1:]),
                                    self.cand_item(h_cand)) * self.scale
            keep = (~pad).to(per_item.dtype)[:, None, :]
            return s + (per_item * keep).sum(-1) / keep.sum(-1).clamp(min=1.0)

    return torch, nn, ContextNet


def _padded(rows, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(items (R, w), pad (R, w) True = empty) of item-row lists, each cut to its first
    ``width`` items; w = max(width, 1), so an empty question still has a column."""
    w = max(int(width), 1)
    ctx = np.zeros((len(rows), w), np.int64)
    pad = np.ones((len(rows), w), bool)
    for r, items in enumerate(rows):
        items = np.asarray(items, np.int64)[:w]
        ctx[r, :len(items)] = items
        pad[r, :len(items)] = False
    return ctx, pad


def _answer_rows(questions, answers) -> np.ndarray:
    """(Q, A) int64 answer rows; (0, 0) for no questions."""
    if not len(questions):
        return np.zeros((0, 0), np.int64)
    return np.asarray(answers, np.int64).reshape(len(questions), -1)


class _Draw:
    """Random items of a group from a pool of rows (vectorised, with replacement)."""

    def __init__(self, groups: np.ndarray, pool: np.ndarray):
        self.order = pool[np.argsort(groups[pool], kind="stable")]
        srt = groups[self.order]
        self.lo = np.searchsorted(srt, np.arange(groups.max() + 2), "left")

    def __call__(self, g: np.ndarray, k: int, rng) -> np.ndarray:
        lo, hi = self.lo[g], self.lo[g + 1]
        pick = lo[:, None] + (rng.random((len(g), k)) * (hi - lo)[:, None]).astype(np.int64)
        return self.order[np.minimum(pick, len(self.order) - 1)]


class OutfitContext:
    """Scores candidates for an outfit's blank from the whole outfit (sklearn-style).

    Parameters
    ----------
    config : :class:`ContextConfig`

    Attributes (after fit)
    ----------------------
    fields_ : categorical field names, in tower order
    n_values_ : codes per field (0 = unknown)
    n_slots_ : number of subcategory codes the query knows
    num_mean_, num_std_ : standardisation of the numeric inputs
    weights_ : per member, a dict of numpy arrays (its network)
    n_outfits_ : outfits it was trained on (2+ distinct items, after the sample)
    history_ : per member, held-out FITB accuracy per epoch
    best_epoch_ : per member, the epoch whose weights were kept (1-based)
    """

    def __init__(self, config: ContextConfig | None = None):
        self.config = config or ContextConfig()

    def _inputs(self, codes, num, n):
        return content_inputs(self.fields_, self.n_values_, self.num_mean_, self.num_std_,
                              codes, num, n, "outfit context model")

    def fit(self, codes: dict[str, np.ndarray], n_values: dict[str, int],
            num: np.ndarray | None, outfits, groups: np.ndarray) -> "OutfitContext":
        """Fit on ``outfits`` (lists of item rows); blanks compete within ``groups``."""
        cfg = self.config
        torch, nn, ContextNet = _torch_modules()
        torch.set_num_threads(int(cfg.num_threads))
        rng = np.random.default_rng(cfg.seed)  # the outfit sample; members seed themselves
        groups = np.asarray(groups, np.int64)
        n = len(groups)
        self.fields_ = list(codes)
        self.n_values_ = [int(n_values[f]) for f in self.fields_]
        self.n_slots_ = int(groups.max()) + 1 if n else 1
        self.num_mean_, self.num_std_ = fit_standardiser(num)
        c, x = self._inputs(codes, num, n)
        outfits = [np.unique(np.asarray(o, np.int64)) for o in outfits]
        outfits = [o for o in outfits if len(o) >= 2]
        if len(outfits) < 2:
            raise InputError("the outfit context model needs at least 2 outfits of 2+ items",
                             field="outfits")
        if len(outfits) > cfg.max_outfits:
            outfits = [outfits[k] for k in np.sort(rng.choice(len(outfits), cfg.max_outfits,
                                                              replace=False))]
        self.n_outfits_ = len(outfits)
        ct, xt = torch.from_numpy(c), torch.from_numpy(x)
        self.weights_, self.history_, self.best_epoch_ = [], [], []
        for member in range(int(cfg.members)):
            w, hist, best_epoch = self._fit_member(torch, nn, ContextNet, ct, xt, outfits,
                                                   groups, cfg.seed + member)
            self.weights_.append(w)
            self.history_.append(hist)
            self.best_epoch_.append(best_epoch)
        self._nets = None
        self._items = (ct, xt)  # score() reads these items until set_items says otherwise
        return self

    def _fit_member(self, torch, nn, ContextNet, ct, xt, outfits, groups, seed):
        """One network on its own held-out split: (weights, held-out FITB per epoch,
        the 1-based epoch kept)."""
        cfg = self.config
        torch.manual_seed(seed)
        rng = np.random.default_rng(seed)
        n = len(groups)
        perm = rng.permutation(len(outfits))
        n_val = max(1, int(round(cfg.val_fraction * len(outfits))))
        val = [outfits[k] for k in perm[:n_val]]
        train = [outfits[k] for k in perm[n_val:]]
        warm = np.unique(np.concatenate(train))
        # training negatives: items with outfit history (module doc); groups whose
        # training outfits hold fewer than two items fall back to the whole group
        size = np.bincount(groups[warm], minlength=self.n_slots_ + 1)
        pool = np.union1d(warm, np.flatnonzero(size[groups] < 2))
        draw_train = _Draw(groups, pool)
        draw_all = _Draw(groups, np.arange(n))
        ex_o, ex_p = self._blanks(train)
        vo, vp = self._blanks(val)
        vq = self._questions(val, vo, vp, draw_all, 3, rng, groups, random_context=False)

        net = ContextNet(self.n_values_, xt.shape[1], self.n_slots_, cfg)
        opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        best, best_state, bad, best_epoch, history = -1.0, None, 0, 0, []
        for epoch in range(int(cfg.epochs)):
            order = rng.permutation(len(ex_o))
            net.train()
            for s in range(0, len(order), cfg.batch_size):
                k = order[s:s + cfg.batch_size]
                ctx, pad, slot, cand = self._questions(train, ex_o[k], ex_p[k], draw_train,
                                                       cfg.negatives, rng, groups, True)
                logits = self._forward(torch, net, ct, xt, ctx, pad, slot, cand)
                # a negative drawn equal to the answer is not a competitor
                same = torch.from_numpy(cand[:, 1:] == cand[:, :1])
                logits = torch.cat([logits[:, :1], logits[:, 1:].masked_fill(same, -1e4)], 1)
                loss = nn.functional.cross_entropy(logits, torch.zeros(len(k), dtype=torch.long))
                opt.zero_grad()
                loss.backward()
                opt.step()
            net.eval()
            with torch.no_grad():
                s_val = self._forward(torch, net, ct, xt, *vq).numpy()
            acc = float((s_val[:, 0] > s_val[:, 1:].max(axis=1)).mean())
            history.append(acc)
            if acc > best:
                best, bad, best_epoch = acc, 0, epoch + 1
                best_state = {k: t.detach().clone() for k, t in net.state_dict().items()}
            else:
                bad += 1
                if bad >= cfg.patience:
                    break
        weights = {k: t.detach().cpu().numpy().astype(np.float32)
                   for k, t in best_state.items()}
        return weights, history, best_epoch

    @staticmethod
    def _blanks(outfits):
        """(outfit number, position) of every item of every outfit."""
        o = np.concatenate([np.full(len(x), k) for k, x in enumerate(outfits)])
        p = np.concatenate([np.arange(len(x)) for x in outfits])
        return o, p

    def _questions(self, outfits, o, p, draw, k, rng, groups, random_context):
        """Padded context rows, slots and candidates (answer first) of blanks (o, p)."""
        L = min(max(len(outfits[i]) for i in o) - 1, self.config.max_context)
        ans = np.empty(len(o), np.int64)
        rows = []
        for r, (i, j) in enumerate(zip(o, p)):
            items = outfits[i]
            ans[r] = items[j]
            rest = np.delete(items, j)
            if len(rest) > L and random_context:
                rest = rng.permutation(rest)
            rows.append(rest)
        ctx, pad = _padded(rows, L)
        slot = groups[ans]
        cand = np.concatenate([ans[:, None], draw(slot, k, rng)], axis=1)
        return ctx, pad, slot, cand

    @staticmethod
    def _forward(torch, net, ct, xt, ctx, pad, slot, cand):
        """Scores (B, C) of candidates ``cand`` for blanks of ``slot`` in ``ctx``.

        The item tower runs once per distinct item of the batch, not once per
        reference: a batch of 256 training blanks names about 7,000 items (padding
        included) of which about half are distinct, so this halves the tower's work.
        The distinct items are padded to a multiple of 512 rows (copies of the first,
        never read back): tensors of a new size every batch grew the training's peak
        memory by 30% (1.0 -> 1.3 GB on MANGO), padded ones keep it at 0.95 GB.
        """
        u, inv = np.unique(np.concatenate([ctx.ravel(), cand.ravel()]), return_inverse=True)
        u = np.r_[u, np.full(-len(u) % 512, u[0])]
        u, inv = torch.from_numpy(u), torch.from_numpy(inv.reshape(-1))
        h = net.items(ct[u], xt[u])
        h_ctx = h[inv[:ctx.size]].reshape(*ctx.shape, -1)
        h_cand = h[inv[ctx.size:]].reshape(*cand.shape, -1)
        return net.encode(h_ctx, torch.from_numpy(pad), torch.from_numpy(slot), h_cand)

    # -- scoring -----------------------------------------------------------------------
    def _modules(self):
        if not hasattr(self, "weights_"):
            raise NotFittedError("OutfitContext used before fit/load")
        if getattr(self, "_nets", None) is None:
            torch, _, ContextNet = _torch_modules()
            nets = []
            for w in self.weights_:
                net = ContextNet(self.n_values_, self.num_mean_.size, self.n_slots_,
                                 self.config)
                try:
                    net.load_state_dict({k: torch.from_numpy(np.array(v))
                                         for k, v in w.items()})
                except (RuntimeError, KeyError) as exc:
                    raise BundleError(f"saved outfit context weights do not fit its "
                                      f"settings ({exc})") from exc
                nets.append(net.eval())
            self._nets = nets
        return self._nets

    def score(self, questions, answers, groups: np.ndarray, codes: dict | None = None,
              num: np.ndarray | None = None) -> np.ndarray:
        """(Q, A) scores of each answer for its question's blank (higher is better):
        the members' mean.

        ``questions``: lists of item rows (the outfit without its blank); ``answers``:
        (Q, A) item rows. The blank's slot is the group of the question's first answer.
        The items' content is ``codes`` / ``num`` as given to :meth:`fit`, or the
        arrays last given (to :meth:`set_items`, or to :meth:`fit`).
        """
        self._modules()  # fitted or loaded
        if codes is not None:
            self.set_items(codes, num)
        groups = np.asarray(groups, np.int64)
        A = _answer_rows(questions, answers)
        return self._score_rows(questions, groups[A[:, 0]] if A.size else
                                np.zeros(len(A), np.int64), A)

    def score_reverse(self, questions, answers, groups: np.ndarray, codes: dict | None = None,
                      num: np.ndarray | None = None) -> np.ndarray:
        """(Q, A) how well each answer, put into its outfit, explains the question's items.

        The reverse of :meth:`score`: with answer ``a`` in the outfit, each question
        item ``q_j`` in turn is the blank of ``{a} + question - {q_j}``, and the
        score is the mean over ``j`` of the model's score of ``q_j`` there
        (``mean_j s(q_j | a, q_1..q_m without q_j)``). Scores of one question are
        comparable (same items scored, same slots); 0 for an empty question. The
        FITB ranker reads it beside :meth:`score`: on the MANGO split it moved the
        ranker's test FITB from 0.890 to 0.894 (+0.004 at each of three ranker seeds,
        a gain within the test file's noise).
        """
        self._modules()  # fitted or loaded
        if codes is not None:
            self.set_items(codes, num)
        groups = np.asarray(groups, np.int64)
        A = _answer_rows(questions, answers)
        n_ans = A.shape[1]
        rows, target, owner = [], [], []
        for qi, q in enumerate(questions):
            q = [int(x) for x in q]
            for ai in range(n_ans):
                a = int(A[qi, ai])
                for j in range(len(q)):  # the candidate first: truncation keeps it
                    rows.append([a] + q[:j] + q[j + 1:])
                target.extend(q)
                owner.extend([qi * n_ans + ai] * len(q))
        out = np.zeros(len(questions) * n_ans)
        if rows:
            target = np.asarray(target, np.int64)
            s = self._score_rows(rows, groups[target], target[:, None])[:, 0]
            owner = np.asarray(owner, np.int64)
            out = np.bincount(owner, s, len(out)) / np.maximum(
                np.bincount(owner, minlength=len(out)), 1)
        return out.reshape(len(questions), n_ans).astype(np.float32)

    def _score_rows(self, rows, slot: np.ndarray, cand: np.ndarray) -> np.ndarray:
        """(R, C) members' mean scores of candidates ``cand`` (R, C) for a blank of
        ``slot`` (R,) in context ``rows`` (lists of item rows).

        The rows are scored shortest first, in blocks of ``SCORE_BLOCK``, each padded to
        its longest row (cut to ``max_context``), and the scores put back in the rows'
        order. Blocks in the callers' order were padded to whichever long row they held:
        the reverse scores' rows hold 1 to 11 items, and for MANGO's ``fitb.jsonl`` the
        encoder read 224,712 positions where the rows' items and slot tokens are
        136,128; sorted, 139,872. Padding is masked, so a row's score does not depend on
        its block; the blocks keep their sizes (only the last one is short, as before),
        so the same matrix kernels run, and on the MANGO bundle every score came out
        bit-identical (forward and reverse, ``fitb`` and ``fitb_cold``). Blocks of one
        length each would pad nothing, but some are of a few rows, and those rows'
        scores moved by a float32 ulp or two (other kernels for small matrices).
        ``benchmarks/context_scoring.py`` (medians of 5 runs, one torch thread, CPU
        seconds): the reverse scores of ``fitb.jsonl`` 5.2 -> 3.1 s, the model report's
        ``evaluation_tables`` 13.9 -> 9.9 s.
        """
        import torch

        nets = self._modules()
        if getattr(self, "_items", None) is None:
            raise NotFittedError("OutfitContext.score needs the items' content: pass codes "
                                 "and num, or call set_items")
        ct, xt = self._items
        slot = np.clip(np.asarray(slot, np.int64), 0, self.n_slots_ - 1)
        out = np.zeros(cand.shape, np.float32)
        torch.set_num_threads(int(self.config.num_threads))
        width = np.minimum([len(r) for r in rows], int(self.config.max_context))
        order = np.argsort(width, kind="stable")
        for s in range(0, len(rows), SCORE_BLOCK):
            k = order[s:s + SCORE_BLOCK]
            ctx, pad = _padded([rows[i] for i in k], width[k].max())
            with torch.no_grad():
                out[k] = np.mean([self._forward(torch, net, ct, xt, ctx, pad, slot[k],
                                                cand[k]).numpy() for net in nets], axis=0)
        return out

    def set_items(self, codes: dict, num: np.ndarray | None) -> "OutfitContext":
        """Keep the items' content (as given to :meth:`fit`) for :meth:`score`."""
        import torch

        c, x = self._inputs(codes, num, content_rows(codes, num))
        self._items = (torch.from_numpy(c), torch.from_numpy(x))
        return self

    # -- persistence -------------------------------------------------------------------
    def to_json(self) -> dict:
        return {"format": CONTEXT_FORMAT, "config": dataclasses.asdict(self.config),
                "fields": self.fields_, "n_values": self.n_values_, "n_slots": self.n_slots_,
                "best_epoch": self.best_epoch_, "history": self.history_,
                "n_outfits": getattr(self, "n_outfits_", None)}

    def to_arrays(self, prefix: str = "context__") -> dict[str, np.ndarray]:
        out = {f"{prefix}m{m}__{k}": v for m, w in enumerate(self.weights_)
               for k, v in w.items()}
        out[f"{prefix}num_mean"] = self.num_mean_
        out[f"{prefix}num_std"] = self.num_std_
        return out

    @classmethod
    def from_saved(cls, meta: dict, arrays, prefix: str = "context__") -> "OutfitContext":
        if meta.get("format") != CONTEXT_FORMAT:
            raise BundleError(f"saved outfit context model has format {meta.get('format')!r}, "
                              f"expected {CONTEXT_FORMAT!r}")
        try:
            # saved before the option: the query term alone
            self = cls(ContextConfig(**{"interaction": "query", **meta["config"]}))
            self.fields_ = list(meta["fields"])
            self.n_values_ = [int(v) for v in meta["n_values"]]
            self.n_slots_ = int(meta["n_slots"])
            self.best_epoch_ = [int(e) for e in meta.get("best_epoch", [])]
            self.history_ = [list(h) for h in meta.get("history", [])]
            self.n_outfits_ = meta.get("n_outfits")
            files = arrays.files if hasattr(arrays, "files") else list(arrays)
            self.weights_ = []
            for m in range(int(self.config.members)):
                head = f"{prefix}m{m}__"
                self.weights_.append({k[len(head):]: np.asarray(arrays[k]) for k in files
                                      if k.startswith(head)})
            self.num_mean_ = np.asarray(arrays[prefix + "num_mean"])
            self.num_std_ = np.asarray(arrays[prefix + "num_std"])
        except (KeyError, TypeError) as exc:
            raise BundleError(f"saved outfit context model is incomplete ({exc})") from exc
        if not all(self.weights_):
            raise BundleError("saved outfit context model is incomplete (a member has no "
                              "weights)")
        self._nets = None
        return self
