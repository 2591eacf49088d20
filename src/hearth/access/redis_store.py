"""Keys, limits and spend in Redis, shared by every replica.

Admission is one Lua script: it reads every window, the parallel slots, the spend and the reservations
of a key, decides, and records, all in one atomic step on the Redis server, with the server's clock
(`TIME`), so replicas with skewed clocks still share one window. That is what keeps "10 per minute"
at 10 with any number of replicas, and a budget from being overrun by requests racing on two of them.
A Redis that cannot be reached raises `KeyStoreUnavailable` (503): a keyed request is never let through
unchecked.
"""

from __future__ import annotations

import json
import time
from typing import Any

from hearth.access.keys import ApiKey
from hearth.access.meter import LEASE, WINDOW, Charge, ModelSpend, Spend, Verdict, refuse
from hearth.core.errors import KeyStoreUnavailable

# KEYS: 1 requests zset, 2 tokens hash (second -> tokens), 3 in-flight zset, 4 reservations hash, 5 spend hash
# ARGV: rpm, tpm, max_parallel, budget (-1: none), tokens, cost, ticket, lease, window, spend ttl
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local rpm, tpm, par, budget = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local tokens, cost, ticket = tonumber(ARGV[5]), tonumber(ARGV[6]), ARGV[7]
local lease, window = tonumber(ARGV[8]), tonumber(ARGV[9])
local edge = now - window
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', edge)
local nreq = redis.call('ZCARD', KEYS[1])
local req_reset = 0
if nreq > 0 then req_reset = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2]) + window - now end
local used, oldest = 0, nil
local buckets = redis.call('HGETALL', KEYS[2])
for i = 1, #buckets, 2 do
  local s = tonumber(buckets[i])
  if s + 1 <= edge then redis.call('HDEL', KEYS[2], buckets[i])
  else
    used = used + tonumber(buckets[i + 1])
    if oldest == nil or s < oldest then oldest = s end
  end
end
local tok_reset = 0
if oldest ~= nil then tok_reset = oldest + 1 + window - now end
local second = math.floor(now)
local function answer(why, retry)
  return {why, tostring(retry), nreq, tostring(req_reset), used, tostring(tok_reset), second}
end
if rpm > 0 and nreq >= rpm then return answer('requests', req_reset) end
if tpm > 0 and used + tokens > tpm then return answer('tokens', tok_reset) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
if par > 0 and redis.call('ZCARD', KEYS[3]) >= par then return answer('parallel', 1) end
if budget >= 0 and cost > 0 then
  local reserved = 0
  local held = redis.call('HGETALL', KEYS[4])
  for i = 1, #held, 2 do
    local c, exp = string.match(held[i + 1], '([^:]+):([^:]+)')
    if tonumber(exp) <= now then redis.call('HDEL', KEYS[4], held[i]) else reserved = reserved + tonumber(c) end
  end
  local spent = tonumber(redis.call('HGET', KEYS[5], '_total') or '0')
  if spent + reserved + cost > budget then return answer('budget', 0) end
end
redis.call('ZADD', KEYS[1], now, ticket)
redis.call('EXPIRE', KEYS[1], math.ceil(window) + 1)
redis.call('HINCRBY', KEYS[2], second, tokens)
redis.call('EXPIRE', KEYS[2], math.ceil(window) + 2)
redis.call('ZADD', KEYS[3], now + lease, ticket)
redis.call('EXPIRE', KEYS[3], math.ceil(lease))
if cost > 0 then
  redis.call('HSET', KEYS[4], ticket, string.format('%.17g:%.6f', cost, now + lease))
  redis.call('EXPIRE', KEYS[4], math.ceil(lease))
