"""A model trained in this process and saved as a checkpoint, for the tests that need one."""

from pathlib import Path

import lightning as L


def trained(model, data, path: Path, epochs: int, seed: int) -> Path:
    """`model` fitted `epochs` epochs on `data` from `seed`, saved as the checkpoint `path`."""
    L.seed_everything(seed)
    trainer = L.Trainer(max_epochs=epochs, logger=False, enable_progress_bar=False, enable_checkpointing=False)
    trainer.fit(model, data)
    trainer.save_checkpoint(path)
    return path
