-- vapictl's own tables. The application's tables (`phone_numbers`, `assistants`) are not created
-- here: they may predate vapictl, so src/store adopts them in code (creates them only when absent,
-- adds only missing columns).

-- One lease per owner: who applies to that owner's numbers right now, until when.
CREATE TABLE vapictl_locks (
    owner       TEXT PRIMARY KEY NOT NULL,
    holder_host TEXT NOT NULL,
    holder_pid  INTEGER NOT NULL,
    run_id      TEXT NOT NULL,
    lease_token TEXT NOT NULL,
    -- RFC 3339 UTC with microseconds (`2025-01-31T12:00:00.000000Z`): fixed width, so text order
    -- is time order.
    acquired_at TEXT NOT NULL,
    expires_at  TEXT NOT NULL
);

-- The audit trail. Numbers are masked; no column holds a secret.
CREATE TABLE vapictl_changes (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id        TEXT NOT NULL,
    at            TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    number_masked TEXT NOT NULL,
    action        TEXT NOT NULL,
    fields        TEXT NOT NULL DEFAULT '[]',
    "before"      TEXT,
    "after"       TEXT,
    vapi_phone_id TEXT,
    outcome       TEXT NOT NULL,
    error         TEXT,
    ci_run_id     TEXT,
    commit_sha    TEXT
);

CREATE INDEX vapictl_changes_by_owner ON vapictl_changes (user_id, at, id);
