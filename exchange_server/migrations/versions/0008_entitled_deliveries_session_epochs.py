"""entitled deliveries (only those count in a party's resend sequence), session epochs (sign-out ends sessions)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_epoch', sa.Integer(), nullable=False, server_default='0'))
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.add_column(sa.Column('entitled', sa.Boolean(), nullable=False, server_default=sa.true()))
    # Deliveries judged before: the ones refused because the sender could not send as the party.
    op.execute("UPDATE delivery SET entitled = false WHERE id IN "
               "(SELECT delivery_id FROM finding_count WHERE code = 'E606')")
    # The defaults served the existing rows; the models give every new row its value.
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.alter_column('session_epoch', server_default=None)
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.alter_column('entitled', server_default=None)


def downgrade() -> None:
    with op.batch_alter_table('delivery', schema=None) as batch_op:
        batch_op.drop_column('entitled')
    with op.batch_alter_table('account', schema=None) as batch_op:
        batch_op.drop_column('session_epoch')