end
nreq = nreq + 1
used = used + tokens
if req_reset == 0 then req_reset = window end
if tok_reset == 0 then tok_reset = window end
return answer('', 0)
"""

# KEYS: 2 tokens hash, 3 in-flight zset, 4 reservations hash, 5 spend hash
# ARGV: ticket, token delta, model, prompt tokens, completion tokens, cost, spend ttl (0: none), admission second,
#       window
# The correction goes to the second the estimate was counted in, while that is in the window (so it never
# outlives what it corrects); after that, only tokens the estimate missed are counted, now.
_SETTLE = """
local t = redis.call('TIME')
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
local delta = tonumber(ARGV[2])
if redis.call('HEXISTS', KEYS[1], ARGV[8]) == 1 then
  if delta ~= 0 then redis.call('HINCRBY', KEYS[1], ARGV[8], delta) end
elseif delta > 0 then
  redis.call('HINCRBY', KEYS[1], t[1], delta)
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[9])) + 2)
end
local m = ARGV[3]
if m == '' then return redis.call('HGET', KEYS[4], '_total') or '0' end
local total = redis.call('HINCRBYFLOAT', KEYS[4], '_total', ARGV[6])
redis.call('HINCRBY', KEYS[4], m .. '|requests', 1)
redis.call('HINCRBY', KEYS[4], m .. '|prompt_tokens', ARGV[4])
redis.call('HINCRBY', KEYS[4], m .. '|completion_tokens', ARGV[5])
redis.call('HINCRBYFLOAT', KEYS[4], m .. '|cost', ARGV[6])
if tonumber(ARGV[7]) > 0 then redis.call('EXPIRE', KEYS[4], ARGV[7]) end
return total
"""

# KEYS: 1 in-flight zset, 2 reservations hash; ARGV: ticket, lease
_RENEW = """
local t = redis.call('TIME')
local until_ = tonumber(t[1]) + tonumber(t[2]) / 1000000 + tonumber(ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'XX', until_, ARGV[1])
  redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])))
end
local held = redis.call('HGET', KEYS[2], ARGV[1])
if held then
  local c = string.match(held, '([^:]+):')
  redis.call('HSET', KEYS[2], ARGV[1], c .. ':' .. string.format('%.6f', until_))
  redis.call('EXPIRE', KEYS[2], math.ceil(tonumber(ARGV[2])))
