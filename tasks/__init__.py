"""Job kinds: one package each (evaluation, embedding, backup, replica), thin Celery tasks."""
