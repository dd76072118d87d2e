"""Cross-cutting pieces every package may import: the error tree and key material."""
