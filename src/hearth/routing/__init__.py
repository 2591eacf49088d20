"""Routers: a model name that picks among other models by rules, with fallbacks, hedging and circuit breakers."""
