"""Paged KV cache as block counts, behind one facade.

A replica's KV memory is ``num_gpu_blocks`` blocks of ``block_size`` tokens (every GPU of
the replica holds its shard of each block, so one count serves them all)::

    request r:  tokens  [0 ............................ num_computed + num_new)
                blocks  [ b0 | b1 | b2 | b3 ]     ceil(tokens / block_size) blocks
                                      └─ last block partly filled

``allocate_slots`` grows a request's blocks to cover its next tokens and returns ``None``
when the pool cannot, so the scheduler can preempt and retry (vLLM's contract). In
``reserve_max`` mode (Orca, static batching: no paging), the first allocation reserves
``reserve_tokens`` (the maximum sequence length) at once. Swap preemption moves a
request's blocks to a host pool of ``num_cpu_blocks``. Block identities, hashing and an
LRU free list arrive with prefix caching; until then counts are all the state there is.
"""

from __future__ import annotations

from simulator.request import Request

__all__ = ["KVCacheManager"]


class KVCacheManager:
    """Block accounting for one replica.

    Invariants: ``0 <= num_free_blocks <= num_gpu_blocks``; the blocks held by requests
    plus the free ones add up to ``num_gpu_blocks`` (likewise on the host); a request with
    ``c`` computed tokens holds at least ``ceil(c / block_size)`` blocks (the scheduler's
    decode fast path relies on it).
    """

    def __init__(
        self, num_gpu_blocks: int, block_size: int, num_cpu_blocks: int = 0,
        reserve_tokens: int | None = None,
    ) -> None:
        self.num_gpu_blocks = num_gpu_blocks
        self.block_size = block_size
        self.num_cpu_blocks = num_cpu_blocks
        self.reserve_tokens = reserve_tokens
        self.num_free_blocks = num_gpu_blocks
        self.num_free_cpu_blocks = num_cpu_blocks
        self.req_to_num_blocks: dict[int, int] = {}
        self.req_to_num_cpu_blocks: dict[int, int] = {}
        self.peak_used_blocks = 0

    @property
    def num_used_blocks(self) -> int:
        return self.num_gpu_blocks - self.num_free_blocks

    @property
    def usage(self) -> float:
        """Fraction of GPU blocks in use."""
        return 1.0 - self.num_free_blocks / self.num_gpu_blocks

    def blocks_for(self, num_tokens: int) -> int:
        """Blocks that hold ``num_tokens`` tokens (the last one may be partly filled)."""
        return -(-num_tokens // self.block_size)

    def allocate_slots(self, request: Request, num_new_tokens: int) -> int | None:
        """Make room for ``num_new_tokens`` more tokens of ``request``.

        Returns:
            The number of blocks newly taken (0 when the last block had room), or
            ``None`` when the free pool is too small; nothing changes in that case.
        """
        held = self.req_to_num_blocks.get(request.request_id, 0)
        if self.reserve_tokens is not None:
            tokens = max(self.reserve_tokens, request.num_computed_tokens + num_new_tokens)
        else:
            tokens = request.num_computed_tokens + num_new_tokens
        needed = -(-tokens // self.block_size) - held
        if needed <= 0:
            return 0
        if needed > self.num_free_blocks:
            return None
        self._take(request, held + needed, needed)
        return needed

    def free(self, request: Request) -> None:
        """Return every GPU block of ``request`` to the pool."""
        self.num_free_blocks += self.req_to_num_blocks.pop(request.request_id, 0)

    def swap_out(self, request: Request) -> int | None:
        """Move ``request``'s blocks to the host pool; ``None`` when the host pool is full."""
        held = self.req_to_num_blocks.get(request.request_id, 0)
        if held > self.num_free_cpu_blocks:
            return None
        del self.req_to_num_blocks[request.request_id]
        self.num_free_blocks += held
        self.num_free_cpu_blocks -= held
        self.req_to_num_cpu_blocks[request.request_id] = held
        return held

    def swap_in(self, request: Request, num_new_tokens: int) -> int | None:
        """Bring ``request``'s blocks back from the host and make room for its next
        ``num_new_tokens`` tokens, all or nothing.

        Returns:
            Blocks copied back from the host, or ``None`` when the GPU pool is short.
        """
        held = self.req_to_num_cpu_blocks[request.request_id]
        tokens = request.num_computed_tokens + num_new_tokens
        needed = max(held, -(-tokens // self.block_size))
        if needed > self.num_free_blocks:
            return None
        del self.req_to_num_cpu_blocks[request.request_id]
        self.num_free_cpu_blocks += held
        self._take(request, needed, needed)
        return held

    def _take(self, request: Request, num_held: int, num_taken: int) -> None:
        """Take ``num_taken`` free blocks; ``request`` then holds ``num_held``."""
        self.num_free_blocks -= num_taken
        self.req_to_num_blocks[request.request_id] = num_held
        used = self.num_gpu_blocks - self.num_free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used

    def check(self) -> None:
        """Assert the accounting invariants (called by tests and at the end of a run)."""
        assert 0 <= self.num_free_blocks <= self.num_gpu_blocks, self.num_free_blocks
        assert sum(self.req_to_num_blocks.values()) + self.num_free_blocks == self.num_gpu_blocks
        assert (sum(self.req_to_num_cpu_blocks.values()) + self.num_free_cpu_blocks
                == self.num_cpu_blocks)
