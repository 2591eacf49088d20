"""Conversation intelligence: what the latest turn is for (intent), which backend answered the turn before,
follow-ups made standalone for retrieval, and how good answers are (quality, drift). `stage.Conversation`
is what the composition root builds from these parts."""
