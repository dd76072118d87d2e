"""How many customers the demo seeds, and which of them get objects in its S3.

``lifecycle demo`` and the served demo (``ops.demo_setup``) seed the same CRM and objects;
uploading objects for all customers would take over a minute on moto's single server, so a
window of ids around the subject gets them. Import-light: the served stack's commands use it.
"""

from __future__ import annotations

DEMO_CUSTOMERS = 2000
"""Customers in the demo CRM (``lifecycle demo`` and the served demo seed as many)."""
DEMO_S3_CUSTOMERS = 100
"""Customers with objects in the demo S3: a window of ids around the subject."""


def s3_customer_ids(
    subject_customer_id: int, customers: int = DEMO_CUSTOMERS, window: int = DEMO_S3_CUSTOMERS
) -> list[int]:
    """The ids (within 1..customers) that get objects: ``window`` of them around the subject."""
    first = max(1, min(subject_customer_id - window // 2, customers - window))
    return list(range(first, min(customers, first + window - 1) + 1))
