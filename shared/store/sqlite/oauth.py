"""The SQLite store: oAuth flows (``oauth_states``) and the refresh lease on an OAuth credential."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.domain.models import OAuthState, StoredCredential
from shared.domain.schemas import CREDENTIALS_TABLE, OAUTH_STATES_TABLE
from shared.store import rows
from shared.store.sqlite.base import SqliteBase, timestamp_text


class SqliteOAuth(SqliteBase):
    """OAuth flows and the refresh lease."""

    def create_oauth_state(self, state: OAuthState) -> None:
        with self._transaction() as connection:
            # Flows nobody finished go a day after they expired (their completion code too; held tokens with them).
            connection.execute(
                f"DELETE FROM {OAUTH_STATES_TABLE} "
                "WHERE MAX(expires_at, COALESCE(completion_expires_at, expires_at)) < ?",
                (timestamp_text(state.created_at - timedelta(days=1)),),
            )
            self._insert(connection, OAUTH_STATES_TABLE, rows.oauth_state_to_row(state))

    def consume_oauth_state(self, state_hash: str, now: datetime) -> tuple[str, OAuthState | None]:
        with self._transaction() as connection:
            found = connection.execute(
                f"SELECT * FROM {OAUTH_STATES_TABLE} WHERE state_hash = ?", (state_hash,)
            ).fetchall()
            if not found:
                return "unknown", None
            state = rows.oauth_state_from_row(self._from_sql(OAUTH_STATES_TABLE, found[0]))
            if state.used_at is not None:
                return "used", state
            if state.expires_at <= now:
                return "expired", state
            connection.execute(
                f"UPDATE {OAUTH_STATES_TABLE} SET used_at = ? WHERE state_hash = ? AND used_at IS NULL",
                (timestamp_text(now), state_hash),
            )
            state.used_at = now
            return "consumed", state

    def hold_oauth_tokens(
        self,
        state_hash: str,
        *,
        encrypted_tokens: bytes,
        tokens_key_version: str,
        completion_code_hash: str,
        completion_expires_at: datetime,
    ) -> bool:
        with self._transaction() as connection:
            cursor = connection.execute(
                f"UPDATE {OAUTH_STATES_TABLE} SET encrypted_tokens = ?, tokens_key_version = ?, "
                "completion_code_hash = ?, completion_expires_at = ? "
                "WHERE state_hash = ? AND used_at IS NOT NULL AND completion_code_hash IS NULL",
                (
                    encrypted_tokens,
                    tokens_key_version,
                    completion_code_hash,
                    timestamp_text(completion_expires_at),
                    state_hash,
                ),
            )
            return cursor.rowcount == 1

    def complete_oauth_flow(
        self, completion_code_hash: str, org_slug: str, provider: str, now: datetime
    ) -> tuple[str, OAuthState | None]:
        with self._transaction() as connection:
            found = connection.execute(
                f"SELECT * FROM {OAUTH_STATES_TABLE} WHERE completion_code_hash = ? AND org_slug = ? AND provider = ?",
                (completion_code_hash, org_slug, provider),
            ).fetchall()
            if not found:
                return "unknown", None
            flow = rows.oauth_state_from_row(self._from_sql(OAUTH_STATES_TABLE, found[0]))
            if flow.completed_at is not None:
                return "used", flow
            if flow.completion_expires_at is None or flow.completion_expires_at <= now:
                return "expired", flow
            connection.execute(
                f"UPDATE {OAUTH_STATES_TABLE} SET completed_at = ?, encrypted_tokens = NULL "
                "WHERE completion_code_hash = ? AND completed_at IS NULL",
                (timestamp_text(now), completion_code_hash),
            )
            flow.completed_at = now
            return "completed", flow

    def claim_credential_refresh(
        self,
        credential_id: str,
        *,
        expected_updated_at: datetime,
        lease_id: str,
        lease_expires_at: datetime,
        version: datetime,
    ) -> bool:
        with self._transaction() as connection:
            cursor = connection.execute(
                f"UPDATE {CREDENTIALS_TABLE} SET refresh_lease_id = ?, refresh_lease_expires_at = ?, updated_at = ? "
                "WHERE credential_id = ? AND updated_at = ?",
                (
                    lease_id,
                    timestamp_text(lease_expires_at),
                    timestamp_text(version),
                    credential_id,
                    timestamp_text(expected_updated_at),
                ),
            )
        return cursor.rowcount == 1

    def finish_credential_refresh(self, credential: StoredCredential, *, lease_id: str) -> bool:
        values = self._to_sql(CREDENTIALS_TABLE, rows.credential_to_row(credential))
        with self._transaction() as connection:
            cursor = connection.execute(
                f"UPDATE {CREDENTIALS_TABLE} SET encrypted_value = :encrypted_value, key_version = :key_version, "
                "fingerprint = :fingerprint, expires_at = :expires_at, updated_at = :updated_at, "
                "refresh_error = :refresh_error, refresh_lease_id = NULL, refresh_lease_expires_at = NULL "
                "WHERE credential_id = :credential_id AND refresh_lease_id = :lease_id",
                {**values, "lease_id": lease_id},
            )
        return cursor.rowcount == 1
