-- The application's squads (issue 12): a routing target like an assistant, shaped like
-- `assistants`. Created only when the application has none; vapictl only reads it.
CREATE TABLE IF NOT EXISTS squads (
    id uuid PRIMARY KEY,
    user_id uuid NOT NULL,
    name text NOT NULL,
    vapi_squad_id text
);
CREATE INDEX IF NOT EXISTS squads_user_id ON squads (user_id);
