"""Models over time: pulls, the model store, adapters, residency (which local models are in memory)."""
