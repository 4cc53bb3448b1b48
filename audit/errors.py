class AuditError(Exception):
    """Base of every audit error."""


class ChainBroken(AuditError):
    def __init__(self, tenant_label: str, seq: int, reason: str) -> None:
        super().__init__(f"{tenant_label}: chain broken at seq {seq}: {reason}")
        self.tenant_label = tenant_label
        self.seq = seq
        self.reason = reason


class InvalidCursor(AuditError):
    """A pagination cursor that this server did not issue."""

    def __init__(self, cursor: str) -> None:
        super().__init__(f"invalid cursor {cursor[:40]!r}; pass the next_cursor of a previous page")
        self.cursor = cursor
