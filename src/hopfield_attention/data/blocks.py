"""Fixed-length blocks of token ids read from a memory-mapped token file."""

import numpy as np
import torch
from torch.utils.data import Dataset

from .token_cache import TokenFile


class TokenBlocks(Dataset):
    """Windows of `block_size` tokens; consecutive windows share one token.

    The model shifts labels inside (position t predicts t+1), so a window of T tokens yields T-1
    predictions; with a stride of T-1 every next-token target of the split is predicted exactly once,
    except for fewer than T-1 targets at the very end. Perplexity over all blocks is then the
    perplexity of (all but that tail of) the split.
    """

    def __init__(self, token_file: TokenFile, block_size: int):
        if token_file.num_tokens < block_size:
            raise ValueError(
                f"{token_file.path.name}: {token_file.num_tokens} tokens, fewer than block_size={block_size}; "
                f"lower data.block_size"
            )
        self.token_file = token_file
        self.block_size = block_size
        self.stride = block_size - 1
        self.num_blocks = (token_file.num_tokens - block_size) // self.stride + 1
        self._tokens: np.memmap | None = None  # opened lazily, once per DataLoader worker

    def __len__(self) -> int:
        return self.num_blocks

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < self.num_blocks:
            raise IndexError(f"block {index} out of range [0, {self.num_blocks})")
        if self._tokens is None:
            self._tokens = self.token_file.open()
        start = index * self.stride
        block = np.asarray(self._tokens[start : start + self.block_size], dtype=np.int64)  # (T,)
        return {"input_ids": torch.from_numpy(block)}

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_tokens"] = None  # never pickle the mapped file into worker processes
        return state
