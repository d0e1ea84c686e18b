"""Pure helpers every layer may use: units, URLs, names, header semantics, checksums."""
