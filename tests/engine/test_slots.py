"""Prefix-slot planning (pure bookkeeping, no model)."""

from hearth.engine.slots import SlotTable, common_prefix


def test_common_prefix() -> None:
    a = list(range(300))
    assert common_prefix(a, a) == 300
    assert common_prefix(a, [*a[:130], -1]) == 130
    assert common_prefix([], a) == 0


def test_extension_takes_over_the_slot() -> None:
    t = SlotTable(3)
    t.slots[1].tokens = [1, 2, 3]
    plan = t.plan([1, 2, 3, 4, 5])
    assert plan and plan.slot is t.slots[1] and plan.reuse == 3 and plan.copy_from is None


def test_identical_prompt_keeps_one_token_to_decode() -> None:
    t = SlotTable(2)
    t.slots[0].tokens = [1, 2, 3]
    plan = t.plan([1, 2, 3])
    assert plan and plan.reuse == 2


def test_shared_prefix_is_copied_so_the_other_conversation_survives() -> None:
    t = SlotTable(3)
    t.slots[0].tokens = [9, 9, 9, 1, 1]  # conversation A: system prompt 9 9 9, then its turn
    plan = t.plan([9, 9, 9, 2, 2])  # conversation B, same system prompt
    assert plan and plan.copy_from is t.slots[0] and plan.slot is not t.slots[0] and plan.reuse == 3


def test_busy_best_slot_is_copied_from() -> None:
    t = SlotTable(2)
    t.slots[0].tokens, t.slots[0].busy = [5, 5, 5, 5], True
    plan = t.plan([5, 5, 5, 5, 6])
    assert plan and plan.copy_from is t.slots[0] and plan.slot is t.slots[1]


def test_all_busy_means_no_plan() -> None:
    t = SlotTable(2)
    for s in t.slots:
        s.busy = True
    assert t.plan([1]) is None


def test_lru_slot_is_evicted_first() -> None:
    t = SlotTable(3)
    for i, s in enumerate(t.slots):
        s.tokens, s.last_used = [i + 10], 5 - i
    assert t.eviction_candidate() is t.slots[2]
    plan = t.plan([99, 98])
    assert plan and plan.slot is t.slots[2] and plan.reuse == 0
