//! A local stand-in for the Vapi API, for tests and the quickstart; never part of `vapictl`.
