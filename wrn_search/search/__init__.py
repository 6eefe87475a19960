"""The search layer, on Ray Tune and Optuna: ``orchestrate.py`` (run and resume, a thin layer) over the
searcher (the study, continuations, warm starts), the samplers and schedulers (with their registries),
the trainable, resources, the cluster connection, and the callbacks that log epochs, show progress and
catch failures, stalls and stop signals. Imports runs, spaces, training and network; the searcher,
samplers and schedulers do not import torch (the simulator drives them too)."""
