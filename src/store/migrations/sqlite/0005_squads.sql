-- The application's squads (issue 12): a routing target like an assistant, shaped like
-- `assistants`. Created only when the application has none; vapictl only reads it.
CREATE TABLE IF NOT EXISTS squads (
    id TEXT PRIMARY KEY NOT NULL,
    user_id TEXT NOT NULL,
    name TEXT NOT NULL,
    vapi_squad_id TEXT
);
CREATE INDEX IF NOT EXISTS squads_user_id ON squads (user_id);
