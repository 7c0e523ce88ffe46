"""reminders: one row per reminder sent (party x cycle x lead); an e-mail address per account

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import exchange_server.db


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('reminder',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('party', sa.String(length=4), nullable=False),
    sa.Column('cycle', sa.String(length=7), nullable=False),
    sa.Column('lead_days', sa.Integer(), nullable=False),
    sa.Column('deadline', exchange_server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('missing_units', sa.JSON(), nullable=False),
    sa.Column('outbox_file', sa.String(length=64), nullable=True),
    sa.Column('emailed_to', sa.JSON(), nullable=False),
    sa.Column('email_error', sa.Text(), nullable=True),
    sa.Column('sent_by', sa.String(length=64), nullable=False),
    sa.Column('sent_at', exchange_server.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_reminder')),
    sa.UniqueConstraint('party', 'cycle', 'lead_days', name=op.f('uq_reminder_party_cycle_lead_days'))
    )
    with op.batch_alter_table('reminder', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_reminder_cycle'), ['cycle'], unique=False)
        batch_op.create_index(batch_op.f('ix_reminder_party'), ['party'], unique=False)

    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('email', sa.String(length=254), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_column('email')

    with op.batch_alter_table('reminder', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_reminder_party'))
        batch_op.drop_index(batch_op.f('ix_reminder_cycle'))

    op.drop_table('reminder')
