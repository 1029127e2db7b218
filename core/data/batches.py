"""Augmented training batches, made ahead of the step that needs them.

workers = 0: one prefetch thread augments batch k+1 while the model trains on batch k, with one
seeded pipeline drawn in batch order (the default; enough when a step costs more than
augmenting a batch, as on the CPU).
workers > 0: a torch DataLoader augments batches in that many worker processes, for fast GPUs
that one thread cannot feed (benchmarks/bench_train.py measures both sides). Each batch's
pipeline is re-seeded from (seed, batch number), so the batches do not depend on how many
workers there are or which one made a batch; they differ from the thread's stream.
Workers start from a forkserver, never by forking the training process: a fork taken while
another thread (OpenCV's pool, a prefetch thread) holds a lock can hang the child, and did in
tests. The images go to the workers as one shared-memory copy made once per run (not pickled
per epoch), or, for a memory-mapped set (core.data.store), the store file's path, which
each worker maps itself (nothing is copied); workers start again each epoch. As with any spawned worker, a script that trains
with workers > 0 must guard its entry point with `if __name__ == "__main__":`.
"""

from __future__ import annotations

import mmap
import multiprocessing
import weakref
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor

import albumentations as A
import numpy as np
import torch

from core.data.augment import augment_batch


def batch_seed(seed: int, step: int) -> int:
    """The pipeline seed of batch `step` in worker mode (a 32-bit int)."""
    return int(np.random.SeedSequence([seed, step]).generate_state(1)[0])


class _BatchDataset(torch.utils.data.Dataset):
    """Item k = batch k augmented, as a uint8 (B, H, W, 3) tensor (returned through shared memory)."""

    def __init__(self, images: torch.Tensor | _MappedRows, batches: list[np.ndarray],
                 pipeline: A.Compose | None, seed: int):
        self.images, self.batches, self.pipeline, self.seed = images, batches, pipeline, seed

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, step: int) -> torch.Tensor:
        if self.pipeline is not None:
            self.pipeline.set_random_seed(batch_seed(self.seed, step))
        source = self.images.numpy() if isinstance(self.images, torch.Tensor) else self.images
        images = source[self.batches[step]]
        return torch.from_numpy(augment_batch(self.pipeline, images))


# The shared-memory copy of the last image array handed to workers (one per training run: the
# array lives as long as the run's data, so every epoch reuses the same copy).
_SHARED: tuple[weakref.ref, torch.Tensor] | None = None


class _MappedRows:
    """A memory-mapped image file that pickles as its path: each worker maps it on first use."""

    def __init__(self, images: np.memmap):
        self.path, self.shape = str(images.filename), images.shape
        self._rows: np.ndarray | None = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "shape": self.shape, "_rows": None}

    def __getitem__(self, index) -> np.ndarray:
        if self._rows is None:
            self._rows = np.memmap(self.path, np.uint8, "r", shape=self.shape)
        return self._rows[index]


def _whole_file_map(images: np.ndarray) -> bool:
    """A uint8 np.memmap of a whole file from its first byte (not a view into one)."""
    return (isinstance(images, np.memmap) and isinstance(images.base, mmap.mmap)
            and images.filename is not None and images.offset == 0 and images.dtype == np.uint8
            and images.flags.c_contiguous)


def _shared_images(images: np.ndarray) -> torch.Tensor | _MappedRows:
    global _SHARED
    if _whole_file_map(images):
        return _MappedRows(images)
    if _SHARED is None or _SHARED[0]() is not images:
        _SHARED = (weakref.ref(images), torch.from_numpy(np.ascontiguousarray(images)).clone().share_memory_())
    return _SHARED[1]


def _worker_context():
    """forkserver, with this module (torch, albumentations, OpenCV) imported once in the server."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def _quiet_worker(_worker_id: int) -> None:
    import cv2

    cv2.setNumThreads(1)  # the parallelism is the worker processes themselves
    torch.set_num_threads(1)


class AugmentedBatches:
    """Context manager iterating over augmented (B, H, W, 3) uint8 arrays, one per index batch,
    in order. `pipeline` None means no augmentation; `seed` seeds worker mode only (the thread
    uses the pipeline's own seeded stream)."""

    def __init__(self, images: np.ndarray, batches: list[np.ndarray], pipeline: A.Compose | None,
                 workers: int = 0, seed: int = 0):
        if workers < 0:
            raise ValueError("workers must be 0 or more")
        self.images, self.batches, self.pipeline = images, batches, pipeline
        self.workers, self.seed = workers, seed
        self._pool: ThreadPoolExecutor | None = None

    def __enter__(self) -> AugmentedBatches:
        if self.workers == 0:
            self._pool = ThreadPoolExecutor(max_workers=1)
        return self

    def __exit__(self, *exc) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __iter__(self) -> Iterator[np.ndarray]:
        if not self.batches:
            return iter(())
        return self._threaded() if self.workers == 0 else self._processes()

    def _threaded(self) -> Iterator[np.ndarray]:
        if self._pool is None:
            raise RuntimeError("AugmentedBatches is iterated outside its `with` block")
        pending: Future = self._pool.submit(augment_batch, self.pipeline, self.images[self.batches[0]])
        for step in range(len(self.batches)):
            images = pending.result()
            if step + 1 < len(self.batches):
                pending = self._pool.submit(augment_batch, self.pipeline, self.images[self.batches[step + 1]])
            yield images

    def _processes(self) -> Iterator[np.ndarray]:
        dataset = _BatchDataset(_shared_images(self.images), self.batches, self.pipeline, self.seed)
        loader = torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False,
                                             num_workers=self.workers, worker_init_fn=_quiet_worker,
                                             multiprocessing_context=_worker_context())
        for batch in loader:
            yield batch.numpy()
