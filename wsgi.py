"""WSGI entry point: `gunicorn wsgi:app`, `flask --app wsgi …` (the app with its commands)."""

from cli.main import create_app

app = create_app()
