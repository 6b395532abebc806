"""``recserve retrain``: the job that trains a service's next model on its own log, checks it
against the active one and ships it (``job``), and its command line (``cli``)."""
