"""What a trial measures: evaluators, the built-in trainer, its data, recorded tables."""
