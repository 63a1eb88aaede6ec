-- Saved plans that were applied: a plan file can be applied once.
CREATE TABLE vapictl_applied_plans (
    plan_id    text PRIMARY KEY,
    user_id    uuid NOT NULL,
    run_id     text NOT NULL,
    applied_at timestamptz NOT NULL
);
