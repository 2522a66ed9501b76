"""cascade: see README.md for the failure modes this package answers."""

__all__: list[str] = []
