"""Incident and breach management: report, scope, assess from the stores, notify, close.

``scope`` is what an incident covers (stores, tables, columns, prefixes, a time window),
``rules`` turns an assessment into a risk level and the notifications it requires with
their deadlines (GDPR Art. 33 and 34), ``service`` records every step in our own tables
and the ledger. Imports no Prefect.
"""
