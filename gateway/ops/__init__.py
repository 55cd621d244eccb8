"""Every operation the gateway serves, one module per family."""

from gateway.ops import catalog, identity

ALL_OPS = [
    identity.me,
    catalog.list_catalogs,
    catalog.list_schemas,
    catalog.list_volumes,
    catalog.ensure_volume,
]
