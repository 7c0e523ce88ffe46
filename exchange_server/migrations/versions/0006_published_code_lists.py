"""code-list versions can be published (in force without a restart): code_list_version replaces the drafts table

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import exchange_server.db


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None

COLUMNS = ("id", "domain", "version", "effective_from", "based_on", "add", "update", "remove", "note_zh", "note_en",
           "state", "created_by", "created_at")


def upgrade() -> None:
    op.create_table('code_list_version',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('domain', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=20), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('based_on', sa.String(length=20), nullable=False),
    sa.Column('add', sa.JSON(), nullable=False),
    sa.Column('update', sa.JSON(), nullable=False),
    sa.Column('remove', sa.JSON(), nullable=False),
    sa.Column('note_zh', sa.String(length=500), nullable=False),
    sa.Column('note_en', sa.String(length=500), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', exchange_server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('published_by', sa.String(length=64), nullable=True),
    sa.Column('published_at', exchange_server.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_code_list_version')),
    sa.UniqueConstraint('domain', 'version', name=op.f('uq_code_list_version_domain_version'))
    )
    with op.batch_alter_table('code_list_version', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_code_list_version_domain'), ['domain'], unique=False)
    # Proposals made before publishing existed carry over as proposals.
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    op.execute(f"INSERT INTO code_list_version ({cols}) SELECT {cols} FROM code_list_version_draft")
    if op.get_bind().dialect.name == "postgresql":  # ids were copied: move the sequence past them
        op.execute("SELECT setval(pg_get_serial_sequence('code_list_version', 'id'), "
                   "COALESCE((SELECT MAX(id) FROM code_list_version), 0) + 1, false)")
    with op.batch_alter_table('code_list_version_draft', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_code_list_version_draft_domain'))
    op.drop_table('code_list_version_draft')


def downgrade() -> None:
    op.create_table('code_list_version_draft',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('domain', sa.String(length=64), nullable=False),
    sa.Column('version', sa.String(length=20), nullable=False),
    sa.Column('effective_from', sa.Date(), nullable=False),
    sa.Column('based_on', sa.String(length=20), nullable=False),
    sa.Column('add', sa.JSON(), nullable=False),
    sa.Column('update', sa.JSON(), nullable=False),
    sa.Column('remove', sa.JSON(), nullable=False),
    sa.Column('note_zh', sa.String(length=500), nullable=False),
    sa.Column('note_en', sa.String(length=500), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', exchange_server.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_code_list_version_draft')),
    sa.UniqueConstraint('domain', 'version', name=op.f('uq_code_list_version_draft_domain_version'))
    )
    with op.batch_alter_table('code_list_version_draft', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_code_list_version_draft_domain'), ['domain'], unique=False)
    # Published versions go back as proposals: before 0006 nothing could be in force from here.
    cols = ", ".join(f'"{c}"' for c in COLUMNS)
    op.execute(f"INSERT INTO code_list_version_draft ({cols}) SELECT {cols} FROM code_list_version")
    op.execute("UPDATE code_list_version_draft SET state = 'proposed' WHERE state = 'published'")
    with op.batch_alter_table('code_list_version', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_code_list_version_domain'))
    op.drop_table('code_list_version')
