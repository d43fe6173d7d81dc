"""Housekeeping jobs run by beat: the outbox sweeper and ledger pruning."""
