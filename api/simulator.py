"""A shopper simulator that drives a running local API, for exercising A/B analysis.

Simulated users visit product pages: each page view asks the API for the
anchor item's complements (``GET /v1/items/{id}/complements?user_id=...``), so the
server assigns the user to a variant and logs the exposure exactly as for a real
page. The simulator then posts what the user did with what was shown, tied to the
response's ``request_id``: an impression per shown item, and a funnel per item --
click with probability ``click``, then add to cart with ``add_to_cart`` (given a
click), then purchase with ``purchase`` (given a cart). The probabilities may
differ by variant (:class:`Behaviour` per variant name), which is how a notebook
makes a known effect appear and checks the analysis finds it.

Bounded: it talks to loopback only, stops after ``max_requests`` HTTP requests or
``max_seconds``, whichever comes first, and every request has a timeout.
Deterministic: user ``u`` draws from ``numpy.random.default_rng([seed, u])``, so
the same seed gives the same users, pages and events in any run.

Examples
--------
>>> import numpy as np
>>> ev = page_events(np.random.default_rng(0), "r1", "u1", ["a", "b"],
...                  Behaviour(click=1.0, add_to_cart=1.0, purchase=0.0))
>>> [(e["type"], e["item_id"]) for e in ev]     # doctest: +NORMALIZE_WHITESPACE
[('impression', 'a'), ('impression', 'b'), ('click', 'a'), ('add_to_cart', 'a'),
 ('click', 'b'), ('add_to_cart', 'b')]
"""
from __future__ import annotations

import dataclasses
import time
import urllib.parse
from collections import Counter, defaultdict
from typing import Any, Mapping, Sequence

import numpy as np

from features.exceptions import InputError
from api.client import ApiError, get_json, post_json, require_loopback

#: Events the API accepts in one POST (``Limits.max_events``).
EVENTS_PER_POST = 100


@dataclasses.dataclass(frozen=True)
class Behaviour:
    """A variant's shoppers: per shown item P(click), then P(cart | click), then
    P(purchase | cart)."""

    click: float = 0.08
    add_to_cart: float = 0.3
    purchase: float = 0.5

    def __post_init__(self):
        for name in ("click", "add_to_cart", "purchase"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
                raise InputError(f"behaviour {name} must be a probability in [0, 1], got "
                                 f"{v!r}", field=name, value=v)

    @classmethod
    def of(cls, value: "Behaviour | Mapping[str, float]") -> "Behaviour":
        if isinstance(value, Behaviour):
            return value
        if not isinstance(value, Mapping):
            raise InputError(f"a behaviour is a mapping of probabilities, got {value!r}",
                             field="behaviour", value=value)
        unknown = set(value) - {"click", "add_to_cart", "purchase"}
        if unknown:
            raise InputError(f"unknown behaviour key {sorted(unknown)[0]!r}",
                             field="behaviour", value=sorted(unknown)[0],
                             allowed=["click", "add_to_cart", "purchase"])
        return cls(**value)


@dataclasses.dataclass
class SimulationConfig:
    """What to simulate.

    Parameters
    ----------
    users : number of simulated users (unit ``user_id`` = ``sim<seed>-u<n>``).
    pages_per_user : product pages each user views.
    k : complements per category asked for on each page.
    seed : seeds every draw (see module docs).
    behaviour : variant name -> :class:`Behaviour` (or a dict of its fields). A
        response's variant matches a key equal to it, or to one of its layers'
        variants (``"control,v2"`` matches ``"v2"``); otherwise ``default``.
    default : behaviour of variants not named (and of requests outside experiments).
    max_requests, max_seconds : hard bounds; the run stops at whichever comes first.
    timeout : seconds per HTTP request.
    """

    users: int = 200
    pages_per_user: int = 2
    k: int = 4
    seed: int = 0
    behaviour: dict = dataclasses.field(default_factory=dict)
    default: Behaviour = Behaviour()
    max_requests: int = 5000
    max_seconds: float = 120.0
    timeout: float = 10.0

    def __post_init__(self):
        for name in ("users", "pages_per_user", "k", "max_requests"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}",
                                 field=name, value=v)
        if not self.max_seconds > 0:
            raise InputError(f"max_seconds must be > 0, got {self.max_seconds!r}",
                             field="max_seconds", value=self.max_seconds)
        self.behaviour = {str(k): Behaviour.of(v) for k, v in dict(self.behaviour).items()}
        self.default = Behaviour.of(self.default)

    def behaviour_for(self, variant: str | None) -> Behaviour:
        if variant is None:
            return self.default
        if variant in self.behaviour:
            return self.behaviour[variant]
        for part in variant.split(","):
            if part in self.behaviour:
                return self.behaviour[part]
        return self.default


