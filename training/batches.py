"""Input pipeline: tokenise once, then serve whole padded batches.

Prompts are tokenised once up front (the tokenizer is the slow part, and an epoch would
otherwise repeat it). A :class:`BatchDataset` item is one rank's part of one global batch,
already padded to its own longest prompt and carrying the global batch's weight sum (the
loss normaliser, see ``training.runtime``). On CUDA the DataLoader collates batches in worker
processes with pinned memory so the GPU does not wait for them; on CPU the main process does
it (worker processes would only compete with the model for the same cores).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import DataLoader, Dataset

from training.dataset import TrainSet
from training.runtime import GlobalBatches, Runtime


def tokenize(tokenizer: Any, prompts: Sequence[str], max_length: int) -> list[torch.Tensor]:
    """Token ids of each prompt (with special tokens), truncated to ``max_length``, one
    tensor per prompt (so a batch is padded by one C call, not a Python loop)."""
    if not prompts:
        return []
    encoded = tokenizer(list(prompts), truncation=True, max_length=max_length)
    return [torch.tensor(ids, dtype=torch.long) for ids in encoded["input_ids"]]


def pad(ids: Sequence[torch.Tensor], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(input_ids, attention_mask), right-padded to the longest row."""
    if not ids:
        return torch.zeros((0, 1), dtype=torch.long), torch.zeros((0, 1), dtype=torch.long)
    input_ids = pad_sequence(list(ids), batch_first=True, padding_value=pad_id)
    lengths = torch.tensor([len(r) for r in ids])
    mask = (torch.arange(input_ids.shape[1])[None, :] < lengths[:, None]).long()
    return input_ids, mask


class BatchDataset(Dataset[dict[str, torch.Tensor]]):
    """Item k: this rank's part of global batch k of one epoch."""

    def __init__(self, ids: list[torch.Tensor], train: TrainSet, batches: list[list[int]],
                 sampler: GlobalBatches, pad_id: int) -> None:
        self.ids, self.train, self.batches = ids, train, batches
        self.sampler, self.pad_id = sampler, pad_id

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, k: int) -> dict[str, torch.Tensor]:
        batch = self.batches[k]
        local = self.sampler.part(batch)
        input_ids, mask = pad([self.ids[i] for i in local], self.pad_id)
        idx = np.asarray(local, dtype=np.int64)
        return {
            "input_ids": input_ids,
            "attention_mask": mask,
            "labels": torch.from_numpy(self.train.labels[idx]),
            "teacher": torch.from_numpy(self.train.teacher[idx].astype(np.float32)),
            "kd_mask": torch.from_numpy(self.train.kd_mask[idx].astype(np.float32)),
            "weights": torch.from_numpy(self.train.weights[idx].astype(np.float32)),
            "normaliser": torch.tensor(float(self.train.weights[np.asarray(batch)].sum())),
        }


def epoch_loader(ids: list[torch.Tensor], train: TrainSet, sampler: GlobalBatches, epoch: int,
                 pad_id: int, rt: Runtime, workers: int | None = None) -> DataLoader[Any]:
    """The loader of one epoch (a fresh permutation per epoch)."""
    sampler.set_epoch(epoch)
    dataset = BatchDataset(ids, train, sampler.global_batches(), sampler, pad_id)
    if workers is None:
        workers = min(4, max(1, (torch.get_num_threads() or 2) // 2)) if rt.cuda else 0
    return DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                      pin_memory=rt.cuda, persistent_workers=False)


def to_device(batch: dict[str, torch.Tensor], rt: Runtime) -> dict[str, torch.Tensor]:
    return {k: v.to(rt.device, non_blocking=rt.cuda) for k, v in batch.items()}


@torch.no_grad()
def predict_logits(model: Any, ids: list[torch.Tensor], pad_id: int, rt: Runtime,
                   batch_size: int = 256) -> torch.Tensor:
    """(N, C) float32 logits on CPU, in input order; prompts sorted by length for speed."""
    model.eval()
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    out: list[torch.Tensor] = []
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        input_ids, mask = pad([ids[i] for i in chunk], pad_id)
        with rt.autocast():
            logits = model(input_ids=input_ids.to(rt.device), attention_mask=mask.to(rt.device)).logits
        out.append(logits.float().cpu())
    if not out:
        return torch.zeros((0, 0))
    logits = torch.cat(out)
    result = torch.empty_like(logits)
    result[torch.as_tensor(order)] = logits
    return result
