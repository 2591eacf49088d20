"""KV-cache sequence slots that double as a prefix cache.

llama.cpp's unified KV cache stores each cell once, tagged with the sequences that use it. A slot is
one sequence id plus the exact tokens it holds. An idle slot keeps its tokens after its request
ends, so the next turn of that conversation, or another conversation with the same system prompt,
starts from the longest cached prefix: either by taking the slot over (and trimming its tail) or,
when the slot is still worth keeping, by `seq_cp`, which tags the shared cells with the new
sequence without copying them. This is what survives interleaved conversations with bounded
memory: the cells are the budget, and LRU idle slots are evicted when a decode finds no room.

Pure bookkeeping: the engine applies the plan through llama.cpp.
"""

from __future__ import annotations

from dataclasses import dataclass, field


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    # Compare in strides first: prompts share long prefixes, and Python loops are slow.
    step = 64
    while i + step <= n and a[i : i + step] == b[i : i + step]:
        i += step
    while i < n and a[i] == b[i]:
        i += 1
    return i


@dataclass
class Slot:
    seq_id: int
    tokens: list[int] = field(default_factory=list)
    busy: bool = False
    last_used: int = 0
    adapter: str = ""  # the LoRA adapter its cells were computed under ("": the base model)


@dataclass
class Plan:
    """How to seat a request: in `slot`, keeping its first `reuse` tokens, or, when `copy_from` is set, after
    that slot shares its first `reuse` tokens into it. Whatever the slot held beyond that is dropped."""

    slot: Slot
    reuse: int
    copy_from: Slot | None


class SlotTable:
    def __init__(self, n_slots: int) -> None:
        self.slots = [Slot(i) for i in range(n_slots)]
        self.clock = 0

    def tick(self) -> int:
        self.clock += 1
        return self.clock

    def plan(self, prompt: list[int], adapter: str = "") -> Plan | None:
        """Choose a slot for `prompt`, or None when every slot is busy. Only cells computed under the same
        adapter are reused: another adapter's keys and values for the same tokens differ."""
        idle = [s for s in self.slots if not s.busy]
        if not idle:
            return None
        best, best_len = None, 0
        for s in self.slots:
            if s.tokens and s.adapter == adapter:
                n = common_prefix(s.tokens, prompt)
                if n > best_len:
                    best, best_len = s, n
        # At least one prompt token must be decoded to get logits for the first sampled token.
        reuse = min(best_len, len(prompt) - 1)
        if best is not None and not best.busy and (best_len == len(best.tokens) or reuse == 0):
            return Plan(best, reuse, None)  # a pure extension: nothing in the slot is lost
        # Otherwise keep the best slot intact and seat the request elsewhere: an empty slot if there
        # is one, else the least recently used idle slot.
        empty = [s for s in idle if not s.tokens]
        target = empty[0] if empty else min(idle, key=lambda s: s.last_used)
        if best is None or reuse == 0:
            return Plan(target, 0, None)
        if target is best:
            return Plan(best, reuse, None)
        return Plan(target, reuse, best)

    def eviction_candidate(self) -> Slot | None:
        """The idle slot holding tokens that was used least recently."""
        idle = [s for s in self.slots if not s.busy and s.tokens]
        return min(idle, key=lambda s: s.last_used) if idle else None

    def cached_tokens(self) -> int:
        return sum(len(s.tokens) for s in self.slots if not s.busy)
