"""A simulated short-video app: a catalogue and users whose taste the engine has to learn
(``recserve demo`` and ``recserve eval`` run on it)."""
