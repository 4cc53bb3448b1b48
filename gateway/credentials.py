"""Provider credentials: read from the named environment variable or decrypted from the catalog
row (Fernet, key ``SENTINEL_CREDENTIALS_KEY``). They never leave the server: not in responses,
errors, logs or the admin."""

from __future__ import annotations

import functools
import os

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

from gateway.catalog import ProviderInfo


class CredentialMissing(Exception):
    pass


@functools.cache
def _fernet() -> Fernet | None:
    key = settings.SENTINEL_CREDENTIALS_KEY
    return Fernet(key.encode()) if key else None


def encrypt(secret: str) -> str:
    fernet = _fernet()
    if fernet is None:
        raise CredentialMissing("SENTINEL_CREDENTIALS_KEY is not set; cannot store an encrypted credential")
    return fernet.encrypt(secret.encode()).decode()


def credential_for(provider: ProviderInfo) -> str | None:
    """The provider's secret, or None when it needs none (mock, or no env var named)."""
    if provider.encrypted_api_key:
        fernet = _fernet()
        if fernet is None:
            raise CredentialMissing(f"provider {provider.name}: SENTINEL_CREDENTIALS_KEY is not set")
        try:
            return fernet.decrypt(provider.encrypted_api_key.encode()).decode()
        except InvalidToken:
            raise CredentialMissing(f"provider {provider.name}: stored credential cannot be decrypted") from None
    if provider.api_key_env:
        value = os.environ.get(provider.api_key_env)
        if not value:
            raise CredentialMissing(f"provider {provider.name}: environment variable {provider.api_key_env} is not set")
        return value
    return None
