import pytest

from audit.models import AuditEvent
from tenants import keys
from tenants.models import ApiKey
from tenants.services import api_key_create, api_key_revoke, api_key_rotate


def test_minted_key_has_documented_format_and_valid_checksum():
    minted = keys.mint()
    assert minted.token.startswith(f"sk-sntl-{minted.public_id}-")
    assert len(minted.token) == len("sk-sntl-") + 12 + 1 + 32 + 6
    assert keys.parse(minted.token) == minted.public_id


@pytest.mark.parametrize("position", [8, 15, 25, 40, -1])
def test_checksum_rejects_a_one_character_change(position):
    token = keys.mint().token
    swapped = "B" if token[position] != "B" else "C"
    mutated = token[:position] + swapped + token[position + 1 :] if position != -1 else token[:-1] + swapped
    assert keys.parse(mutated) is None


@pytest.mark.parametrize("garbage", ["", "sk-abc", "sk-sntl-", "Bearer x", "sk-sntl-" + "a" * 51])
def test_malformed_keys_are_refused_without_a_query(garbage, db, django_assert_num_queries):
    with django_assert_num_queries(0):
        assert keys.parse(garbage) is None


def test_only_the_hash_is_stored_and_the_secret_is_shown_once(tenant, user):
    key, token = api_key_create(tenant=tenant, actor=user, name="ci")
    stored = ApiKey.objects.get(pk=key.pk)
    assert token not in str(vars(stored))
    assert stored.secret_hash == keys.hash_token(token)
    assert stored.last4 == token[-4:]
    event = AuditEvent.objects.get(tenant=tenant, action="api_key.created")
    assert token not in str(event.after) and key.public_id in event.target_label


def test_hash_is_peppered(settings):
    token = keys.mint().token
    first = keys.hash_token(token)
    settings.SENTINEL_KEY_PEPPER = "another-pepper"
    assert keys.hash_token(token) != first


def test_revoke_is_idempotent_and_audited_once(tenant, user):
    key, _ = api_key_create(tenant=tenant, actor=user, name="ci")
    api_key_revoke(tenant=tenant, key_id=key.pk, actor=user)
    api_key_revoke(tenant=tenant, key_id=key.pk, actor=user)
    assert AuditEvent.objects.filter(tenant=tenant, action="api_key.revoked").count() == 1


def test_revoking_another_tenants_key_is_not_found(tenant, other_tenant, user):
    theirs, _ = api_key_create(tenant=other_tenant, actor=user, name="theirs")
    with pytest.raises(ApiKey.DoesNotExist):
        api_key_revoke(tenant=tenant, key_id=theirs.pk, actor=user)
    theirs.refresh_from_db()
    assert theirs.revoked_at is None


def test_rotation_keeps_id_and_budget_and_changes_secret(tenant, user):
    key, old = api_key_create(tenant=tenant, actor=user, name="ci", budget_usd=10)
    rotated, new = api_key_rotate(tenant=tenant, key_id=key.pk, actor=user)
    assert rotated.pk == key.pk and rotated.public_id == key.public_id and rotated.budget_usd == 10
    assert new != old and keys.matches(new, rotated.secret_hash) and not keys.matches(old, rotated.secret_hash)
