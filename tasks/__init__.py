"""Job kinds: one package each (its declaration in `kind.py`, its logic beside it)."""
