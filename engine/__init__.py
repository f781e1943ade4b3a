"""Deep Musician engine: model registry, task runners, CLI (and, later, the server)."""
