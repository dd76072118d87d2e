"""The SQL connector: schema reflection, subject location, export, erasure and doctor.

``connectors.sql.connector.SqlConnector`` is the entry point flows use (through
``connectors.registry``); the modules behind it are usable on their own with an engine
and a reflected ``StoreSchema``. The store's configuration model is in
``connectors.sql.config``.

This package imports nothing itself: loading the configuration imports
``connectors.sql.config`` without the connector.
"""
