"""Services hosted on a sitebus site; ``services.web`` is the request framework."""
