"""Training recipes: the orchestration behind ``ragfix train ...`` and ``ragfix distill ...`` (pair
sources, training calls, evaluation, model cards); :mod:`bench.cli` only parses arguments and calls them."""

__all__: list[str] = []
