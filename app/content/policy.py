"""The Content-Security-Policy of remote content: what authoring tools' output needs, framed by the LMS only.

Storyline, Rise, Captivate, iSpring and Adapt players use inline ``<script>``
blocks, inline ``on…=`` handlers, ``eval``/``new Function``, ``data:`` and
``blob:`` URLs for images, fonts, media and workers, and sometimes embed
https: media (a video platform, a web object). All of that is allowed here,
because the content origin holds nothing to protect: it is not the app's
origin, it sets and receives no cookie, and the app answers none of its own
pages or APIs there, so a script of a course (or one injected into it) can
read no staff page, submit no staff form and borrow no session. What stays
limited: who may frame the content (``frame-ancestors``: the content origin itself, for a
course's own frames, and the client's allowed LMS origins, any https: origin when
none are set), where it may send data
(``connect-src``: the content origin and the app's beacon endpoint origin; a remote cmi5
course's also any https: address and the allowed LMS origins, for the LMS's LRS),
where forms go (``form-action 'self'``), ``<base>`` (``base-uri 'self'``) and
plug-ins (``object-src 'none'``).
"""

from __future__ import annotations

from app.packages import origin_of


def content_security_policy(allowed_origins: list[str], public_url: str, lrs: bool = False) -> str:
    """``lrs``: a remote cmi5 AU, which talks to the LMS's LRS and fetch URL itself (any https: address,
    and the client's allowed LMS origins, whatever their scheme)."""
    ancestors = " ".join(allowed_origins) or "https:"
    app_origin = origin_of(public_url)
    connect = " ".join([app_origin, "https:", *allowed_origins]) if lrs else app_origin
    return "; ".join([
        "default-src 'self' data: blob:",
        "script-src 'self' 'unsafe-inline' 'unsafe-eval' data: blob:",
        "style-src 'self' 'unsafe-inline' data: blob: https:",
        "img-src 'self' data: blob: https:",
        "media-src 'self' data: blob: https:",
        "font-src 'self' data: https:",
        f"connect-src 'self' data: blob: {connect}",
        "frame-src 'self' data: blob: https:",
        "worker-src 'self' blob:",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        # 'self': a course's own frames (Rise's launch page frames its lesson) have the content as an ancestor.
        f"frame-ancestors 'self' {ancestors}",
    ])
