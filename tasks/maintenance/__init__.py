"""Housekeeping run by beat: the outbox sweeper (with the scheduled jobs' catch-up), the
scheduled jobs' fires and ledger pruning. Not a job kind: it has no ``kind.py``."""
