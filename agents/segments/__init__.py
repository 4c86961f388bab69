"""The segment and journey runtime: the core (``engine``) wired to a worker."""
