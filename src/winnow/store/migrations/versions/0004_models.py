"""models: the model registry

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('version_id', sa.String(length=64), nullable=False),
    sa.Column('backend', sa.String(length=100), nullable=False),
    sa.Column('task', sa.String(length=20), nullable=False),
    sa.Column('classes', sa.JSON(), nullable=False),
    sa.Column('params', sa.JSON(), nullable=False),
    sa.Column('recipe', sa.JSON(), nullable=False),
    sa.Column('code_version', sa.String(length=200), nullable=False),
    sa.Column('metrics', sa.JSON(), nullable=False),
    sa.Column('files', sa.JSON(), nullable=False),
    sa.Column('status', sa.String(length=20), nullable=False),
    sa.Column('deployed', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('finished_at', sa.DateTime(), nullable=True),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'model_id'),
    sa.UniqueConstraint('project_id', 'name')
    )
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_models_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_models_model_id'), ['model_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_models_version_id'), ['version_id'], unique=False)


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('models', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_models_version_id'))
        batch_op.drop_index(batch_op.f('ix_models_model_id'))
        batch_op.drop_index(batch_op.f('ix_models_project_id'))

    op.drop_table('models')
