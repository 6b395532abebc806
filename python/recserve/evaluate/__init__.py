"""Offline evaluation: chronological replay of an event log through the engine
(``recserve eval``). ``recserve.evaluate.replay`` is the machinery and the log format,
``recserve.evaluate.movielens`` turns MovieLens-100K into such a log, and
``recserve.evaluate.cli`` is the command. Nothing is imported here, so the command's parser
costs nothing to build."""
