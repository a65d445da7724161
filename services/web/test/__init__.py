"""Testing support: ``webtest`` (getPage and assertions), ``helper`` (CPWebCase, a local
server), ``fixtures`` (pytest fixtures: ``web``, ``site_state``)."""
