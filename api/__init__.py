"""mixmatch api: the Flask service shop pages call, and the ``mixmatch`` CLI.

``api.create_app(config)`` is the application factory (no app object at import).
"""


def create_app(config=None):
    """Build the Flask app (see :func:`api.app.create_app`).

    Imported on call so ``import api.cli`` (``mixmatch --help``) does not pay for Flask.
    """
    from api.app import create_app as _create_app
    return _create_app(config)
