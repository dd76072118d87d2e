"""Settings (environment) and the policy/inventory schema (YAML), read once into typed models."""
