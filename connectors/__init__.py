"""One connector per store type, behind the protocol in ``connectors.base``."""
