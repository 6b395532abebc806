"""State backends: the embedded default (snapshot + WAL files in a data directory)."""
