"""The HTTP side: app factory, blueprints, schemas, auth, problem+json errors and the CLI."""
