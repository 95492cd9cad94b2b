"""The API docs page: Swagger UI rendering /openapi.json, served from the flask-swagger-ui
package's bundled files (no CDN: works offline, behind a firewall, on a laptop).

The page itself has no inline script: Swagger UI starts from /docs/static/start.js, so the
Content-Security-Policy allows scripts from this origin only.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Flask, Response, abort, current_app, jsonify, send_from_directory

# The bundled distribution of Swagger UI (swagger-ui-dist), as the package ships it.
DIST = str(files("flask_swagger_ui") / "dist")
# The files the page loads; nothing else of the package is served.
ASSETS = frozenset(
    {
        "swagger-ui.css",
        "index.css",
        "swagger-ui-bundle.js",
        "favicon-32x32.png",
        "favicon-16x16.png",
    }
)

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>clustermon API</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/docs/static/swagger-ui.css">
<link rel="stylesheet" href="/docs/static/index.css">
<link rel="icon" type="image/png" href="/docs/static/favicon-32x32.png" sizes="32x32">
</head><body>
<main><div id="swagger-ui"></div>
<noscript>The machine-readable contract is <a href="/openapi.json">/openapi.json</a>.
Authenticate with <code>Authorization: Bearer &lt;token&gt;</code>.</noscript></main>
<script src="/docs/static/swagger-ui-bundle.js"></script>
<script src="/docs/static/start.js"></script>
</body></html>
"""

# Swagger UI's options: the document of this server, the Authorize button for a bearer token,
# no call home to validator.swagger.io.
START = """window.addEventListener("load", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",  // no top bar: this page shows this server's document only
  });
});
"""

# Scripts and styles from this origin only; Swagger UI sets inline styles and draws its icons
# as data: images; "Try it out" calls this origin (connect-src).
DOCS_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


def _spec() -> dict:
    return current_app.extensions["flask-smorest"]["apis"][""]["ext_obj"].spec.to_dict()


def init_app(app: Flask) -> None:
    @app.get("/docs")
    @app.get("/api/v1/docs", endpoint="api_docs_v1")
    def api_docs():
        response = Response(PAGE, mimetype="text/html")
        response.headers["Content-Security-Policy"] = DOCS_POLICY
        return response

    @app.get("/docs/static/start.js")
    def api_docs_start():
        return Response(START, mimetype="text/javascript")

    @app.get("/docs/static/<name>")
    def api_docs_asset(name: str):
        if name not in ASSETS:
            abort(404)
        response = send_from_directory(DIST, name, max_age=86400)
        return response

    @app.get("/api/v1/openapi.json")
    def openapi_v1():
        return jsonify(_spec())
