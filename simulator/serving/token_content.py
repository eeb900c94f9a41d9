"""What a request's tokens are, for prefix caching: segments of shared or unique content.

The simulator never sees real tokens, only whether two requests' tokens are the same. A
prompt is a list of segments ``(content_key, num_tokens)``; a request's own outputs are
one more segment, ``(("out", request_id), num_output_tokens)``::

    shared system prompt      multi-turn session, turn 3
    ┌──────────┬─────────┐    ┌────────┬────────┬────────┬────────┬────────┐
    │ sys-2    │ own q   │    │ q1     │ out(1) │ q2     │ out(2) │ q3     │
    └──────────┴─────────┘    └────────┴────────┴────────┴────────┴────────┘

Two requests share a KV block when every token before the block's end comes from the
same segments at the same offsets: block ``j``'s identity is a hash chain of block
``j-1``'s identity and the segment pieces inside block ``j`` (as vLLM v1 hashes token
ids). :class:`BlockHasher` interns each chain link to a small integer, so identities are
exact (no collisions) and the same on every run.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

__all__ = ["BlockHasher", "Segment", "prompt_segments", "shareable_tokens"]

Segment = tuple[Hashable, int]  # (content key, number of tokens)


class BlockHasher:
    """Interns block identities: ``(parent id, pieces of the block)`` → int."""

    def __init__(self) -> None:
        self._ids: dict[tuple[int, tuple[Any, ...]], int] = {}

    def block_ids(self, segments: Sequence[Segment], block_size: int, start_block: int,
                  end_block: int, parent: int) -> list[int]:
        """Identities of full blocks ``start_block .. end_block-1`` of ``segments``.

        Args:
            segments: the token content, in order; must cover ``end_block * block_size``.
            block_size: tokens per block.
            start_block: first block to hash.
            end_block: one past the last block to hash.
            parent: identity of block ``start_block - 1`` (-1 for the first block).
        """
        ids: list[int] = []
        if start_block >= end_block:
            return ids
        # Walk to the segment holding the first token of start_block.
        position = start_block * block_size
        index, offset = 0, position
        while offset >= segments[index][1]:
            offset -= segments[index][1]
            index += 1
        for _ in range(start_block, end_block):
            pieces: list[tuple[Hashable, int, int]] = []
            room = block_size
            while room:
                key, length = segments[index]
                take = min(room, length - offset)
                pieces.append((key, offset, take))
                room -= take
                offset += take
                if offset == length:
                    index, offset = index + 1, 0
            link = (parent, tuple(pieces))
            parent = self._ids.setdefault(link, len(self._ids))
            ids.append(parent)
        return ids


def prompt_segments(request_index: int, prompt_tokens: int, prefix_id: str | None = None,
                    prefix_tokens: int | None = None, block_hashes: Sequence[int] | None = None,
                    hash_block_tokens: int = 512,
                    history: Sequence[Segment] | None = None,
                    prompt_id: str | None = None) -> list[Segment]:
    """The segments of one prompt, from whichever token identity the trace gives.

    Args:
        request_index: the request's position in the trace (its unique content key).
        prompt_tokens: prompt length.
        prefix_id: a shared prefix (system prompt) id, with ``prefix_tokens`` tokens.
        prefix_tokens: length of the shared prefix.
        block_hashes: Mooncake-style ids of consecutive ``hash_block_tokens``-token blocks.
        hash_block_tokens: tokens per entry of ``block_hashes``.
        history: earlier turns of the session (their prompts and outputs), which this
            prompt starts with.
        prompt_id: the rest of the prompt is this repeated prompt's content, the same
            for every request with this id (otherwise its own).
    """
    segments: list[Segment] = []
    covered = 0
    if history:
        segments.extend(history)
        covered = sum(length for _, length in history)
    elif block_hashes:
        for block_hash in block_hashes:
            take = min(hash_block_tokens, prompt_tokens - covered)
            if take <= 0:
                break
            segments.append((("hash", block_hash), take))
            covered += take
    elif prefix_id is not None and prefix_tokens:
        segments.append((("prefix", prefix_id), prefix_tokens))
        covered = prefix_tokens
    if prompt_tokens > covered:
        key = ("repeated", prompt_id) if prompt_id is not None else ("prompt", request_index)
        segments.append((key, prompt_tokens - covered))
    return segments


def shareable_tokens(segments: Sequence[Sequence[Segment]], output_tokens: Sequence[int] | Any
                     ) -> list[int]:
    """Per request, how many of its leading tokens (its prompt's segments, then its own
    outputs, ``("out", index)``) come from content that some other request also has.

    A block past that point holds content of this request alone, so only the request
    itself could ever hit it (after a preemption); the prefix cache need not hash or
    register it until then, which makes caching free on a trace that shares nothing.
    """
    holders: Counter[Hashable] = Counter()
    for index, request_segments in enumerate(segments):
        holders.update({key for key, _ in request_segments} | {("out", index)})
    result = []
    for index, request_segments in enumerate(segments):
        covered = 0
        for key, length in [*request_segments, (("out", index), int(output_tokens[index]))]:
            if holders[key] < 2:
                break
            covered += length
        result.append(covered)
    return result
