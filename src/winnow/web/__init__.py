"""The web app: one page, one script, one stylesheet over the JSON API, served by the API's process.

``static/index.html``, ``static/app.js`` (plain modern JavaScript, no build step) and
``static/app.css``; nothing is fetched from anywhere else. :func:`mount` serves the page at ``/``
(with the served HTML reports listed in it, rendered here so they need no key) and the script and
stylesheet under ``/app/``.

The page signs in with an API key the user pastes (kept in the tab's ``sessionStorage``) or one
given in the URL fragment ``#key=wn_...`` (a fragment never reaches the server; the script removes
it from the address bar). Every call it makes is an ordinary ``/api/v1`` call with that key, so
the app can read exactly what the key may read. Everything the server returns is inserted as text
(``textContent``, never ``innerHTML``), and :data:`CSP` allows scripts from this origin only.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

#: The folder of the page, the script and the stylesheet.
STATIC = Path(__file__).parent / "static"

#: The page's Content-Security-Policy: scripts, styles and API calls from this origin only; images
#: also from ``blob:`` (image bytes are fetched with the key and shown from blob URLs) and
#: ``data:``; no inline script or style attribute, no plugins, no framing, no form posts.
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)

_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
_REPORTS_MARK = "<!-- reports -->"


def page(reports: Sequence[str] = ()) -> str:
    """``index.html`` with the reports (paths relative to ``/reports/``) listed, names escaped."""
    text = (STATIC / "index.html").read_text(encoding="utf-8")
    section = ""
    if reports:
        items = "".join(
            f"<li><a href='/reports/{html.escape(quote(p), quote=True)}'>{html.escape(p)}</a></li>" for p in reports
        )
        section = f"<section id='reports'><h2>Reports</h2><ul>{items}</ul></section>"
    return text.replace(_REPORTS_MARK, section, 1)


def mount(app: Any, *, reports: Sequence[str] = ()) -> None:
    """Serve the web app on the FastAPI ``app``: the page at ``/``, its files under ``/app/``.

    ``reports``: the HTML reports served under ``/reports/`` (relative paths), listed on the page.
    """
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    class _Static(StaticFiles):
        def file_response(self, *args: Any, **kwargs: Any):
            response = super().file_response(*args, **kwargs)
            response.headers.update(_HEADERS)
            return response

    body = page(reports)

    @app.get("/", include_in_schema=False)
    def index() -> HTMLResponse:
        """The web app (projects, image grid, image, health); signs in with an API key."""
        return HTMLResponse(body, headers=_HEADERS | {"Cache-Control": "no-cache"})

    app.mount("/app", _Static(directory=STATIC), name="web")
