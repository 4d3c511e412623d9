"""The HTTP routes, one small router per concern."""
