"""The Optuna study: its storage and sampler, its points and their attributes, orphaned trials."""
