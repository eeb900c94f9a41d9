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

Sliding-window layers (Gemma 3, Llama 4's chunked layers, Mistral-7B v0.1) keep KV for
the last ``window`` tokens only. A block holds ``block_size`` tokens of every layer, so a
request of ``t`` tokens needs the blocks of ``min(t, window) + g·max(0, t - window)``
tokens, ``g`` being the share of layers that keep every token: past the window only
the global layers grow (vLLM's hybrid allocator frees the local layers' blocks behind
the window). Blocks are taken on the scheduler's block boundaries, so past the window a
request may run up to one block short for fewer than ``block_size`` tokens.
"""

from __future__ import annotations

import math
from collections import OrderedDict

from simulator.serving.request import ALL_SHAREABLE, Request, RequestStatus
from simulator.serving.token_content import BlockHasher

__all__ = ["NO_HITS", "SKIP_UNSHARED", "KVCacheManager", "PrefixCachingKVCacheManager"]

NO_HITS: list[int] = []  # an unshared admission's lookup: never changed, only read

# False: the prefix cache hashes and registers every full block, as the reference that
# the skipping of unshared blocks is tested against (same results, more work).
SKIP_UNSHARED = True


class KVCacheManager:
    """Block accounting for one replica.

    Invariants: ``0 <= num_free_blocks <= num_gpu_blocks``; the blocks held by requests
    plus the free ones add up to ``num_gpu_blocks`` (likewise on the host); a request with
    ``c`` computed tokens holds at least ``ceil(c / block_size)`` blocks (the scheduler's
    decode fast path relies on it).
    """

    def __init__(
        self, num_gpu_blocks: int, block_size: int, num_cpu_blocks: int = 0,
        reserve_tokens: int | None = None, window: int = 0, global_share: float = 1.0,
    ) -> None:
        self.num_gpu_blocks = num_gpu_blocks
        self.block_size = block_size
        self.window = window
        self.global_share = global_share
        self.num_cpu_blocks = num_cpu_blocks
        self.reserve_tokens = reserve_tokens
        self.num_free_blocks = num_gpu_blocks
        self.num_free_cpu_blocks = num_cpu_blocks
        self.req_to_num_blocks: dict[int, int] = {}
        self.req_to_num_cpu_blocks: dict[int, int] = {}
        self.peak_used_blocks = 0
        self.num_query_tokens = 0  # prefix caching: prompt tokens looked up at admission
        self.num_hit_tokens = 0  # prefix caching: of which found in the cache
        self.num_host_hit_tokens = 0  # host tier: of which copied back from host memory
        self.loaded_tokens = 0  # host tier: tokens the last admission copies from the host

    @property
    def num_used_blocks(self) -> int:
        return self.num_gpu_blocks - self.num_free_blocks

    @property
    def usage(self) -> float:
        """Fraction of GPU blocks in use."""
        return 1.0 - self.num_free_blocks / self.num_gpu_blocks

    enables_prefix_caching = False
    skips_unshared = False  # prefix caching: blocks no one shares are not registered

    def blocks_for(self, tokens: int) -> int:
        """Blocks a request of ``tokens`` tokens holds (fewer past a sliding window)."""
        window = self.window
        if not window or tokens <= window:
            return -(-tokens // self.block_size)
        return -(-math.ceil(window + self.global_share * (tokens - window))
                 // self.block_size)

    def lookup_prefix(self, request: Request) -> int:
        """Tokens of ``request`` already in the cache (none without prefix caching)."""
        return 0

    def peek_prefix(self, request: Request) -> int:
        """As :meth:`lookup_prefix`, changing nothing (for routers that score replicas)."""
        return 0

    def cache_blocks(self, request: Request) -> None:
        """Register ``request``'s newly full blocks for reuse (no-op without caching)."""

    def allocate_slots(self, request: Request, num_new_tokens: int,
                       num_hit_tokens: int = 0) -> int | None:
        """Make room for ``num_new_tokens`` more tokens of ``request``.

        ``num_hit_tokens`` (prefix caching) is what :meth:`lookup_prefix` found just
        before, for a request being admitted; it is 0 here.

        Returns:
            The number of blocks newly taken (0 when the last block had room), or
            ``None`` when the free pool is too small; nothing changes in that case.
        """
        held = self.req_to_num_blocks.get(request.request_id, 0)
        if self.reserve_tokens is not None:
            tokens = max(self.reserve_tokens, request.num_computed_tokens + num_new_tokens)
        else:
            tokens = request.num_computed_tokens + num_new_tokens
        needed = (-(-tokens // self.block_size) if not self.window
                  else self.blocks_for(tokens)) - held
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
        needed = max(held, self.blocks_for(tokens))
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


class PrefixCachingKVCacheManager(KVCacheManager):
    """Automatic prefix caching as vLLM v1 does it, behind the same facade.

    Blocks have identities (``simulator.serving.token_content``): a full block whose tokens were
    computed is registered under its identity, and a later request whose prompt starts
    with the same blocks reuses them instead of computing them. Freed blocks keep their
    identity in an LRU pool; allocation takes the least recently freed block and only then
    forgets what it held. A request's blocks are freed tail first, so a sequence's last
    blocks are evicted before its shared head. Swap preemption is not offered (vLLM v1
    recomputes).

    Caching costs nothing where nothing is shared: a block past its request's
    ``num_shareable_tokens`` (content no other request has) can be hit only by the request
    itself after a preemption, so it is neither hashed nor registered until then, and
    such blocks are held and freed as anonymous runs (counts, as the plain manager keeps
    them). Every result is the same as registering every block (tested).

    Invariants: a block is either held (``ref_count > 0``) or in the free pool; every
    registered identity maps to a block that holds it; ``num_free_blocks`` is the pool
    size, cached blocks included.
    """

    enables_prefix_caching = True

    def __init__(self, num_gpu_blocks: int, block_size: int, num_host_blocks: int = 0,
                 window: int = 0, global_share: float = 1.0) -> None:
        super().__init__(num_gpu_blocks, block_size, window=window, global_share=global_share)
        # The host tier (vLLM's CPU KV offloading, LMCache): identities of blocks evicted
        # from the GPU, least recently used first; a prompt block found there is copied
        # back (priced on the host link) instead of recomputed.
        self.num_host_blocks = num_host_blocks
        self.host_pool: OrderedDict[int, None] = OrderedDict()
        self._pending_host: dict[int, int] = {}
        self.ref_count = [0] * num_gpu_blocks
        self.block_identity: list[int | None] = [None] * num_gpu_blocks
        self.identity_to_block: dict[int, int] = {}
        # Least recently freed first (never-used blocks at the front): a key >= 0 is a
        # named block (value 0), a key < 0 a run of ``value`` anonymous blocks: blocks past
        # their request's shareable tokens, which nothing can hit, so they need no name and
        # are taken and freed a run at a time. A named block's id is taken from
        # ``_spare_ids`` and goes back there when its block is taken anonymously.
        self.free_pool: OrderedDict[int, int] = OrderedDict()
        self._next_run = -1
        self.num_free_blocks = 0
        self._push_anonymous(num_gpu_blocks)
        self._spare_ids = list(range(num_gpu_blocks - 1, -1, -1))
        self.req_to_blocks: dict[int, list[int]] = {}  # named blocks, in order
        self.req_to_anonymous: dict[int, int] = {}  # then this many anonymous ones
        self.req_to_identities: dict[int, list[int]] = {}
        self.req_to_num_registered: dict[int, int] = {}
        self._pending_hits: dict[int, list[int]] = {}
        self._hasher = BlockHasher()
        # Blocks past a request's shareable tokens are hashed and registered only once it
        # is preempted (no one else can hit them; it can, when it comes back). Exact only
        # while registering changes nothing else: no host tier, whose LRU would hold the
        # evicted identities, and no sliding window, whose blocks lag the tokens.
        self.skips_unshared = SKIP_UNSHARED and not window and not num_host_blocks

    def _cacheable(self, request: Request, num_blocks: int) -> int:
        """``num_blocks`` cut to the blocks of ``request`` that another request may share
        (all of them unless :attr:`skips_unshared`)."""
        if not self.skips_unshared:
            return num_blocks
        return min(num_blocks, request.num_shareable_tokens // self.block_size)

    def _identities(self, request: Request, num_blocks: int) -> list[int]:
        """Identities of ``request``'s first ``num_blocks`` full blocks (memoized)."""
        known = self.req_to_identities.setdefault(request.request_id, [])
        if len(known) < num_blocks:
            segments = list(request.prompt_segments or [(("prompt", request.request_id),
                                                         request.prompt_tokens)])
            if request.num_output_tokens:
                segments.append((("out", request.request_id), request.num_output_tokens))
            parent = known[-1] if known else -1
            known.extend(self._hasher.block_ids(segments, self.block_size, len(known),
                                                num_blocks, parent))
        return known

    def lookup_prefix(self, request: Request) -> int:
        """Count the leading full blocks of ``request`` already cached; remember them for
        the allocation that follows. At least one token is always left to compute, so the
        step can sample."""
        if self.skips_unshared and request.num_shareable_tokens < self.block_size:
            # nothing it could find (an unshared prompt): no hashing, and no host hits
            # either (allocate_slots reads them only after a hit)
            self._pending_hits[request.request_id] = NO_HITS
            return 0
        hits: list[int] = []
        num_tokens = request.num_tokens
        num_blocks = self._cacheable(request, (num_tokens - 1) // self.block_size)
        if not num_blocks:
            self._pending_hits[request.request_id] = hits
            return 0
        identities = self._identities(request, num_blocks)[:num_blocks]
        for identity in identities:
            block = self.identity_to_block.get(identity)
            if block is None:
                break
            hits.append(block)
        self._pending_hits[request.request_id] = hits
        on_host = 0
        if self.host_pool:
            for identity in identities[len(hits):]:
                if identity not in self.host_pool:
                    break
                on_host += 1
        self._pending_host[request.request_id] = on_host
        return (len(hits) + on_host) * self.block_size

    def peek_prefix(self, request: Request) -> int:
        known = self.req_to_identities.get(request.request_id)
        num_blocks = self._cacheable(request, (request.num_tokens - 1) // self.block_size)
        if known is None or len(known) < num_blocks:
            segments = list(request.prompt_segments or [(("prompt", request.request_id),
                                                         request.prompt_tokens)])
            known = self._hasher.block_ids(segments, self.block_size, 0, num_blocks, -1)
        hits = 0
        for identity in known[:num_blocks]:
            if identity not in self.identity_to_block:
                break
            hits += 1
        return hits * self.block_size

    def allocate_slots(self, request: Request, num_new_tokens: int,
                       num_hit_tokens: int = 0) -> int | None:
        rid = request.request_id
        if rid not in self._pending_hits:  # no admission: a running request grows
            held = self.req_to_blocks.get(rid)
            if held is None:
                held = self.req_to_blocks[rid] = []
            anonymous = self.req_to_anonymous.get(rid, 0)
            tokens = request.num_computed_tokens + num_new_tokens
            needed = ((-(-tokens // self.block_size) if not self.window
                       else self.blocks_for(tokens)) - len(held) - anonymous)
            if needed <= 0:
                return 0
            if needed > self.num_free_blocks:
                return None
            if anonymous:  # in its unshared tail: anonymous blocks, a run at a time
                self._grow_anonymous(rid, anonymous, needed)
            else:
                self._grow(request, held, anonymous, needed)
            return needed
        looked_up = self._pending_hits.pop(rid)
        if not looked_up and not num_hit_tokens:  # an admission with nothing cached
            held = self.req_to_blocks.get(rid)
            anonymous = self.req_to_anonymous.get(rid, 0)
            tokens = request.num_computed_tokens + num_new_tokens
            needed = ((-(-tokens // self.block_size) if not self.window
                       else self.blocks_for(tokens))
                      - (len(held) if held is not None else 0) - anonymous)
            if needed > self.num_free_blocks:
                return None
            self.num_query_tokens += request.num_tokens
            self.loaded_tokens = 0
            if needed > 0 and not held and (
                    self.skips_unshared and request.num_shareable_tokens < self.block_size):
                # all its blocks anonymous (_grow's case, the way every unshared prompt
                # comes; it holds no named block, so no list of them either)
                pool = self.free_pool
                front = next(iter(pool))
                if front < 0 and pool[front] > needed:  # _grow_anonymous, inlined
                    pool[front] -= needed
                    self.num_free_blocks -= needed
                    self.req_to_anonymous[rid] = anonymous + needed
                    used = self.num_gpu_blocks - self.num_free_blocks
                    if used > self.peak_used_blocks:
                        self.peak_used_blocks = used
                else:
                    self._grow_anonymous(rid, anonymous, needed)
                return needed
            if held is None:
                held = self.req_to_blocks[rid] = []
            self._grow(request, held, anonymous, max(needed, 0))
            return max(needed, 0)
        on_host = self._pending_host.pop(rid, 0) if num_hit_tokens else 0
        hits = looked_up if num_hit_tokens else []
        held = self.req_to_blocks.get(rid)
        num_held = len(held) if held is not None else 0
        anonymous = self.req_to_anonymous.get(rid, 0)
        computed = num_hit_tokens or request.num_computed_tokens
        needed = self.blocks_for(computed + num_new_tokens) - num_held - anonymous - len(hits)
        reclaimed = sum(1 for block in hits if self.ref_count[block] == 0) if hits else 0
        if max(needed, 0) + reclaimed > self.num_free_blocks:
            return None
        # an admission: count it once, when it succeeds
        self.num_query_tokens += request.num_tokens
        self.num_hit_tokens += (len(hits) + on_host) * self.block_size
        self.loaded_tokens = on_host * self.block_size
        self.num_host_hit_tokens += self.loaded_tokens
        if on_host:
            start = len(hits)
            for loaded in self._identities(request, start + on_host)[start:start + on_host]:
                self.host_pool.move_to_end(loaded)  # touched
        if held is None:
            held = self.req_to_blocks[rid] = []
        for block in hits:  # touch: a cached block in the pool is taken back, not evicted
            if self.ref_count[block] == 0:
                del self.free_pool[block]
                self.num_free_blocks -= 1
            self.ref_count[block] += 1
            held.append(block)
        if hits:
            self.req_to_num_registered[rid] = len(hits)
        self._grow(request, held, anonymous, max(needed, 0))
        return max(needed, 0)

    def _grow(self, request: Request, held: list[int], anonymous: int, needed: int) -> None:
        """Give ``request`` (holding ``held`` named, then ``anonymous`` blocks) ``needed``
        more blocks from the front of the pool: named ones while its blocks may be shared,
        anonymous ones after."""
        named = 0 if anonymous else max(0, self._cacheable(request, len(held) + needed)
                                        - len(held))
        if named:
            self._take_named(held, named)
        if needed > named:
            self._take_anonymous(needed - named)
            self.req_to_anonymous[request.request_id] = anonymous + needed - named
        self._raise_peak()

    def _grow_anonymous(self, rid: int, anonymous: int, needed: int) -> None:
        """Give request ``rid`` (holding ``anonymous`` anonymous blocks) ``needed`` more,
        from the pool's front (NOTE: its front run, inlined: decodes and unshared
        admissions come here)."""
        pool = self.free_pool
        front = next(iter(pool))
        if front < 0 and pool[front] > needed:
            pool[front] -= needed
            self.num_free_blocks -= needed
        else:
            self._take_anonymous(needed)
        self.req_to_anonymous[rid] = anonymous + needed
        used = self.num_gpu_blocks - self.num_free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used

    def _raise_peak(self) -> None:
        used = self.num_gpu_blocks - self.num_free_blocks
        if used > self.peak_used_blocks:
            self.peak_used_blocks = used

    def _evict(self, block: int) -> None:
        """A free block is taken: forget what it held (the host tier keeps it)."""
        identity = self.block_identity[block]
        if identity is None:
            return
        del self.identity_to_block[identity]
        self.block_identity[block] = None
        if self.num_host_blocks:
            self.host_pool[identity] = None
            self.host_pool.move_to_end(identity)
            if len(self.host_pool) > self.num_host_blocks:
                self.host_pool.popitem(last=False)

    def _take_named(self, held: list[int], count: int) -> None:
        """Move ``count`` blocks from the front of the pool to ``held``, naming the
        anonymous ones."""
        free_pool, ref_count = self.free_pool, self.ref_count
        for _ in range(count):
            key, run = free_pool.popitem(last=False)
            if key >= 0:
                self._evict(key)
                block = key
            else:
                block = self._spare_ids.pop()
                if run > 1:
                    free_pool[key] = run - 1
                    free_pool.move_to_end(key, last=False)
            ref_count[block] = 1
            held.append(block)
        self.num_free_blocks -= count

    def take_anonymous(self, count: int) -> None:
        """Take ``count`` anonymous blocks from the front of the pool, for requests whose
        counts the caller raises (``req_to_anonymous``): a decode run's blocks."""
        self._take_anonymous(count)

    def _take_anonymous(self, count: int) -> None:
        """Take ``count`` blocks from the front of the pool, a run at a time; a named block
        taken gives its id back."""
        free_pool = self.free_pool
        self.num_free_blocks -= count
        front = next(iter(free_pool))
        if front < 0 and free_pool[front] > count:  # the front run has them all
            free_pool[front] -= count
            return
        while count:
            key, run = free_pool.popitem(last=False)
            if key >= 0:
                self._evict(key)
                self._spare_ids.append(key)
                count -= 1
            elif run > count:
                free_pool[key] = run - count
                free_pool.move_to_end(key, last=False)
                count = 0
            else:
                count -= run

    def _push_anonymous(self, count: int) -> None:
        """Free ``count`` anonymous blocks to the back of the pool (one run)."""
        if count <= 0:
            return
        pool = self.free_pool
        last = next(reversed(pool)) if pool else 0
        if last < 0:
            pool[last] += count
        else:
            pool[self._next_run] = count
            self._next_run -= 1
        self.num_free_blocks += count

    def cache_blocks(self, request: Request) -> None:
        rid = request.request_id
        held = self.req_to_blocks.setdefault(rid, [])  # an unshared admission has none
        # NOTE: past a sliding window a request holds fewer blocks than its full token
        # blocks; only the (named) blocks it holds can be registered.
        num_full = self._cacheable(
            request, min(request.num_computed_tokens // self.block_size, len(held)))
        start = self.req_to_num_registered.get(rid, 0)
        if num_full <= start:
            return
        for j, identity in enumerate(self._identities(request, num_full)[start:num_full],
                                     start=start):
            block = held[j]
            if identity not in self.identity_to_block and self.block_identity[block] is None:
                self.identity_to_block[identity] = block
                self.block_identity[block] = identity
        self.req_to_num_registered[rid] = num_full

    def free(self, request: Request) -> None:
        """Return ``request``'s blocks to the back of the pool, tail first."""
        rid = request.request_id
        anonymous = self.req_to_anonymous.pop(rid, 0)
        held = self.req_to_blocks.pop(rid, None)
        finished = request.status is RequestStatus.FINISHED
        if finished and not held:  # an unshared request's end: one anonymous run
            if anonymous > 0:  # _push_anonymous, inlined for its usual case
                pool = self.free_pool
                last = next(reversed(pool)) if pool else 0
                if last < 0:
                    pool[last] += anonymous
                    self.num_free_blocks += anonymous
                else:
                    self._push_anonymous(anonymous)
            if held is not None:  # it held no named block, but may have been looked up
                self.req_to_num_registered.pop(rid, None)
                self.req_to_identities.pop(rid, None)
            return
        if held is None:
            held = []
        if not finished and request.num_shareable_tokens < ALL_SHAREABLE:
            # Preempted: it will look its own blocks up when it comes back, so they are
            # named and registered now, as they would have been all along.
            request.num_shareable_tokens = ALL_SHAREABLE
            for _ in range(anonymous):
                block = self._spare_ids.pop()
                self.ref_count[block] = 1
                held.append(block)
            anonymous = 0
            self.req_to_blocks[rid] = held
            self.cache_blocks(request)
            del self.req_to_blocks[rid]
        self._push_anonymous(anonymous)
        ref_count, free_pool = self.ref_count, self.free_pool
        for block in reversed(held):
            count = ref_count[block] - 1
            ref_count[block] = count
            if not count:
                free_pool[block] = 0
                self.num_free_blocks += 1
        self.req_to_num_registered.pop(rid, None)
        if request.is_finished:
            self.req_to_identities.pop(rid, None)

    def swap_out(self, request: Request) -> int | None:
        return None  # recompute instead, as vLLM v1

    @property
    def hit_rate(self) -> float:
        """Prompt tokens found in the cache / prompt tokens looked up."""
        return self.num_hit_tokens / self.num_query_tokens if self.num_query_tokens else 0.0

    def check(self) -> None:
        held = sum(len(blocks) for blocks in self.req_to_blocks.values())
        anonymous = sum(self.req_to_anonymous.values())
        named_free = [key for key in self.free_pool if key >= 0]
        assert all(count >= 0 for count in self.ref_count)
        assert len(named_free) + sum(run for key, run in self.free_pool.items() if key < 0) \
            == self.num_free_blocks
        assert all(self.ref_count[block] == 0 for block in named_free)
        assert all(run > 0 for key, run in self.free_pool.items() if key < 0)
        in_use = sum(1 for count in self.ref_count if count > 0)
        assert in_use + anonymous + self.num_free_blocks == self.num_gpu_blocks
        assert len(self._spare_ids) == self.num_gpu_blocks - in_use - len(named_free)
        assert held + anonymous >= self.num_gpu_blocks - self.num_free_blocks
        for identity, block in self.identity_to_block.items():
            assert self.block_identity[block] == identity
