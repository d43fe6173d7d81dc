"""The replica-sync kind: brings a local replica of the primary (a libSQL embedded replica
or a Turso Sync database) up to date, on the machine that holds its file."""
