"""The simulation layer: benchmark tables (``table.py``), recording one with real training
(``tabulate.py``) and replaying the search's own searcher and schedulers over one (``simulate.py``).
Imports the search layer and below; a simulation never loads torch."""
