"""A small Prometheus text-format exporter.

Written here rather than taken from prometheus_client to keep the per-request cost to a dict
lookup and a few additions, and start-up free of another import. All updates happen on the event
loop thread, so no locks are needed.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Sequence

LabelValues = tuple[str, ...]

# Fine below 100 ms, where a local first token lives; coarse up to minutes, for remote totals.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75,
    1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0,
)


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: Sequence[str], values: LabelValues, extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


class Counter:
    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self.values: dict[LabelValues, float] = {}

    def inc(self, labels: LabelValues = (), amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} counter"]
        for lv, v in self.values.items():
            out.append(f"{self.name}{_labels(self.label_names, lv)} {v:g}")
        return out


class Gauge:
    """A gauge read at scrape time from a callback, so nothing has to push it, or set where the value is
    learnt (a key's spend, known when a request settles)."""

    def __init__(self, name: str, help: str, labels: Sequence[str] = ()) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self.sources: dict[LabelValues, Callable[[], float]] = {}
        self.values: dict[LabelValues, float] = {}

    def set_function(self, labels: LabelValues, fn: Callable[[], float]) -> None:
        self.sources[labels] = fn

    def remove_function(self, labels: LabelValues) -> None:
        """Drop a series whose source is gone (a model that was removed), so it is not scraped forever."""
        self.sources.pop(labels, None)

    def set(self, labels: LabelValues, value: float) -> None:
        self.values[labels] = value

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} gauge"]
        for lv, fn in self.sources.items():
            out.append(f"{self.name}{_labels(self.label_names, lv)} {fn():g}")
        for lv, v in self.values.items():
            out.append(f"{self.name}{_labels(self.label_names, lv)} {v:g}")
        return out


class Histogram:
    def __init__(
        self, name: str, help: str, labels: Sequence[str] = (), buckets: Sequence[float] = LATENCY_BUCKETS
    ) -> None:
        self.name, self.help, self.label_names = name, help, tuple(labels)
        self.buckets = tuple(buckets)
        self.series: dict[LabelValues, list[float]] = {}  # per-bucket counts, then sum, then count

    def observe(self, labels: LabelValues, value: float) -> None:
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = [0.0] * (len(self.buckets) + 2)
        i = bisect_left(self.buckets, value)
        if i < len(self.buckets):
            s[i] += 1
        s[-2] += value
        s[-1] += 1

    def render(self) -> list[str]:
        out = [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} histogram"]
        for lv, s in self.series.items():
            cum = 0.0
            for b, c in zip(self.buckets, s, strict=False):
                cum += c
                le = _labels(self.label_names, lv, f'le="{b:g}"')
                out.append(f"{self.name}_bucket{le} {cum:g}")
            inf = _labels(self.label_names, lv, 'le="+Inf"')
            out.append(f"{self.name}_bucket{inf} {s[-1]:g}")
            out.append(f"{self.name}_sum{_labels(self.label_names, lv)} {s[-2]:g}")
            out.append(f"{self.name}_count{_labels(self.label_names, lv)} {s[-1]:g}")
        return out


class Registry:
    def __init__(self) -> None:
        self.metrics: list[Counter | Gauge | Histogram] = []

    def counter(self, name: str, help: str, labels: Sequence[str] = ()) -> Counter:
        m = Counter(name, help, labels)
        self.metrics.append(m)
        return m

    def gauge(self, name: str, help: str, labels: Sequence[str] = ()) -> Gauge:
        m = Gauge(name, help, labels)
        self.metrics.append(m)
        return m

    def histogram(self, name: str, help: str, labels: Sequence[str] = (),
                  buckets: Sequence[float] = LATENCY_BUCKETS) -> Histogram:
        m = Histogram(name, help, labels, buckets)
        self.metrics.append(m)
        return m

    def render(self) -> str:
        lines: list[str] = []
        for m in self.metrics:
            lines.extend(m.render())
        return "\n".join(lines) + "\n"


