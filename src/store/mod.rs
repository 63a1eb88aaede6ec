//! The database: the application's `phone_numbers` and `assistants` tables, SQLite or PostgreSQL.
