"""mixmatch api: the Flask service shop pages call, and the ``mixmatch`` CLI.

``api.create_app(config)`` is the application factory (no app object at import).
"""
