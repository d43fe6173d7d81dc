"""The canary job: exercises the whole path (ledger, retries, effects) on demand."""