@dataclasses.dataclass
class SimulationResult:
    """What was sent. ``stopped``: ``"done"``, ``"max_requests"`` or ``"max_seconds"``."""

    users: int
    pages: int
    requests: int
    events: Counter
    units_by_variant: dict
    pages_by_variant: dict
    errors: list
    stopped: str
    seconds: float

    def summary(self) -> dict:
        return {"users": self.users, "pages": self.pages, "requests": self.requests,
                "events": dict(self.events), "units_by_variant": self.units_by_variant,
                "stopped": self.stopped, "errors": len(self.errors),
                "seconds": round(self.seconds, 2)}


def user_id(seed: int, n: int) -> str:
    return f"sim{seed}-u{n:05d}"


def shown_items(response: dict) -> list[str]:
    """Item ids a complements response showed, in page order."""
    return [it["item_id"] for g in response.get("groups", []) for it in g.get("items", [])]


def page_events(rng: np.random.Generator, request_id: str, user: str,
                shown: Sequence[str], behaviour: Behaviour) -> list[dict]:
    """The events of one page view: impressions, then each item's funnel.

    Draws exactly three uniforms per shown item (click, cart, purchase), whether or
    not they are used, so one variant's probabilities never shift another's draws.
    """
    events = [{"type": "impression", "request_id": request_id, "item_id": i,
               "user_id": user} for i in shown]
    u = rng.random((len(shown), 3))
    for i, (uc, ua, up) in zip(shown, u):
        if uc < behaviour.click:
            events.append({"type": "click", "request_id": request_id, "item_id": i,
                           "user_id": user})
            if ua < behaviour.add_to_cart:
                events.append({"type": "add_to_cart", "request_id": request_id,
                               "item_id": i, "user_id": user, "quantity": 1})
                if up < behaviour.purchase:
                    events.append({"type": "purchase", "request_id": request_id,
                                   "item_id": i, "user_id": user, "quantity": 1})
    return events


def simulate(api_url: str, item_ids: Sequence[str], config: SimulationConfig | None = None,
             **overrides: Any) -> SimulationResult:
    """Run simulated users against the API at ``api_url`` (loopback only).

    ``item_ids``: the anchors users land on (drawn uniformly per page). Keyword
    ``overrides`` set :class:`SimulationConfig` fields.

    Examples
    --------
    >>> # with LocalServer({"BUNDLE": b, "EXPERIMENTS": e, ...}) as url:
    >>> #     r = simulate(url, engine.catalog.item_id[:50].tolist(), users=100,
    >>> #                  behaviour={"visual": {"click": 0.12}})
    >>> #     r.summary()["stopped"]
    >>> # 'done'
    """
    base = require_loopback(api_url)
    # replace() re-runs the validation in __post_init__
    cfg = dataclasses.replace(config, **overrides) if config else SimulationConfig(**overrides)
    items = [str(i) for i in item_ids]
    if not items:
        raise InputError("item_ids is empty: the simulator needs pages to visit",
                         field="item_ids")
    t0 = time.monotonic()
    deadline = t0 + cfg.max_seconds
    requests = pages = 0
    events: Counter = Counter()
    units: dict[str, set] = defaultdict(set)
    pages_by: Counter = Counter()
    errors: list[str] = []
    stopped = "done"
    users_done = 0

    def budget() -> str | None:
        if requests >= cfg.max_requests:
            return "max_requests"
        if time.monotonic() >= deadline:
            return "max_seconds"
        return None

    for n in range(cfg.users):
        rng = np.random.default_rng([cfg.seed, n])
        user = user_id(cfg.seed, n)
        anchors = rng.integers(0, len(items), size=cfg.pages_per_user)
        for a in anchors:
            stopped = budget() or "done"
            if stopped != "done":
                break
            item = items[int(a)]
            url = f"{base}/v1/items/{urllib.parse.quote(item, safe='')}/complements"
            requests += 1
            try:
                resp = get_json(url, {"k": cfg.k, "user_id": user}, timeout=cfg.timeout)
            except ApiError as exc:
                errors.append(str(exc))
                continue
            pages += 1
            variant = resp.get("variant")
            units[str(variant)].add(user)
            pages_by[str(variant)] += 1
            evs = page_events(rng, resp["request_id"], user, shown_items(resp),
                              cfg.behaviour_for(variant))
            for s in range(0, len(evs), EVENTS_PER_POST):
                # a bound met here leaves this page's events unposted: the run did not
                # finish, and says which bound stopped it
                stopped = budget() or "done"
                if stopped != "done":
                    break
                requests += 1
                chunk = evs[s:s + EVENTS_PER_POST]
                try:
                    post_json(f"{base}/v1/events", {"events": chunk}, timeout=cfg.timeout)
                except ApiError as exc:
                    errors.append(str(exc))
                    continue
                events.update(e["type"] for e in chunk)
            if stopped != "done":
                break
        if stopped != "done":
            break
        users_done += 1
    return SimulationResult(users=users_done, pages=pages, requests=requests, events=events,
                            units_by_variant={k: len(v) for k, v in sorted(units.items())},
                            pages_by_variant=dict(sorted(pages_by.items())), errors=errors,
                            stopped=stopped, seconds=time.monotonic() - t0)
