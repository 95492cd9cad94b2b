"""A self-contained API docs page built from the OpenAPI document (no CDN: works offline)."""

from flask import Flask, current_app, jsonify, make_response, render_template_string

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clustermon API</title>
<style>body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}
code{background:#f3f3f3;padding:0 .2em}h2{margin-top:2rem}.m{font-weight:bold;width:5em;
display:inline-block}</style></head><body>
<h1>clustermon API {{ spec.info.version }}</h1>
<p>Machine-readable: <a href="/openapi.json">/openapi.json</a> (OpenAPI {{ spec.openapi }}).
Authenticate with <code>Authorization: Bearer &lt;token&gt;</code>
(<code>clustermon token create --role viewer --name me</code>).</p>
{% for path, ops in spec.paths.items() %}{% for method, op in ops.items() %}
<h2><span class="m">{{ method.upper() }}</span><code>{{ path }}</code></h2>
<p>{{ op.summary or "" }}</p>{% if op.description %}<p>{{ op.description }}</p>{% endif %}
{% endfor %}{% endfor %}</body></html>"""

# Its one inline style sheet, and links: no script at all.
DOCS_POLICY = "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'"


def _spec() -> dict:
    return current_app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()


def init_app(app: Flask) -> None:
    @app.get("/docs")
    @app.get("/api/v1/docs", endpoint="api_docs_v1")
    def api_docs():
        response = make_response(render_template_string(PAGE, spec=_Attr(_spec())))
        response.headers["Content-Security-Policy"] = DOCS_POLICY
        return response

    @app.get("/api/v1/openapi.json")
    def openapi_v1():
        return jsonify(_spec())


class _Attr(dict):
    def __getattr__(self, name):
        value = self.get(name)
        return _Attr(value) if isinstance(value, dict) else value
