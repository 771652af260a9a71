"""versions

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-29

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0003'
down_revision: Union[str, Sequence[str], None] = '0002'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

#: Columns that never change once a version row exists (``name`` may be changed; ``outputs_sha256``
#: is set once).
_FROZEN = ("project_id", "version_id", "number", "parent", "manifest_sha256", "recipe", "summary", "lineage", "created_at")


def upgrade() -> None:
    """Upgrade schema."""
    op.create_table('versions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('project_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.String(length=64), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=True),
    sa.Column('parent', sa.String(length=64), nullable=True),
    sa.Column('manifest_sha256', sa.String(length=64), nullable=False),
    sa.Column('outputs_sha256', sa.String(length=64), nullable=True),
    sa.Column('recipe', sa.JSON(), nullable=False),
    sa.Column('summary', sa.JSON(), nullable=False),
    sa.Column('lineage', sa.JSON(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('created_by', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['project_id'], ['projects.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('project_id', 'number'),
    sa.UniqueConstraint('project_id', 'version_id')
    )
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_versions_project_id'), ['project_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_versions_version_id'), ['version_id'], unique=False)
    if op.get_bind().dialect.name == "sqlite":
        op.execute(
            f"CREATE TRIGGER versions_immutable BEFORE UPDATE OF {', '.join(_FROZEN)} ON versions "
            "BEGIN SELECT RAISE(ABORT, 'versions are immutable'); END"
        )
        op.execute(
            "CREATE TRIGGER versions_outputs_once BEFORE UPDATE OF outputs_sha256 ON versions "
            "WHEN OLD.outputs_sha256 IS NOT NULL AND NEW.outputs_sha256 IS NOT OLD.outputs_sha256 "
            "BEGIN SELECT RAISE(ABORT, 'a version''s outputs are set once'); END"
        )


def downgrade() -> None:
    """Downgrade schema."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS versions_outputs_once")
        op.execute("DROP TRIGGER IF EXISTS versions_immutable")
    with op.batch_alter_table('versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_versions_version_id'))
        batch_op.drop_index(batch_op.f('ix_versions_project_id'))

    op.drop_table('versions')
