"""Pure domain types and geometry: no files, no database, no network."""
