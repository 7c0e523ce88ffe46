"""aggregates per province kept by each acceptance, contact facts, list entries by customer, cycle generations

The aggregate tables start empty; ``exchange-server init`` fills them (and the contact facts,
from the archived 31202 files) for an existing database (``consolidation.backfill``).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""
from __future__ import annotations

from alembic import op
import sqlalchemy as sa
import exchange_server.db


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('agg_coverage',
    sa.Column('cycle', sa.String(length=7), nullable=False),
    sa.Column('prov_id', sa.String(length=2), nullable=False),
    sa.Column('list_stamp', sa.String(length=200), nullable=False),
    sa.Column('list_version', sa.String(length=200), nullable=False),
    sa.Column('listed', sa.Integer(), nullable=False),
    sa.Column('received', sa.Integer(), nullable=False),
    sa.Column('missing_ids', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('cycle', 'prov_id', name=op.f('pk_agg_coverage'))
    )
    op.create_table('agg_customer',
    sa.Column('cycle', sa.String(length=7), nullable=False),
    sa.Column('prov_id', sa.String(length=2), nullable=False),
    sa.Column('dimension', sa.String(length=16), nullable=False),
    sa.Column('code', sa.String(length=4), nullable=False),
    sa.Column('customers', sa.Integer(), nullable=False),
    sa.Column('income_amt', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('cycle', 'prov_id', 'dimension', 'code', name=op.f('pk_agg_customer'))
    )
    op.create_table('agg_product',
    sa.Column('cycle', sa.String(length=7), nullable=False),
    sa.Column('prov_id', sa.String(length=2), nullable=False),
    sa.Column('prod_id', sa.String(length=4), nullable=False),
    sa.Column('income_amt', sa.BigInteger(), nullable=False),
    sa.Column('customers', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('cycle', 'prov_id', 'prod_id', name=op.f('pk_agg_product'))
    )
    op.create_table('agg_source',
    sa.Column('cycle', sa.String(length=7), nullable=False),
    sa.Column('unit', sa.String(length=5), nullable=False),
    sa.Column('latn_id', sa.String(length=4), nullable=False),
    sa.Column('prov_id', sa.String(length=2), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('rows', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['unit_version.id'], name=op.f('fk_agg_source_version_id_unit_version')),
    sa.PrimaryKeyConstraint('cycle', 'unit', 'latn_id', name=op.f('pk_agg_source'))
    )
    with op.batch_alter_table('agg_source', schema=None) as batch_op:
        batch_op.create_index('ix_agg_source_province', ['cycle', 'prov_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_agg_source_version_id'), ['version_id'], unique=False)

    op.create_table('fact_contact',
    sa.Column('national_cust_id', sa.String(length=10), nullable=False),
    sa.Column('contact_seq', sa.Integer(), nullable=False),
    sa.Column('is_primary', sa.String(length=1), nullable=False),
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('party', sa.String(length=4), nullable=False),
    sa.Column('cycle', sa.String(length=7), nullable=False),
    sa.Column('prov_id', sa.String(length=2), nullable=False),
    sa.Column('latn_id', sa.String(length=4), nullable=False),
    sa.Column('current', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['version_id'], ['unit_version.id'], name=op.f('fk_fact_contact_version_id_unit_version')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_fact_contact'))
    )
    with op.batch_alter_table('fact_contact', schema=None) as batch_op:
        batch_op.create_index('ix_fact_contact_cycle', ['cycle', 'current', 'national_cust_id'], unique=False)
        batch_op.create_index('ix_fact_contact_latn', ['cycle', 'latn_id'], unique=False)
        batch_op.create_index('ix_fact_contact_province', ['cycle', 'prov_id', 'current'], unique=False)
        batch_op.create_index(batch_op.f('ix_fact_contact_version_id'), ['version_id'], unique=False)

    with op.batch_alter_table('fact_cust_prod', schema=None) as batch_op:
        batch_op.create_index('ix_fact_cust_prod_province', ['cycle', 'prov_id', 'current'], unique=False)

    with op.batch_alter_table('fact_customer', schema=None) as batch_op:
        batch_op.create_index('ix_fact_customer_province', ['cycle', 'prov_id', 'current'], unique=False)

    with op.batch_alter_table('fact_income', schema=None) as batch_op:
        batch_op.create_index('ix_fact_income_province', ['cycle', 'prov_id', 'current'], unique=False)

    with op.batch_alter_table('fact_serv', schema=None) as batch_op:
        batch_op.create_index('ix_fact_serv_province', ['cycle', 'prov_id', 'current'], unique=False)

    # The roll-up is no longer kept in the database (it is computed from the aggregates, and
    # downloads are kept per key in the serving process): only each cycle's generation stays.
    op.create_table('cycle_generation',
    sa.Column('cycle', sa.String(length=7), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('cycle', name=op.f('pk_cycle_generation'))
    )
    op.execute("INSERT INTO cycle_generation (cycle, generation) SELECT cycle, generation FROM rollup_cache")
    op.drop_table('rollup_cache')
    with op.batch_alter_table('list_entry', schema=None) as batch_op:
        batch_op.create_index('ix_list_entry_customer', ['national_cust_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('list_entry', schema=None) as batch_op:
        batch_op.drop_index('ix_list_entry_customer')
    op.create_table('rollup_cache',
    sa.Column('cycle', sa.String(length=7), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('built_key', sa.String(length=40), nullable=True),
    sa.Column('payload', sa.Text(), nullable=True),
    sa.Column('built_at', exchange_server.db.UTCDateTime(timezone=True), nullable=True),
    sa.PrimaryKeyConstraint('cycle', name=op.f('pk_rollup_cache'))
    )
    op.execute("INSERT INTO rollup_cache (cycle, generation) SELECT cycle, generation FROM cycle_generation")
    op.drop_table('cycle_generation')

    with op.batch_alter_table('fact_serv', schema=None) as batch_op:
        batch_op.drop_index('ix_fact_serv_province')

    with op.batch_alter_table('fact_income', schema=None) as batch_op:
        batch_op.drop_index('ix_fact_income_province')

    with op.batch_alter_table('fact_customer', schema=None) as batch_op:
        batch_op.drop_index('ix_fact_customer_province')

    with op.batch_alter_table('fact_cust_prod', schema=None) as batch_op:
        batch_op.drop_index('ix_fact_cust_prod_province')

    with op.batch_alter_table('fact_contact', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_fact_contact_version_id'))
        batch_op.drop_index('ix_fact_contact_province')
        batch_op.drop_index('ix_fact_contact_latn')
        batch_op.drop_index('ix_fact_contact_cycle')

    op.drop_table('fact_contact')
    with op.batch_alter_table('agg_source', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_agg_source_version_id'))
        batch_op.drop_index('ix_agg_source_province')

    op.drop_table('agg_source')
    op.drop_table('agg_product')
    op.drop_table('agg_customer')
    op.drop_table('agg_coverage')
