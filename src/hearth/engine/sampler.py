"""Sampler chains for the engine: built on the engine thread when a job is seated, freed when it ends."""

from __future__ import annotations

from typing import Any

from hearth.core.errors import BadRequest
from hearth.core.types import Sampling
from hearth.engine.job import DEFAULTS


def make_sampler(L: Any, vocab: Any, n_vocab: int, s: Sampling, grammar: str | None = None) -> Any:
    """A llama.cpp sampler chain for one request: the grammar first (it masks what it forbids before any other
    sampler looks), then bias, penalties, and greedy or top-k / top-p / min-p / temperature with a seed."""
    for tok in s.logit_bias or ():  # llama.cpp indexes the logits by these: one out of range is memory corruption
        if not 0 <= int(tok) < n_vocab:
            raise BadRequest(f"logit_bias: token id {tok} is not in this model's vocabulary (0 to {n_vocab - 1})",
                             param="logit_bias")
    chain = L.llama_sampler_chain_init(L.llama_sampler_chain_default_params())
    add = L.llama_sampler_chain_add
    if grammar:  # first: it masks every token the grammar forbids, before any other sampler looks
        g = L.llama_sampler_init_grammar(vocab, grammar.encode("utf-8"), b"root")
        if not g:
            L.llama_sampler_free(chain)
            raise BadRequest("the output grammar could not be parsed by llama.cpp")
        add(chain, g)
    if s.logit_bias:
        arr = (L.llama_logit_bias * len(s.logit_bias))()
        for i, (tok, bias) in enumerate(s.logit_bias.items()):
            arr[i].token, arr[i].bias = int(tok), float(bias)
        add(chain, L.llama_sampler_init_logit_bias(n_vocab, len(s.logit_bias), arr))
    rp = s.repeat_penalty if s.repeat_penalty is not None else 1.0
    fp, pp = s.frequency_penalty or 0.0, s.presence_penalty or 0.0
    if rp != 1.0 or fp or pp:
        add(chain, L.llama_sampler_init_penalties(n_vocab, 64, rp, fp, pp))
    temp = s.temperature if s.temperature is not None else DEFAULTS["temperature"]
    if temp <= 0:
        add(chain, L.llama_sampler_init_greedy())
        return chain
    top_k = s.top_k if s.top_k is not None else DEFAULTS["top_k"]
    if top_k > 0:
        add(chain, L.llama_sampler_init_top_k(top_k))
    add(chain, L.llama_sampler_init_top_p(s.top_p if s.top_p is not None else DEFAULTS["top_p"], 1))
    add(chain, L.llama_sampler_init_min_p(s.min_p if s.min_p is not None else DEFAULTS["min_p"], 1))
    add(chain, L.llama_sampler_init_temp(temp))
    seed = s.seed if s.seed is not None else L.LLAMA_DEFAULT_SEED
    add(chain, L.llama_sampler_init_dist(seed & 0xFFFFFFFF))
    return chain
