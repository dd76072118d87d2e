"""Demo data: the fictional CRM that ``lifecycle demo`` and the benchmarks run on."""
