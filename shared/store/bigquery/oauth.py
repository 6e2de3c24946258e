"""The BigQuery store: OAuth flows (``oauth_states``) and the refresh lease on an OAuth credential."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.domain.models import OAuthState, StoredCredential
from shared.domain.schemas import CREDENTIALS_TABLE, OAUTH_STATES_TABLE
from shared.store import rows
from shared.store.bigquery.base import BigQueryBase


class BigQueryOAuth(BigQueryBase):
    """OAuth flows and the refresh lease."""

    def create_oauth_state(self, state: OAuthState) -> None:
        sql = f"""
DELETE FROM {self._table(OAUTH_STATES_TABLE)}
WHERE GREATEST(expires_at, COALESCE(completion_expires_at, expires_at)) < @stale_before;
{self._insert_sql("s_", OAUTH_STATES_TABLE)};
"""
        parameters = [
            self._scalar("stale_before", state.created_at - timedelta(days=1)),
            *self._row_parameters("s_", OAUTH_STATES_TABLE, rows.oauth_state_to_row(state)),
        ]
        self._run(sql, parameters)

    def consume_oauth_state(self, state_hash: str, now: datetime) -> tuple[str, OAuthState | None]:
        states = self._table(OAUTH_STATES_TABLE)
        sql = f"""
DECLARE outcome STRING DEFAULT NULL;
BEGIN TRANSACTION;
SET outcome = (
  SELECT CASE WHEN used_at IS NOT NULL THEN 'used' WHEN expires_at <= @now THEN 'expired' ELSE 'consumed' END
  FROM {states} WHERE state_hash = @state_hash
);
IF outcome = 'consumed' THEN
  UPDATE {states} SET used_at = @now WHERE state_hash = @state_hash AND used_at IS NULL;
END IF;
COMMIT TRANSACTION;
SELECT outcome AS consume_outcome, * FROM {states} WHERE state_hash = @state_hash;
"""
        found = self._run(sql, [self._scalar("state_hash", state_hash), self._scalar("now", now)])
        if not found:
            return "unknown", None
        row = found[0]
        state = rows.oauth_state_from_row({name: row[name] for name in self._types[OAUTH_STATES_TABLE]})
        return str(row["consume_outcome"]), state

    def hold_oauth_tokens(
        self,
        state_hash: str,
        *,
        encrypted_tokens: bytes,
        tokens_key_version: str,
        completion_code_hash: str,
        completion_expires_at: datetime,
    ) -> bool:
        where = "state_hash = @state_hash AND used_at IS NOT NULL AND completion_code_hash IS NULL"
        hold = (
            f"UPDATE {self._table(OAUTH_STATES_TABLE)} SET encrypted_tokens = FROM_BASE64(@encrypted_tokens), "
            "tokens_key_version = @tokens_key_version, completion_code_hash = @completion_code_hash, "
            f"completion_expires_at = @completion_expires_at WHERE {where}"
        )
        parameters = [
            self._scalar("state_hash", state_hash),
            self._parameter("encrypted_tokens", "BYTES", encrypted_tokens),
            self._scalar("tokens_key_version", tokens_key_version),
            self._scalar("completion_code_hash", completion_code_hash),
            self._scalar("completion_expires_at", completion_expires_at),
        ]
        return self._conditional_write(OAUTH_STATES_TABLE, where, [hold], parameters)

    def complete_oauth_flow(
        self, completion_code_hash: str, org_slug: str, provider: str, now: datetime
    ) -> tuple[str, OAuthState | None]:
        states = self._table(OAUTH_STATES_TABLE)
        flow = "completion_code_hash = @code_hash AND org_slug = @org_slug AND provider = @provider"
        # The held tokens are read into a variable first: completing clears them from the row.
        sql = f"""
DECLARE outcome STRING DEFAULT NULL;
DECLARE held BYTES DEFAULT NULL;
BEGIN TRANSACTION;
SET outcome = (
  SELECT CASE WHEN completed_at IS NOT NULL THEN 'used'
              WHEN completion_expires_at IS NULL OR completion_expires_at <= @now THEN 'expired'
              ELSE 'completed' END
  FROM {states} WHERE {flow}
);
SET held = (SELECT encrypted_tokens FROM {states} WHERE {flow});
IF outcome = 'completed' THEN
  UPDATE {states} SET completed_at = @now, encrypted_tokens = NULL WHERE {flow} AND completed_at IS NULL;
END IF;
COMMIT TRANSACTION;
SELECT outcome AS complete_outcome, held AS held_tokens, * FROM {states} WHERE {flow};
"""
        found = self._run(
            sql,
            [
                self._scalar("code_hash", completion_code_hash),
                self._scalar("org_slug", org_slug),
                self._scalar("provider", provider),
                self._scalar("now", now),
            ],
        )
        if not found:
            return "unknown", None
        row = found[0]
        values = {name: row[name] for name in self._types[OAUTH_STATES_TABLE]}
        values["encrypted_tokens"] = row["held_tokens"]
        return str(row["complete_outcome"]), rows.oauth_state_from_row(values)

    def claim_credential_refresh(
        self,
        credential_id: str,
        *,
        expected_updated_at: datetime,
        lease_id: str,
        lease_expires_at: datetime,
        version: datetime,
    ) -> bool:
        where = "credential_id = @credential_id AND updated_at = @expected_updated_at"
        claim = (
            f"UPDATE {self._table(CREDENTIALS_TABLE)} SET refresh_lease_id = @lease_id, "
            f"refresh_lease_expires_at = @lease_expires_at, updated_at = @version WHERE {where}"
        )
        parameters = [
            self._scalar("credential_id", credential_id),
            self._scalar("expected_updated_at", expected_updated_at),
            self._scalar("lease_id", lease_id),
            self._scalar("lease_expires_at", lease_expires_at),
            self._scalar("version", version),
        ]
        return self._conditional_write(CREDENTIALS_TABLE, where, [claim], parameters)

    def finish_credential_refresh(self, credential: StoredCredential, *, lease_id: str) -> bool:
        where = "credential_id = @c_credential_id AND refresh_lease_id = @lease_id"
        finish = (
            f"UPDATE {self._table(CREDENTIALS_TABLE)} "
            "SET encrypted_value = FROM_BASE64(@c_encrypted_value), key_version = @c_key_version, "
            "fingerprint = @c_fingerprint, expires_at = @c_expires_at, updated_at = @c_updated_at, "
            "refresh_error = @c_refresh_error, refresh_lease_id = NULL, refresh_lease_expires_at = NULL "
            f"WHERE {where}"
        )
        parameters = [
            *self._row_parameters("c_", CREDENTIALS_TABLE, rows.credential_to_row(credential)),
            self._scalar("lease_id", lease_id),
        ]
        return self._conditional_write(CREDENTIALS_TABLE, where, [finish], parameters)
