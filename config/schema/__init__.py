"""The typed schema of inventory.yaml and policy.yaml (frozen pydantic models).

Import models from here; ``config.loader.load_config`` builds them from the YAML files.
"""

from config.schema.common import is_region
from config.schema.inventory import (
    Bucket,
    DerivedIdentity,
    IdentityColumn,
    Inventory,
    Reference,
    Replica,
    S3Store,
    SqlStore,
    Store,
    Table,
    TableReference,
    Timestamps,
    template_placeholders,
)
from config.schema.model import LifecycleConfig
from config.schema.policy import (
    Approval,
    Category,
    ErasurePolicy,
    ErasureRule,
    HoldScope,
    LegalHold,
    MeasuredFrom,
    Policy,
    RequestPolicy,
    RetentionRule,
)
from config.schema.transfers import Adequacy, TransferPolicy, TransferRoute

__all__ = [
    "Adequacy",
    "Approval",
    "Bucket",
    "Category",
    "DerivedIdentity",
    "ErasurePolicy",
    "ErasureRule",
    "HoldScope",
    "IdentityColumn",
    "Inventory",
    "LegalHold",
    "LifecycleConfig",
    "MeasuredFrom",
    "Policy",
    "Reference",
    "Replica",
    "RequestPolicy",
    "RetentionRule",
    "S3Store",
    "SqlStore",
    "Store",
    "Table",
    "TableReference",
    "Timestamps",
    "TransferPolicy",
    "TransferRoute",
    "is_region",
    "template_placeholders",
]
