"""The site container: config in, a running bus with mounted apps out.

``container`` (the Site, its Engine and the process-wide ``site``, ``bus``, ``config``,
``log``, ``tree``), ``launch`` (the one start-up path ``sitebus run`` takes), ``config`` (the
config files' format, namespaces, environments), ``tree`` and ``apps`` (apps by prefix and how
they are mounted), the logs (``logs``, ``accesslog``, ``logfailures``), what the tree wraps
around a request (``proxyheaders``, ``health``, ``metrics``), the default site
(``welcome``) and its systemd units (``unitfile``).

May import: every other package of sitebus (``workers``, ``servers``, ``reload``,
``process``, ``systemd``) and the core. Only the CLI imports the site. See docs/architecture.md.
"""
