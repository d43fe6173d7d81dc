"""The job engine: the ledger task around every job, job context and leases, the retry
policies, the outbox and publisher, the runtime, and the declarations of job kinds."""
