"""Every exception the project raises on purpose.

This module is the bottom of the dependency chain (``api`` -> ``recommender`` ->
``features``), so all three packages import their errors from here and one error
handler in ``api`` can turn any of them into a JSON 4xx response.

Messages name the bad value and, where there is a closed set, what is allowed.
"""
from __future__ import annotations

from typing import Any, Iterable


class MixmatchError(Exception):
    """Base class of every error the project raises deliberately."""

    #: HTTP status the API answers with when this error escapes a request.
    http_status = 400


class InputError(MixmatchError, ValueError):
    """A value supplied by a user (argument, file field, request field) is invalid.

    Parameters
    ----------
    message : str
        Human readable reason, naming the bad value.
    field : str, optional
        Name of the offending field, column, key or argument.
    value : Any, optional
        The offending value (kept for programmatic access).
    allowed : iterable, optional
        The allowed values when the set is closed.

    Examples
    --------
    >>> err = InputError("unknown category 'hat'", field="category", value="hat",
    ...                  allowed=["top", "bottom"])
    >>> err.field, err.allowed
    ('category', ['top', 'bottom'])
    """

    def __init__(self, message: str, *, field: str | None = None, value: Any = None,
                 allowed: Iterable[Any] | None = None):
        if allowed is not None:
            allowed = list(allowed)
            message = f"{message} (allowed: {', '.join(map(str, allowed))})"
        super().__init__(message)
        self.field = field
        self.value = value
        self.allowed = allowed

    def to_dict(self) -> dict:
        out = {"error": str(self), "field": self.field}
        if self.allowed is not None:
            out["allowed"] = self.allowed
        return out


class SchemaError(InputError):
    """A table or file does not follow the schema it claims (missing column, bad type)."""


class DuplicateKeyError(SchemaError):
    """A key given twice in one JSON object or YAML mapping of a file a user wrote
    (:mod:`features.configfiles`), which ``json.loads`` and ``yaml.safe_load`` would
    read as its last value. The message names the key and both lines but not the file:
    each reader words it in its own error, naming the file.

    ``key``: the repeated key; ``path``: the object's key path (e.g.
    ``layers[0].experiments[1]``) when known, else None; ``lines``: (first, repeat).

    Examples
    --------
    >>> err = DuplicateKeyError("line 3: duplicate key 'a'", key="a", lines=(1, 3))
    >>> err.key, err.path, err.lines, err.field
    ('a', None, (1, 3), None)
    """

    def __init__(self, message: str, *, key: Any, path: str | None = None,
                 lines: tuple[int, int] = (0, 0)):
        super().__init__(message, field=path, value=key)
        self.key, self.path, self.lines = key, path, lines


class NotFoundError(MixmatchError, KeyError):
    """A referenced object (item id, bundle, file) does not exist."""

    http_status = 404

    def __init__(self, message: str, *, field: str | None = None, value: Any = None):
        super().__init__(message)
        self.field = field
        self.value = value

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])

    def to_dict(self) -> dict:
        return {"error": str(self), "field": self.field}


class PayloadTooLarge(InputError):
    """A request body, an upload or a declared image size exceeds a limit."""

    http_status = 413


class UnsupportedMediaType(InputError):
    """An upload is not of an accepted media type."""

    http_status = 415


class NotFittedError(MixmatchError, RuntimeError):
    """A learned component was used before ``fit`` (or loading) gave it its state."""

    http_status = 503


class StageNotAvailable(MixmatchError, RuntimeError):
    """A pipeline stage or command whose implementation has not landed yet."""

    http_status = 501


class ServiceUnavailable(MixmatchError, RuntimeError):
    """Something a request needs (the events database) is busy or failing for now.

    Nothing of the request was done, so the same request may be sent again: the API
    answers 503 with ``retry_after`` (seconds) as the ``Retry-After`` header, where a
    500 would have told a shop page that retrying was pointless.

    Examples
    --------
    >>> err = ServiceUnavailable("the events database is busy", retry_after=2)
    >>> err.http_status, err.to_dict()
    (503, {'error': 'the events database is busy', 'field': None, 'retry_after': 2})
    """

    http_status = 503

    def __init__(self, message: str, *, retry_after: int = 1, field: str | None = None):
        super().__init__(message)
        self.retry_after = int(retry_after)
        self.field = field

    def to_dict(self) -> dict:
        return {"error": str(self), "field": self.field, "retry_after": self.retry_after}


class BundleError(MixmatchError, RuntimeError):
    """An artifact bundle is missing, incomplete, or of an incompatible schema."""

    http_status = 500


class BundleBeingBuilt(BundleError):
    """A build is writing the bundle right now (its process holds the write lock):
    it loads once that build finishes. Not a fault to alert on, unlike a bundle a
    build left half-written (a plain :class:`BundleError`)."""


class MeantOtherwiseThen(Exception):
    """Raised by a stage's ``stage_inputs`` while it spells its settings as earlier code
    did (:func:`features.settings.settings_spelled`), when the same settings trained
    otherwise then: ``lgb_params = {eta = 0.2}``, which LightGBM ignored under the
    compatibility model's own ``learning_rate`` until aliases were read as their
    parameters. A record made then on them is not current (the pipeline runs the
    stage). Not a MixmatchError: the pipeline catches it, no user sees it."""
