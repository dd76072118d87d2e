"""Discovery: find where personal data lives in a live store and draft its inventory.

``catalog`` reflects a SQL database (tables, keys, references, row estimates),
``sampling`` reads a bounded, read-only sample of a table's columns, ``detectors`` turns
a column's name and sampled values into a proposed category with evidence that never
quotes a value. ``draft`` plans an inventory from them and ``render`` writes it as commented
YAML; ``buckets``/``bucket_source`` propose S3 key templates from a bounded listing;
``pipeline`` runs it all for ``lifecycle inventory draft``.
"""
