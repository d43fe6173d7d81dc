"""Domain entities and value objects, independent of the ORM."""
