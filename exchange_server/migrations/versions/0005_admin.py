"""admin console: cycle exceptions, proposed code-list versions, sign-in attempts

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import exchange_server.db


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('cycle_exception',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('cycle_id', sa.String(length=6), nullable=False),
    sa.Column('province', sa.String(length=4), nullable=False),
    sa.Column('until', exchange_server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('granted_by', sa.String(length=64), nullable=False),
    sa.Column('granted_at', exchange_server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', exchange_server.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_by', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['cycle_id'], ['reporting_cycle.id'], name=op.f('fk_cycle_exception_cycle_id_reporting_cycle')),
    sa.ForeignKeyConstraint(['province'], ['area.code'], name=op.f('fk_cycle_exception_province_area')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_cycle_exception'))
    )
    with op.batch_alter_table('cycle_exception', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_cycle_exception_cycle_id'), ['cycle_id'], unique=False)

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

    op.create_table('login_attempt',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_name', sa.String(length=64), nullable=False),
    sa.Column('at', exchange_server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_login_attempt'))
    )
    with op.batch_alter_table('login_attempt', schema=None) as batch_op:
        batch_op.create_index('ix_login_attempt_name_at', ['account_name', 'at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('login_attempt', schema=None) as batch_op:
        batch_op.drop_index('ix_login_attempt_name_at')
    op.drop_table('login_attempt')
    with op.batch_alter_table('code_list_version_draft', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_code_list_version_draft_domain'))
    op.drop_table('code_list_version_draft')
    with op.batch_alter_table('cycle_exception', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_cycle_exception_cycle_id'))
    op.drop_table('cycle_exception')
