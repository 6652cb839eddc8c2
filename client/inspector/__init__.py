"""The local inspector and the ngrok-compatible agent API (issue 10).

One observer (``capture.Capture``) copies what crosses the tunnel into a bounded
store; a small HTTP server on 127.0.0.1 serves a page that shows it live, and
the agent API that scripts written for ngrok's port 4040 expect::

    settings.py  what the command line chose: port, entries, byte cap
    store.py     the last N exchanges and WebSockets, within a byte cap
    capture.py   the Observer that feeds the store and the metrics
    metrics.py   counts, rates and percentiles, as ngrok reports them
    render.py    how a body is shown: JSON, text, image or hex; decoded or not
    har.py       HAR 1.2 export          curl.py   copy as cURL
    agent.py     the documents of the agent API, in ngrok's shape
    replay.py    a stored request sent again to the local server, as a new exchange
    routes.py    each URL's handler: glue between requests and the modules above
    server.py    the stdlib HTTP server: loopback only, Host and Origin checks, SSE
    page/        the page itself: HTML, script and style, nothing fetched from elsewhere

``inspector.Inspector`` puts them together for ``client.cli``.
"""
