"""A worker written only from ``schemas/README.md`` and the schemas: proof that the contract is
enough. It imports nothing from ``dandelion`` or ``browser_worker``."""
