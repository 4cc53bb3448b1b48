class AuditError(Exception):
    """Base of every audit error."""


class ChainBroken(AuditError):
    def __init__(self, tenant_label: str, seq: int, reason: str) -> None:
        super().__init__(f"{tenant_label}: chain broken at seq {seq}: {reason}")
        self.tenant_label = tenant_label
        self.seq = seq
        self.reason = reason
