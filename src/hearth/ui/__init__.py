"""The web console's static files (ui/static); served by hearth.api.ui."""