QUALITY_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
LOAD_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    """The gateway's own series. One instance per server."""

    def __init__(self) -> None:
        r = self.registry = Registry()
        mb = ("model", "backend")
        self.requests = r.counter("hearth_requests_total", "Generation requests by API and outcome",
                                  ("api", "model", "backend", "status"))
        self.errors = r.counter("hearth_errors_total", "Failed requests by error code", ("model", "backend", "code"))
        self.ttft = r.histogram("hearth_time_to_first_token_seconds", "Time to first token", mb)
        self.latency = r.histogram("hearth_request_duration_seconds", "End-to-end request latency", mb)
        self.tokens_in = r.counter("hearth_prompt_tokens_total", "Prompt tokens", mb)
        self.tokens_out = r.counter("hearth_completion_tokens_total", "Completion tokens", mb)
        self.time_per_output_token = r.histogram(
            "hearth_time_per_output_token_seconds",
            "Inter-token latency: mean gap between output chunks after the first, one observation per response", mb,
        )
        self.spend = r.counter("hearth_spend_total", "Spend charged to API keys, in the price table's unit",
                               ("key", "model"))
        self.budget_used = r.gauge("hearth_budget_used_ratio",
                                   "Share of a key's budget spent in its current period (set as requests settle)",
                                   ("key",))
        self.rejections = r.counter("hearth_limit_rejections_total",
                                    "Requests refused by a key's limits (requests, tokens, parallel, budget)",
                                    ("key", "reason"))
        self.auth_failures = r.counter("hearth_auth_failures_total",
                                       "Requests refused for their key (missing, unknown, revoked, expired, "
                                       "forbidden, store_unavailable)", ("reason",))
        self.routes = r.counter("hearth_route_decisions_total", "Routed requests by chosen backend and reason",
                                ("router", "target", "reason"))
        self.fallbacks = r.counter("hearth_fallbacks_total", "Router moves from one backend to another",
                                   ("router", "from", "to", "reason"))
        self.circuit = r.gauge("hearth_circuit_state", "Circuit breaker state (0 closed, 1 half-open, 2 open)",
                               ("backend",))
        self.embeddings = r.counter("hearth_embedding_requests_total", "Embedding requests by model and outcome",
                                    ("api", "model", "status"))
        self.embedded_texts = r.counter("hearth_embedded_texts_total", "Texts embedded", ("model",))
        self.rag_searches = r.counter("hearth_rag_searches_total", "Knowledge-base searches", ("kb", "mode"))
        self.rag_search = r.histogram("hearth_rag_search_seconds", "Knowledge-base search latency (embedding included)")
        self.embedder = r.gauge("hearth_embedding_value", "Local embedding model: forward batches and texts run",
                                ("model", "what"))
        self.cache = r.counter("hearth_cache_total", "Cache lookups by result (hit, semantic, miss)", ("result",))
        self.cache_guard = r.counter("hearth_cache_guard_rejections_total",
                                     "Semantic near-matches refused by a guard", ("reason",))
        self.cache_lookup = r.histogram("hearth_cache_lookup_seconds", "Cache lookup latency (exact + semantic)")
        self.cache_size = r.gauge("hearth_cache_value", "Cache size and health", ("what",))
        self.first_segment = r.histogram("hearth_time_to_first_segment_seconds",
                                         "Time to the first speakable segment (paced or segmented requests)",
                                         ("model",))
        self.underruns = r.counter("hearth_pace_underruns_total",
                                   "Segments that reached a paced listener after its audio ran out",
                                   ("model",))
        self.underrun_lag = r.counter("hearth_pace_lag_seconds_total",
                                      "Seconds paced listeners spent waiting in silence mid-answer",
                                      ("model",))
        self.engine = r.gauge("hearth_engine_value", "Local engine state (queue, slots, prefix cache)",
                              ("model", "what"))
        self.intents = r.counter("hearth_intents_total", "Requests by the intent of their latest turn",
                                 ("model", "intent"))
        self.quality = r.histogram("hearth_quality_score", "Quality score (0..1) of sampled answers",
                                   ("model", "route"), QUALITY_BUCKETS)
        self.drift = r.gauge("hearth_drift", "How far the recent window of a signal moved from its baseline "
                             "(quality, refusal_rate: absolute difference; route_mix, intent_mix: total variation)",
                             ("model", "signal"))
        self.model_loads = r.histogram("hearth_model_load_seconds", "Local model loads (at start, on demand)",
                                       ("model",), LOAD_BUCKETS)
        self.drift_samples = r.gauge("hearth_drift_window_samples", "Scored answers in the recent drift window",
                                     ("model",))
        self.quality_skipped = r.counter("hearth_quality_skipped_total", "Sampled answers left unscored: over the "
                                         "scoring rate (rate) or while earlier ones wait (backlog)",
                                         ("reason",))

    # --- hooks the composition root passes to the stages as constructor arguments -----------------

    def route_decided(self, router: str, target: str, reason: str, moved_from: str) -> None:
        """A router chose `target` (or moved to it from `moved_from`, a fallback)."""
        if moved_from:
            self.fallbacks.inc((router, moved_from, target, reason))
        else:
            self.routes.inc((router, target, reason))

    def cache_event(self, kind: str, value: float | str) -> None:
        """The cache looked up (value: seconds), refused a near-match (value: the guard), or counted a result."""
        if kind == "lookup":
            self.cache_lookup.observe((), float(value))
        elif kind == "guard":
            self.cache_guard.inc((str(value),))
        else:
            self.cache.inc((kind,))

    def model_loaded(self, model: str, seconds: float) -> None:
        self.model_loads.observe((model,), seconds)

    def first_segment_out(self, model: str, seconds: float) -> None:
        self.first_segment.observe((model,), seconds)

    def pace_underrun(self, model: str, lag: float) -> None:
        self.underruns.inc((model,))
        self.underrun_lag.inc((model,), lag)

    def access_event(self, kind: str, key: str, detail: str, value: float = 0.0) -> None:
        """The access layer refused a key (`auth`: detail is why), hit a limit (`limit`), or charged it
        (`spend`: detail is the model, value the cost) or learnt its budget share (`budget`: value)."""
        if kind == "auth":
            self.auth_failures.inc((detail,))
        elif kind == "limit":
            self.rejections.inc((key, detail))
        elif kind == "spend":
            self.spend.inc((key, detail), value)
        else:
            self.budget_used.set((key,), value)

    def rag_searched(self, kb: str, mode: str, seconds: float) -> None:
        self.rag_searches.inc((kb, mode))
        self.rag_search.observe((), seconds)
