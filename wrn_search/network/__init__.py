"""The network layer: a WRN's spec and name (``spec.py``: parsing, validation, closed-form params and
MACs) and its PyTorch module (``model.py``). Imports only the base modules; ``spec.py`` is torch-free."""
