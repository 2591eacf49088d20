"""Which sequences get a token in the next engine step, and which may give up their place.

On this CPU a step's cost grows with the tokens in it (one stream decodes at ~60 tok/s; two together
reach only ~0.9x that in aggregate, eight ~1.9x), so every token spent on a stream that is seconds ahead
of its listener delays a turn that has nothing to say yet. The policy, after Andes (QoE-aware,
token-level preemptive scheduling for text streaming) but priced for a CPU:

- Streams without a pace (plain chat) decode every step, as they always did: nothing changes for them.
- Paced streams (voice) are served earliest-due first: a new turn's first segment is due `FIRST_TARGET`
  after it arrives, a playing stream's next segment when its listener runs out of speech (due only once
  that is less than `URGENT_LEAD` away). Where a step of one sequence costs at most half a step of four (on
  the CPU this was written on, a third; the engine measures its own, `engine/costs.py`), the earliest due gets
  the step to itself (its prefill, or its token) and others with speech in hand sit out; where it costs more
  (0.62 on a 2-core Xeon VM), they decode beside it. Nobody due: every stream decodes, in the widest (most
  efficient) steps, building lead for the next arrival.
- With every place taken, a paced stream far ahead (`PARK_LEAD`) is parked: it keeps its KV cells and
  sampler, and a new turn takes its place at once; it resumes when a place frees, or trades places back
  when it is about to run dry.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

FIRST_TARGET = 0.35  # seconds after arrival by which a voice turn's first segment is due
URGENT_LEAD = 1.0  # seconds of speech left below which a paced stream's next segment is due now
PARK_LEAD = 1.5  # seconds of speech ahead past which a paced stream may give its place to a new turn
HOPELESS = 0.3  # seconds past its due time after which a turn stops holding a step for itself
FILL_WIDTH = 4  # a step that holds more than one sequence is filled up to this many


class Schedulable(Protocol):
    todo: list[int]  # prompt tokens still to prefill
    t_arrive: float

    @property
    def paced(self) -> bool: ...

    @property
    def playing(self) -> bool:
        """A paced stream whose first segment is out (its listener is hearing it)."""
        ...

    def lead(self, now: float) -> float:
        """Seconds of speech buffered ahead of the listener (paced and playing streams only)."""
        ...


J = TypeVar("J", bound=Schedulable)


@dataclass(slots=True)
class StepPlan(Generic[J]):
    decode: list[J]  # one token each, in this order
    prefill: list[J]  # prompt chunks, in this order, within `budget` tokens
    budget: int
    sat_out: int  # paced streams that skipped this step because they are ahead


def due_at(j: Schedulable, now: float) -> float:
    """When the listener of a paced stream needs its next segment: a new turn's first segment is due
    `FIRST_TARGET` after it arrived; a playing stream's next one when the speech it has sent runs out."""
    return now + j.lead(now) if j.playing else j.t_arrive + FIRST_TARGET


def plan_step(active: Sequence[J], now: float, n_batch: int, prefill_chunk: int, *,
              alone_pays: bool = True) -> StepPlan[J]:
    """`alone_pays`: whether a step of one sequence is cheap enough, against a full step, that the most urgent
    turn is served alone while streams with speech in hand sit out (the engine decides it from its measured step
    costs, `StepCosts.alone_pays`); when it is not, every playing stream decodes beside the due ones."""
    plain = [j for j in active if not j.paced]
    playing = sorted((j for j in active if j.playing), key=lambda j: j.lead(now))
    needy = [j for j in active if j.paced and not j.playing] + [j for j in playing if j.lead(now) < URGENT_LEAD]
    decode = [j for j in plain if not j.todo]
    prefill = sorted((j for j in plain if j.todo), key=lambda j: j.t_arrive)
    if needy:
        # Earliest due first, alone where that pays (a step of one at most half a step of four here), so the
        # most urgent segment is ready soonest and the next one is no later than it would be sharing. A turn long
        # past its due time (a first sentence without a mark) shares its steps instead of holding them, and
        # with more than two due, steps widen (4 sequences make 1.3x the tokens of one, 8 make 1.9x).
        needy.sort(key=lambda j: due_at(j, now))
        serve = needy[:1]
        if now > due_at(needy[0], now) + HOPELESS or len(needy) > 2:
            # Late, or many due at once: the box is short of tokens, and wider steps make more of them.
            serve = needy[: FILL_WIDTH if len(needy) <= FILL_WIDTH + 1 else 2 * FILL_WIDTH]
        decode += [j for j in serve if not j.todo]
        prefill += [j for j in serve if j.todo]
        if not alone_pays:  # on this machine a wider step costs little more: nobody with speech in hand sits out
            chosen = set(map(id, decode))
            decode += [j for j in playing if id(j) not in chosen]
    else:
        decode += playing  # nobody is due: everyone decodes, in the widest (most efficient) steps
    if len(decode) > 1:
        # Once a step holds more than one sequence, filling it up to FILL_WIDTH costs little (measured: 2
        # sequences ~2.3x one, 4 ~3.2x), so the streams closest to running dry get a token too.
        chosen = set(map(id, decode))
        for j in (*needy, *playing):  # a playing stream can be in both: take each once
            if len(decode) >= FILL_WIDTH:
                break
            if id(j) not in chosen and not j.todo:
                chosen.add(id(j))
                decode.append(j)
    sat_out = len(playing) - sum(1 for j in decode if j.playing)
    return StepPlan(decode, prefill, prefill_chunk if decode else n_batch, sat_out)


def park_candidate(active: Sequence[J], now: float) -> J | None:
    """The playing stream furthest ahead, if it is far enough ahead to give its place to a new turn."""
    playing = [j for j in active if j.playing and not j.todo]
    if not playing:
        return None
    best = max(playing, key=lambda j: j.lead(now))
    return best if best.lead(now) > PARK_LEAD else None


def resume_order(parked: Sequence[J], now: float) -> list[J]:
    """Parked streams, the closest to running dry first."""
    return sorted(parked, key=lambda j: j.lead(now))
