"""Base types, below everything else: the error hierarchy, the records, who is calling, what a
validation concludes, the lifecycle's rules, the provider registry and the table schemas.

Nothing here imports anything of the service outside this package."""
