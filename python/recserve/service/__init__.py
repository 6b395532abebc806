"""The HTTP service: the app factory, its routes, and the engine they call."""
