"""Discovery: catalog, sampling, detectors, drafts and inventory drift."""
