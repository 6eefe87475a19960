"""The runs layer: a run directory and everything read from it. ``layout.py`` (its files, ``run.json``,
making one), ``storage.py`` (the Optuna study), ``files.py`` (crash-safe writes and JSONL),
``logs.py`` (epochs recorded once), ``lock.py``, ``results.py`` (DataFrames), ``status.py``,
``checkpoints.py`` (a trial's checkpoints on Tune's storage) and ``export.py``. Imports the layers
below (spaces, training, network); never the search."""
