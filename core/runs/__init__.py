"""The run folder: epochs, checkpoints (the one reader), per-checkpoint caches, storage,
where a checkpoint came from."""
