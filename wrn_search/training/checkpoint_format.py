"""The checkpoint file's name, format tag and identity rules, without torch.

:meth:`~wrn_search.training.engine.Trainer.save_checkpoint` writes the file and
:meth:`~wrn_search.training.engine.Trainer.load_checkpoint` refuses one of another spec, data
split or recipe; the run layer finds the files (:mod:`wrn_search.runs.checkpoints`) without
loading torch.
"""

from __future__ import annotations

from wrn_search.errors import RunDamaged

#: The format tag every checkpoint carries; a file without it is not read.
CHECKPOINT_FORMAT = "wrn-search-checkpoint-v1"
#: The checkpoint's file name in a trial's (or ``wrn-search train``'s) output directory.
CHECKPOINT_FILE = "checkpoint.pt"




class CheckpointError(RunDamaged):
    """A checkpoint that cannot be read or does not belong to this trainer's spec, data and recipe."""
