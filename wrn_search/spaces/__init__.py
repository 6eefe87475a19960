"""The spaces layer: what a search may sample. ``space.py`` (SearchSpace, load_space), ``schema.py`` (the
sections and caps), ``parse.py`` (the YAML and the check of every field), ``sampling.py`` (axes as Optuna
parameters and back), ``budget.py`` (cost bounds in closed form, what a search may spend). Imports the
training and network layers' torch-free modules only: loading a space never loads torch."""
