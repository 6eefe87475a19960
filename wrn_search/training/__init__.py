"""The training layer: one WRN trained with one recipe. ``recipe.py`` (TrainConfig, torch-free), ``data.py``
(datasets as numpy arrays), ``loader.py`` (the device-resident loader), ``engine.py`` (the Trainer),
``device.py`` (device, precision and memory policy), ``checkpoint_format.py`` (torch-free), ``epoch_bar.py``.
Imports the network layer and the base modules; knows nothing of searches or Ray."""
