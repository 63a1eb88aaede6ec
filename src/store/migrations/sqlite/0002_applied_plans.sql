-- Saved plans that were applied: a plan file can be applied once.
CREATE TABLE vapictl_applied_plans (
    plan_id    TEXT PRIMARY KEY NOT NULL,
    user_id    TEXT NOT NULL,
    run_id     TEXT NOT NULL,
    applied_at TEXT NOT NULL
);
