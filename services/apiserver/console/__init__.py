"""The web console, served by the apiserver under ``/console`` (see docs/console.md): pages
rendered on the server (Jinja2) and kept live over server-sent events (htmx), every request
made as the signed-in user through the apiserver's own guarded app."""
