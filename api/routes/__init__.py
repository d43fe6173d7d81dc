"""One module per resource: jobs, prompts, health, metrics."""
