-- vapictl's own tables. The application's tables (`phone_numbers`, `assistants`) are not created
-- here: they may predate vapictl, so src/store adopts them in code (creates them only when absent,
-- adds only missing columns).

-- One lease per owner: who applies to that owner's numbers right now, until when.
CREATE TABLE vapictl_locks (
    owner       uuid PRIMARY KEY,
    holder_host text NOT NULL,
    holder_pid  bigint NOT NULL,
    run_id      text NOT NULL,
    lease_token uuid NOT NULL,
    acquired_at timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- The audit trail. Numbers are masked; no column holds a secret.
CREATE TABLE vapictl_changes (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id        text NOT NULL,
    at            timestamptz NOT NULL,
    user_id       uuid NOT NULL,
    number_masked text NOT NULL,
    action        text NOT NULL,
    fields        jsonb NOT NULL DEFAULT '[]',
    "before"      jsonb,
    "after"       jsonb,
    vapi_phone_id text,
    outcome       text NOT NULL,
    error         text,
    ci_run_id     text,
    commit_sha    text
);

CREATE INDEX vapictl_changes_by_owner ON vapictl_changes (user_id, at DESC, id DESC);
