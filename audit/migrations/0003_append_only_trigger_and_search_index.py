"""PostgreSQL only (skipped on SQLite, the embedded default):

- a trigger that refuses UPDATE and DELETE on audit_auditevent, except DELETE inside a transaction
  that set ``SET LOCAL sentinel.audit_retention = 'on'`` (the retention job). It guards against
  application bugs and casual edits; a superuser can still disable it, which the hash chain detects.
- pg_trgm and a trigram GIN index for the search page's substring filters (metadata free text,
  actor and target labels). Its expressions must stay identical to ``audit.selectors._upper_text``.
"""

from django.db import migrations

FORWARD = [
    """
    CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF TG_OP = 'DELETE' AND current_setting('sentinel.audit_retention', true) = 'on' THEN
            RETURN OLD;
        END IF;
        RAISE EXCEPTION 'audit_auditevent is append-only: % refused (only audit retention may delete)', TG_OP
            USING ERRCODE = 'insufficient_privilege';
    END;
    $$
    """,
    "DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent",
    """
    CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON audit_auditevent
        FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
    """,
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    """
    CREATE INDEX IF NOT EXISTS audit_event_text_trgm ON audit_auditevent USING gin (
        (upper((metadata)::text)) gin_trgm_ops,
        (upper((actor_label)::text)) gin_trgm_ops,
        (upper((target_label)::text)) gin_trgm_ops
    )
    """,
]

BACKWARD = [
    "DROP INDEX IF EXISTS audit_event_text_trgm",
    "DROP TRIGGER IF EXISTS audit_event_append_only ON audit_auditevent",
    "DROP FUNCTION IF EXISTS audit_event_append_only()",
]


def _run(statements):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for sql in statements:
            schema_editor.execute(sql, params=None)

    return run


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0002_request_log_and_seq_indexes"),
    ]

    operations = [
        migrations.RunPython(_run(FORWARD), _run(BACKWARD)),
    ]
