"""forks: customer projects on a base version, class schema migrations, merge requests

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0007'
down_revision: Union[str, Sequence[str], None] = '0006'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('project_forks',
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('base_project_id', sa.Integer(), nullable=False),
    sa.Column('base_version_id', sa.String(length=64), nullable=False),
    sa.Column('class_map', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.Column('rebased_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['base_project_id'], ['projects.id'], ondelete='RESTRICT'),
    sa.PrimaryKeyConstraint('project_id')
    )
    op.create_index('ix_project_forks_base_project_id', 'project_forks', ['base_project_id'], unique=False)
    op.create_table('fork_overrides',
    sa.Column('image_id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('base_name', sa.Text(), nullable=False),
    sa.Column('base_revision', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['image_id'], ['images.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('image_id')
    )
    op.create_index('ix_fork_overrides_project_id', 'fork_overrides', ['project_id'], unique=False)
    op.create_table('class_migrations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('op', sa.String(length=20), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('annotations', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'seq')
    )
    op.create_index('ix_class_migrations_project_id', 'class_migrations', ['project_id'], unique=False)
    op.create_table('merge_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('base_project_id', sa.Integer(), nullable=False),
    sa.Column('source_project_id', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=410), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('state', sa.String(length=20), nullable=False),
    sa.Column('items', sa.JSON(), nullable=False),
    sa.Column('report', sa.JSON(), nullable=False),
    sa.Column('change_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('decided_by', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['base_project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['source_project_id'], ['projects.id'], ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['change_id'], ['changes.id'], ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id')
    )
    op.create_index('ix_merge_requests_base_project_id', 'merge_requests', ['base_project_id'], unique=False)


def downgrade() -> None:
    op.drop_table('merge_requests')
    op.drop_table('class_migrations')
    op.drop_table('fork_overrides')
    op.drop_table('project_forks')
