"""The batch sampler and loader behind every data module: whole batches drawn by indexing the split's
tensors (:class:`_TensorBatches`), sharded over DDP ranks and resumable mid-epoch
(:class:`EpochShuffleSampler`, :class:`ResumableLoader`)."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler

from models.errors import ConfigError


class _TensorBatches(torch.utils.data.Dataset):
    """Indexed by a list of indices (from a batch sampler): returns a whole batch at once."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx):
        idx = torch.as_tensor(idx, device=self.x.device)
        return self.x[idx], self.y[idx]


class EpochShuffleSampler(Sampler[list[int]]):
    """Batches of indices of ``range(n)`` for rank ``rank`` of ``world_size`` processes.

    ``shuffle=True`` (training): each epoch is one permutation drawn from ``(seed, epoch)`` alone,
    so every rank draws the same one; it is cut to a multiple of ``world_size`` (the
    ``n % world_size`` left-over samples, different ones each epoch, sit that epoch out: no sample
    is seen twice) and rank ``r`` takes every ``world_size``-th index from position ``r``. The
    ranks' shards are disjoint, cover the epoch and have equal lengths (so equal batch counts,
    which DDP needs).
    ``shuffle=False`` (evaluation): rank ``r`` takes ``r, r + world_size, ...`` in order, nothing
    dropped or padded; shards differ in length by at most one, so metrics summed over ranks
    are exact.

    ``set_epoch(epoch)`` (Lightning calls it every epoch) picks the permutation. ``state_dict()``
    records the epoch and how many batches of it were yielded; after ``load_state_dict`` the next
    iteration skips those batches once (mid-epoch resume).
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1, *,
                 batch_size: int = 1, shuffle: bool = True):
        if not isinstance(world_size, int) or world_size < 1 or not 0 <= rank < world_size:
            raise ConfigError(f"EpochShuffleSampler: rank {rank} must be in [0, world_size={world_size})")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"EpochShuffleSampler: batch_size must be a positive integer, got {batch_size!r}")
        if n < world_size:
            raise ConfigError(f"a split of {n} samples cannot be shared by {world_size} processes "
                              f"(each needs at least one); use more data or fewer devices")
        self.n, self.seed, self.rank, self.world_size = int(n), int(seed), rank, world_size
        self.batch_size, self.shuffle = batch_size, shuffle
        self.epoch = 0
        self._skip = 0  # batches to skip once (set by load_state_dict)
        self._done = 0  # batches of this epoch yielded so far

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._skip, self._done = int(epoch), 0, 0

    def shard(self) -> torch.Tensor:
        """This rank's indices for the current epoch, in order."""
        if not self.shuffle:
            return torch.arange(self.rank, self.n, self.world_size)
        g = torch.Generator().manual_seed((self.seed * 1_000_003 + self.epoch) % 2**62)
        perm = torch.randperm(self.n, generator=g)
        return perm[: self.n - self.n % self.world_size][self.rank :: self.world_size]

    def __len__(self) -> int:
        return -(-len(range(self.rank, self._usable(), self.world_size)) // self.batch_size)

    def _usable(self) -> int:
        return self.n - self.n % self.world_size if self.shuffle else self.n

    def __iter__(self):
        batches = self.shard().split(self.batch_size)
        start, self._skip = self._skip, 0
        for i in range(start, len(batches)):
            self._done = i + 1
            yield batches[i].tolist()

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "batches_done": self._done}

    def load_state_dict(self, state: dict) -> None:
        self.seed, self.epoch = int(state["seed"]), int(state["epoch"])
        self._skip = self._done = int(state.get("batches_done", 0))


class ResumableLoader(DataLoader):
    """A DataLoader whose position in the epoch is saved in checkpoints: Lightning stores
    ``state_dict()`` (its sampler's epoch and batches done) and calls ``load_state_dict`` on
    resume, so a run resumed from a mid-epoch checkpoint sees exactly the batches that remain.

    It has its own ``generator``: a plain DataLoader draws a number from the global random
    generator each time an epoch's iterator is created (a base seed for workers, drawn even with
    none), which shifts every later dropout mask and augmentation by one draw between a run and
    the same run resumed from a checkpoint."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("generator", torch.Generator().manual_seed(0))
        super().__init__(*args, **kwargs)

    def state_dict(self) -> dict:
        return self.sampler.state_dict() if hasattr(self.sampler, "state_dict") else {}

    def load_state_dict(self, state: dict) -> None:
        if state and hasattr(self.sampler, "load_state_dict"):
            self.sampler.load_state_dict(state)