end
return 1
"""

PREFIX = "hearth:access:"


class RedisAccess:
    """Both the key store and the meter, on one Redis connection pool."""

    def __init__(self, url: str, *, timeout: float = 0.5, refresh: float = 0.5, client: Any = None) -> None:
        import redis.asyncio as redis

        self.url = url
        self._client = client or redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                                      decode_responses=True)
        self._admit = self._client.register_script(_ADMIT)
        self._settle = self._client.register_script(_SETTLE)
        self._renew = self._client.register_script(_RENEW)
        self._refresh = refresh
        self._cache: dict[str, tuple[float, ApiKey | None]] = {}
        self._count: tuple[float, bool] = (-1e9, False)

    async def _call(self, what: str, op: Any) -> Any:
        import redis

        try:
            return await op
        except (redis.RedisError, OSError) as e:
            raise KeyStoreUnavailable(f"the key store (Redis) cannot be reached ({what}): {type(e).__name__}") from e

    # --- KeyStore -------------------------------------------------------------------------------

    async def find(self, key_hash: str) -> ApiKey | None:
        now = time.monotonic()
        hit = self._cache.get(key_hash)
        if hit is not None and now - hit[0] < self._refresh:
            return hit[1]
        raw = await self._call("key lookup", self._client.hget(PREFIX + "by_hash", key_hash))
        key = ApiKey.from_record(json.loads(raw)) if raw else None
        if key is not None:  # unknown hashes are not cached: a flood of bad keys must not grow memory
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key_hash] = (now, key)
        return key

    async def any_keys(self) -> bool:
        now = time.monotonic()
        if now - self._count[0] >= self._refresh:
            n = await self._call("key count", self._client.hlen(PREFIX + "by_hash"))
            self._count = (now, n > 0)
        return self._count[1]

    async def put(self, key: ApiKey) -> None:
        record = json.dumps(key.to_record())
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(PREFIX + "by_hash", key.hash, record)
        pipe.hset(PREFIX + "by_id", key.id, key.hash)
        await self._call("key write", pipe.execute())
        self._cache.pop(key.hash, None)
        self._count = (-1e9, False)

    async def get(self, key_id: str) -> ApiKey | None:
        h = await self._call("key lookup", self._client.hget(PREFIX + "by_id", key_id))
        if not h:
            return None
        raw = await self._call("key lookup", self._client.hget(PREFIX + "by_hash", h))
        return ApiKey.from_record(json.loads(raw)) if raw else None

    async def all(self) -> list[ApiKey]:
        raw = await self._call("key list", self._client.hvals(PREFIX + "by_hash"))
        return sorted((ApiKey.from_record(json.loads(r)) for r in raw), key=lambda k: k.created)

    # --- Meter ----------------------------------------------------------------------------------

    def _keys(self, key: ApiKey, period: int) -> list[str]:
        base = f"{PREFIX}{{{key.id}}}:"  # a hash tag: one key's counters share a Redis Cluster slot
        return [base + "requests", base + "tokens", base + "inflight", base + "reserved", f"{base}spend:{period}"]

    def _spend_ttl(self, key: ApiKey) -> int:
        return int(key.period * 2) + 60 if key.period else 0

    async def admit(self, key: ApiKey, ticket: str, tokens: int, cost: float) -> Verdict:
        args = [key.rpm or 0, key.tpm or 0, key.max_parallel or 0, -1 if key.budget is None else key.budget,
                tokens, repr(cost), ticket, LEASE, WINDOW, self._spend_ttl(key)]
        keys = self._keys(key, key.period_index(time.time()))
        why, retry, nreq, req_reset, used, tok_reset, second = await self._call(
            "limits", self._admit(keys=keys, args=args)
        )
        v = Verdict(requests_reset=float(req_reset), tokens_reset=float(tok_reset), at=float(second))
        if key.rpm is not None:
            v.requests_remaining = max(0, key.rpm - int(nreq))
        if key.tpm is not None:
            v.tokens_remaining = max(0, key.tpm - int(used))
        return refuse(v, why, float(retry)) if why else v

    async def settle(self, key: ApiKey, ticket: str, tokens_estimated: int, charge: Charge | None,
                     admitted_at: float) -> float:
        keys = self._keys(key, key.period_index(time.time()))[1:]
        c = charge or Charge("")
        delta = c.prompt_tokens + c.completion_tokens - tokens_estimated
        args: list[str | int | float] = [ticket, delta, c.model, c.prompt_tokens, c.completion_tokens, repr(c.cost),
                                         self._spend_ttl(key), int(admitted_at), WINDOW]
        return float(await self._call("spend", self._settle(keys=keys, args=args)))

    async def renew(self, key: ApiKey, ticket: str) -> None:
        keys = self._keys(key, 0)
        await self._call("lease", self._renew(keys=[keys[2], keys[3]], args=[ticket, LEASE]))

    async def spend(self, key: ApiKey) -> Spend:
        now = time.time()
        period = key.period_index(now)
        keys = self._keys(key, period)
        pipe = self._client.pipeline(transaction=False)
        pipe.hgetall(keys[4])
        pipe.hgetall(keys[3])
        fields, held = await self._call("spend", pipe.execute())
        out = Spend(period, float(fields.pop("_total", 0) or 0))
        for f, v in fields.items():
            model, _, what = f.rpartition("|")
            ms = out.models.setdefault(model, ModelSpend())
            setattr(ms, what, float(v) if what == "cost" else int(v))
        for v in held.values():
            c, exp = v.split(":")
            if float(exp) > now:
                out.reserved += float(c)
        return out

    async def close(self) -> None:
        await self._client.aclose()
