"""delivery reviews and HQ's comments to provinces

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import exchange_server.db


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('delivery_review',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=32), nullable=False),
    sa.Column('reviewer', sa.String(length=64), nullable=True),
    sa.Column('updated_at', exchange_server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('justification', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['delivery.id'], name=op.f('fk_delivery_review_delivery_id_delivery'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_delivery_review')),
    sa.UniqueConstraint('delivery_id', name=op.f('uq_delivery_review_delivery_id'))
    )
    with op.batch_alter_table('delivery_review', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_delivery_review_state'), ['state'], unique=False)

    op.create_table('review_comment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('delivery_id', sa.Integer(), nullable=False),
    sa.Column('author', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('created_at', exchange_server.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', exchange_server.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['delivery_id'], ['delivery.id'], name=op.f('fk_review_comment_delivery_id_delivery'),
                            ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_review_comment'))
    )
    with op.batch_alter_table('review_comment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_review_comment_delivery_id'), ['delivery_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('review_comment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_review_comment_delivery_id'))
    op.drop_table('review_comment')
    with op.batch_alter_table('delivery_review', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_delivery_review_state'))
    op.drop_table('delivery_review')
