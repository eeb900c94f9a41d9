"""The torch kernels the profiler times and the reference executor runs: paged attention
for decode rows and for prefill chunks, and the key-slot gather through block tables.

Sharing them is the point: a profile measured on a device prices exactly the kernels the
reference executor (``validation.reference.model``) runs there, so a measured run and
the profiled cost model speak of the same code. KV caches are flat per layer,
[slots, kv heads, head dim], with ``slot = block * block_size + offset``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.attention.bias import causal_lower_right

__all__ = ["TORCH_DTYPES", "decode_attention", "key_slots", "prefill_attention"]

TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}


def key_slots(tables: Sequence[Sequence[int]], lengths: Sequence[int], block_size: int,
              device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Cache slots of each row's keys through its block table, padded to the longest row:
    ([rows, max keys] slot index, [rows, max keys] mask of real keys)."""
    # NOTE: numpy on the host, then one copy each: Python lists of a 256-row step's block
    # tables would cost milliseconds per step, which the device would sit out.
    max_len = max(lengths)
    num_blocks = -(-max_len // block_size)
    blocks = np.zeros((len(tables), num_blocks), dtype=np.int64)  # padding: block 0
    for row, table in enumerate(tables):
        used = table[:num_blocks]
        blocks[row, :len(used)] = used
    index = (blocks[:, :, None] * block_size + np.arange(block_size)).reshape(
        len(tables), -1)[:, :max_len]
    mask = np.arange(max_len)[None, :] < np.asarray(lengths)[:, None]
    return torch.from_numpy(index).to(device), torch.from_numpy(mask).to(device)


def decode_attention(query: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                     index: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """One query token per row against its cached keys (paged): the rows' keys gathered
    to [rows, kv heads, keys, d] and the query heads of each KV head stacked as that
    head's queries, so GQA needs no repeated keys.

    Args:
        query: [rows, heads, d].
        k_cache, v_cache: [slots, kv heads, d] of one layer.
        index, mask: from :func:`key_slots`.

    Returns:
        [rows, heads, d].
    """
    rows, heads, d = query.shape
    kv_heads = k_cache.shape[1]
    grouped = query.view(rows, kv_heads, heads // kv_heads, d)
    keys = k_cache[index].transpose(1, 2)  # [rows, kv heads, keys, d]
    values = v_cache[index].transpose(1, 2)
    out = F.scaled_dot_product_attention(grouped, keys, values,
                                         attn_mask=mask[:, None, None, :])
    return out.reshape(rows, heads, d)


def prefill_attention(query: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
                      index: torch.Tensor) -> torch.Tensor:
    """A chunk of q new tokens after c cached ones (paged), causal from the bottom right:
    query i sees keys 0 .. c + i. Keys are gathered and repeated per query head.

    Args:
        query: [q, heads, d].
        k_cache, v_cache: [slots, kv heads, d] of one layer.
        index: [c + q] cache slots of the row's keys.

    Returns:
        [q, heads, d].
    """
    q_len, heads, _ = query.shape
    group = heads // k_cache.shape[1]
    keys = k_cache[index].repeat_interleave(group, dim=1).transpose(0, 1)  # [heads, c+q, d]
    values = v_cache[index].repeat_interleave(group, dim=1).transpose(0, 1)
    kv_len = index.shape[0]
    if kv_len == q_len:
        out = F.scaled_dot_product_attention(query.transpose(0, 1), keys, values,
                                             is_causal=True)
    else:
        out = F.scaled_dot_product_attention(query.transpose(0, 1), keys, values,
                                             attn_mask=causal_lower_right(q_len, kv_len))
    return out.transpose(0, 1)
