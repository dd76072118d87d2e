"""Processor stores: third-party providers personal data is shared with, reached over HTTPS.

A processor declares who the provider is (purpose, categories it receives, region, the
data processing agreement) and how it is asked: signed JSON requests to its endpoint
(``client``), or an operator who confirms by hand (``mode: manual``). It locates, exports,
erases and rectifies; it does not sweep (retention at the provider is the agreement's).
"""
