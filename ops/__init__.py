"""Operations around the product: running it as a service (a local Prefect server and worker)."""
