"""Offline training: impression log -> replayed feature rows and labels -> int8 ranker.

``log``         the impression-log format (docs/impression-log.md): writer, reader, catalogue
``labels``      join impressions with the events that followed; labels per head
``replay``      walk the log in time order into feature rows as of serve time
``trainer``     PyTorch training (``pip install 'recserve[train]'``), export, quantization
``movielens``   a log built from MovieLens-100K; ``synthetic``: a seeded synthetic log
"""
