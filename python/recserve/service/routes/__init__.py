"""One router per resource; each only translates between HTTP and ``Engine``."""
