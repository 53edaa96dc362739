"""The study config: its schema and YAML loading, the metrics registry, and advice on a config."""
