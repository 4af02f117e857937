"""One blueprint per resource; shared request helpers live in :mod:`api.requests`."""
